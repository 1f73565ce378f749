"""Foreign-key orphans moved aside, not deleted: `rollback_quarantine.rows`, and the way back.

The runbook's Contingency 4 deletes orphans (`DELETE FROM sales WHERE customer_id NOT IN …`).
Here each orphan row is kept whole, as JSON, with the table it came from, the constraint it broke,
the incident and the time — in the same transaction that removes it (`DELETE … RETURNING` feeds
the INSERT, so exactly the removed rows are kept). `/rollback restore-quarantine <env> <incident>`
puts an incident's rows back exactly, then empties its part of the quarantine.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

from actions.config import Environment
from actions.engine.plan import (
    ApprovalPreview,
    Plan,
    PlanSpec,
    RunContext,
    RunOutcome,
    Step,
    StepFailed,
    StepOutcome,
)
from actions.plans import partial
from actions.postgres import server as pg
from actions.postgres.foreign_keys import foreign_key, foreign_keys
from actions.postgres.quiet_writes import quiet
from actions.store.records import RunState

SCHEMA = "rollback_quarantine"
CREATE = """
CREATE SCHEMA IF NOT EXISTS rollback_quarantine;
CREATE TABLE IF NOT EXISTS rollback_quarantine.rows (
    id bigserial PRIMARY KEY,
    incident_id text NOT NULL,
    source_table text NOT NULL,       -- schema.table the row was removed from
    constraint_name text NOT NULL,    -- the foreign key it broke
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    row_data jsonb NOT NULL           -- the whole row, to_jsonb(row)
);
"""


async def orphan_preflight(conn: psycopg.AsyncConnection, constraint: str, *, expect_none: bool = False
                           ) -> tuple[str, dict]:
    """How many orphans the constraint has now; StepFailed when there are none (or, with
    `expect_none`, when some are left), or when removing them would cascade into other tables."""
    fk = await foreign_key(conn, constraint)
    if fk is None:
        raise StepFailed(f"no foreign key {constraint}")
    child = sql.Identifier(*fk.child)
    count = await pg.scalar(conn, sql.SQL("SELECT count(*) FROM {} AS t WHERE {}").format(child, fk.orphan_condition()))
    if expect_none:
        if count:
            raise StepFailed(f"{count:,} orphan row(s) of {constraint} are left")
        return f"no orphan row of {constraint} is left", {}
    if not count:
        raise StepFailed(f"{constraint} has no orphan rows now: nothing to move")
    for other in await foreign_keys(conn):  # rows that point at the orphans would be cascaded or block the delete
        if other.parent == fk.child:
            referencing = await pg.scalar(conn, sql.SQL(
                "SELECT count(*) FROM {} AS r WHERE EXISTS (SELECT 1 FROM {} AS t WHERE {} AND {})").format(
                sql.Identifier(*other.child), child, fk.orphan_condition(),
                sql.SQL(" AND ").join(sql.SQL("r.{} = t.{}").format(sql.Identifier(c), sql.Identifier(p))
                                      for c, p in zip(other.columns, other.parent_columns, strict=True))))
            if referencing:
                raise StepFailed(f"{referencing:,} row(s) of {'.'.join(other.child)} point at these orphans "
                                 f"({other.name}): removing the orphans would cascade or fail; deal with those first")
    return f"{count:,} orphan row(s) of {constraint} in {'.'.join(fk.child)}", {"orphans": count}


async def move_orphans(conn: psycopg.AsyncConnection, constraint: str, incident_id: str) -> int:
    """One transaction: create the quarantine if needed, move the orphans into it; return how many.
    The table's own triggers and rules are off meanwhile (a delete trigger must not log or block a
    move that keeps every row)."""
    fk = await foreign_key(conn, constraint)
    async with conn.transaction(), quiet(conn, [".".join(fk.child)]):
        await conn.execute(CREATE)
        cursor = await conn.execute(sql.SQL(
            "WITH gone AS (DELETE FROM {} AS t WHERE {} RETURNING t.*) "
            "INSERT INTO rollback_quarantine.rows (incident_id, source_table, constraint_name, row_data) "
            "SELECT %s, %s, %s, to_jsonb(gone) FROM gone").format(sql.Identifier(*fk.child), fk.orphan_condition()),
            (incident_id, ".".join(fk.child), constraint))
        return cursor.rowcount


# -- /rollback restore-quarantine <env> <incident> ------------------------------------------------

async def check_args(env: Environment, args: tuple[str, ...]) -> str | None:
    if len(args) != 1 or not re.fullmatch(r"INC-\d{8}-\d{4}", args[0].upper()):
        return "name the incident whose quarantined rows to put back, like INC-20261124-0001"
    return None


async def preflight(ctx: RunContext) -> StepOutcome:
    incident = ctx.facts["args"][0].upper()
    async with await pg.connect(ctx.environment) as conn:
        if not await pg.scalar(conn, "SELECT to_regclass('rollback_quarantine.rows') IS NOT NULL"):
            raise StepFailed(f"{ctx.environment.database} has no quarantine: nothing to put back")
        if not await pg.scalar(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
            raise StepFailed("putting orphans back needs a superuser (foreign-key triggers must be off for it)")
        rows = await (await conn.execute(
            "SELECT source_table, count(*) FROM rollback_quarantine.rows WHERE incident_id = %s GROUP BY 1 ORDER BY 1",
            (incident,))).fetchall()
    if not rows:
        raise StepFailed(f"no rows were quarantined by {incident}")
    return StepOutcome(", ".join(f"{table}: {n:,} row(s)" for table, n in rows),
                       {"quarantined": {table: n for table, n in rows}, "from_incident": incident})


async def put_back(ctx: RunContext) -> StepOutcome:
    """One transaction: each row back into its table exactly (generated columns recomputed), then
    out of the quarantine. Foreign-key triggers are off for it: the rows were orphans; so are the
    tables' own triggers and rules, whatever their mode (a row put back is not a new row)."""
    incident = ctx.facts["from_incident"]
    async with await pg.connect(ctx.environment) as conn:
        async with conn.transaction(), quiet(conn, list(ctx.facts["quarantined"])):
            await conn.execute("SET LOCAL session_replication_role = replica")
            for table in ctx.facts["quarantined"]:
                schema, name = table.split(".", 1)
                columns = [row[0] for row in await (await conn.execute(
                    "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 "
                    "AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
                    (str(sql.Identifier(schema, name).as_string(conn)),))).fetchall()]
                names = sql.SQL(", ").join(map(sql.Identifier, columns))
                await conn.execute(sql.SQL(
                    "INSERT INTO {} ({}) OVERRIDING SYSTEM VALUE SELECT {} FROM rollback_quarantine.rows AS q, "
                    "jsonb_populate_record(NULL::{}, q.row_data) AS r WHERE q.incident_id = %s AND q.source_table = %s "
                    "ORDER BY q.id").format(sql.Identifier(schema, name), names,
                                            sql.SQL(", ").join(sql.Identifier("r", c) for c in columns),
                                            sql.Identifier(schema, name)), (incident, table))
            cursor = await conn.execute("DELETE FROM rollback_quarantine.rows WHERE incident_id = %s", (incident,))
            moved = cursor.rowcount
    await ctx.remember({"restored": moved})
    return StepOutcome(f"{moved:,} row(s) put back into " + ", ".join(ctx.facts["quarantined"]))


def preview(ctx: RunContext) -> ApprovalPreview:
    counts = ctx.facts["quarantined"]
    return ApprovalPreview(
        title=f"Put back the rows {ctx.facts['from_incident']} quarantined in {ctx.environment.name}",
        actions=(*(f"Insert {n:,} row(s) back into `{t}`, exactly as they were" for t, n in counts.items()),
                 "Foreign-key checks are off for this transaction: the rows were orphans and will be again; so are the "
                 "tables' own triggers and rules (back on as they were before it commits)",
                 "Remove them from `rollback_quarantine.rows`; all in one transaction"),
        facts=(("Target", ctx.environment.target), ("Requested by", f"<@{ctx.run.requested_by}>")),
        confirm=f"Put {sum(counts.values()):,} quarantined row(s) back?")


def outcome(ctx: RunContext, state: RunState, failed_step: str | None) -> RunOutcome:
    if state is RunState.SUCCEEDED:
        return RunOutcome(f"The quarantined rows of {ctx.facts.get('from_incident')} are back in their tables.")
    return RunOutcome("Nothing was changed (the put-back is one transaction).",
                   "Read the ❌ step." if state.failed else "")


def build_restore_plan(env: Environment, args: tuple[str, ...]) -> Plan:
    return partial.partial_plan(
        "restore-quarantine", "Quarantine put-back",
        Step("preflight", "Preflight: the quarantined rows", preflight),
        Step("put_back", "Put the rows back", put_back, destructive=True, preview=preview),
        outcome=outcome)


RESTORE_SPEC = PlanSpec("restore-quarantine", "Quarantine put-back", build_restore_plan, check_args, level=1)
