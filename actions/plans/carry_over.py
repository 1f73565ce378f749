"""`/rollback carry-over <env> <incident> [t1,t2]`: put the rows inserted after the backup back into live.

After a full rollback the rows written after the backup are only in the failed database it kept (counted by
*Count the writes made after the backup*). This plan inserts into live the rows that were **inserted** after
the backup — their key is in the failed database and not in live — after the usual preview and approval:

- parents before children, in one transaction, with the tables' own triggers and rules off (foreign keys on);
- only the columns both databases have; a column live has and the failed database lacks takes live's default,
  and the preview names it;
- sequences and identity columns are moved past the carried keys;
- a row that would break a constraint is not inserted: it is kept whole, as jsonb with the reason, in
  `rollback_quarantine.carried_over`, and listed.

Rows **updated or deleted** after the backup are never carried: a migration's own updates (nulling a column)
must not be applied again. Running it twice changes nothing the second time: carried rows are in live, and a
row kept aside is kept once.
"""

from __future__ import annotations

import json
import re

from psycopg import errors, sql

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
from actions.plans.facts import RunFacts
from actions.postgres import server as pg
from actions.postgres.catalog import describe, qualified, stable_session
from actions.postgres.foreign_keys import foreign_keys
from actions.postgres.quiet_writes import quiet
from actions.postgres.writes_after import column_changes, comparable, table_diff
from actions.store.records import RunState

INCIDENT = re.compile(r"^INC-\d{8}-\d{4}$")
SHOWN = 12  # tables named in the preview before "and N more"

KEEP = """
CREATE SCHEMA IF NOT EXISTS rollback_quarantine;
CREATE TABLE IF NOT EXISTS rollback_quarantine.carried_over (
    id bigserial PRIMARY KEY,
    incident_id text NOT NULL,
    source_table text NOT NULL,       -- schema.table the row could not be inserted into
    row_key text NOT NULL,            -- its primary key, as ROW(key)::text
    reason text NOT NULL,             -- the constraint it would break, as PostgreSQL said it
    kept_at timestamptz NOT NULL DEFAULT now(),
    row_data jsonb NOT NULL,          -- the row as the failed database has it
    UNIQUE (incident_id, source_table, row_key)
);
"""


async def check_args(env: Environment, args: tuple[str, ...]) -> str | None:
    if not args or not INCIDENT.match(args[0]):
        return "name the incident whose full rollback kept the rows (INC-YYYYMMDD-NNNN)"
    if len(args) > 2:
        return f"unexpected words after the tables: {' '.join(args[2:])}"
    return None


async def _source(ctx: RunContext) -> tuple[str, str]:
    """(the failed database the incident's full rollback kept, the incident id)."""
    incident_id = ctx.facts["args"][0]
    for run in reversed(await ctx.store.runs(incident_id=incident_id)):
        facts = RunFacts.of(run.facts)
        if run.plan == "full" and facts.swapped and facts.databases and run.environment == ctx.environment.name:
            return facts.databases.keep_as, incident_id
    raise StepFailed(f"{incident_id} has no full rollback of {ctx.environment.name} that swapped a restored copy "
                     "in: there is no kept failed database to carry rows from")


async def find(ctx: RunContext) -> StepOutcome:
    env = ctx.environment
    failed_db, incident_id = await _source(ctx)
    wanted = [t if "." in t else f"public.{t}" for t in ctx.facts["args"][1].split(",")] if len(ctx.facts["args"]) > 1 \
        else None
    async with await pg.admin(env) as conn:
        if not await pg.database_exists(conn, failed_db):
            raise StepFailed(f"the kept failed database {failed_db} no longer exists")
    async with await pg.connect(env, failed_db, read_only=True) as failed, await pg.connect(env, read_only=True) as live:
        for conn in (failed, live):
            await stable_session(conn)
        failed_catalog, live_catalog = await describe(failed), await describe(live)
        pairs, skipped = comparable(failed_catalog, live_catalog)
        if wanted:
            unknown = [t for t in wanted if t not in {p[0] for p in pairs}]
            if unknown:
                reasons = dict(skipped)
                raise StepFailed("cannot carry rows of " + ", ".join(
                    f"{t} ({reasons.get(t, 'no such table in both databases')})" for t in unknown))
            pairs = [p for p in pairs if p[0] in wanted]
        work, not_carried = [], []
        for table, key, common in pairs:
            rows = await table_diff(failed, live, table, key, common)  # one comparison for both lists
            if rows.updated:
                per_column, examples = await column_changes(failed, live, table, key, common, rows.updated)
                not_carried.append({"table": table, "updated": len(rows.updated), "columns": per_column,
                                    "examples": [[k, c, _short(a), _short(b)] for k, c, a, b in examples]})
            keys = rows.inserted
            if not keys:
                continue
            live_table = live_catalog.tables[table]
            columns = [c for c in common if not live_table.column(c).generated]
            defaults = [c.name for c in live_table.columns if c.name not in common and not c.generated]
            work.append({"table": table, "key": key, "columns": columns, "keys": keys, "defaults": defaults,
                         "identity_always": any(live_table.column(c).identity == "a" for c in columns)})
    if not work:
        raise StepFailed(f"every row inserted after the backup into {'those tables' if wanted else 'live'} is in live "
                         "already: nothing to carry over")
    order = _parents_first([w["table"] for w in work], await _edges(env))
    work.sort(key=lambda w: order.index(w["table"]))
    total = sum(len(w["keys"]) for w in work)
    listing = "; ".join(f"{w['table']} {len(w['keys']):,}" for w in work)
    updated = sum(n["updated"] for n in not_carried)
    return StepOutcome(f"{total:,} rows inserted after the backup are in {failed_db} and not in live: {listing}"
                       + (f"; {updated:,} rows updated after the backup are not carried" if updated else ""),
                       {"carry": work, "failed_db": failed_db, "from_incident": incident_id,
                        "not_carried": not_carried})


def _short(value) -> str:
    text = "NULL" if value is None else repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:39] + "…"


async def _edges(env: Environment) -> list[tuple[str, str]]:
    """(parent, child) of every foreign key of live."""
    async with await pg.connect(env, read_only=True) as live:
        return [(".".join(fk.parent), ".".join(fk.child)) for fk in await foreign_keys(live)]


def _parents_first(tables: list[str], edges: list[tuple[str, str]]) -> list[str]:
    """Tables ordered so that a parent comes before its children (a cycle keeps the remaining ones in name order)."""
    remaining, ordered = sorted(tables), []
    while remaining:
        ready = [t for t in remaining if not any(p in remaining and c == t and p != t for p, c in edges)]
        pick = ready[0] if ready else remaining[0]
        ordered.append(pick)
        remaining.remove(pick)
    return ordered


async def carry(ctx: RunContext) -> StepOutcome:
    env, work, failed_db = ctx.environment, ctx.facts["carry"], ctx.facts["failed_db"]
    incident_id = ctx.facts["from_incident"]
    inserted, kept = {}, []
    async with await pg.connect(env, failed_db, read_only=True) as failed, await pg.connect(env) as live:
        await stable_session(failed)
        async with live.transaction(), quiet(live, [w["table"] for w in work]):
            await live.execute(KEEP)
            for w in work:
                inserted[w["table"]] = 0
                for key_text, row in await _rows(failed, w):
                    savepoint = live.transaction()
                    try:
                        async with savepoint:
                            cursor = await live.execute(_insert(w), (json.dumps(row),))
                            inserted[w["table"]] += cursor.rowcount
                    except (errors.IntegrityError, errors.DataError) as broke:
                        reason = str(broke).splitlines()[0]
                        # Kept once: a second carry-over meets the same conflict and changes nothing (not
                        # even the id sequence, which ON CONFLICT DO NOTHING would advance).
                        await live.execute(
                            "INSERT INTO rollback_quarantine.carried_over (incident_id, source_table, row_key, reason, "
                            "row_data) SELECT %s, %s, %s, %s, %s::jsonb WHERE NOT EXISTS (SELECT 1 FROM "
                            "rollback_quarantine.carried_over WHERE incident_id = %s AND source_table = %s AND "
                            "row_key = %s)",
                            (incident_id, w["table"], key_text, reason, json.dumps(row), incident_id, w["table"],
                             key_text))
                        kept.append(f"{w['table']} {key_text}: {reason}")
                await _advance_sequences(live, w["table"])
    done = sum(inserted.values())
    listing = "; ".join(f"{t} {n:,}" for t, n in inserted.items() if n)
    note = (f"; {len(kept)} row(s) would break a constraint and are kept in rollback_quarantine.carried_over: "
            + "; ".join(kept[:6]) + (" …" if len(kept) > 6 else "")) if kept else ""
    return StepOutcome(f"{done:,} rows carried into live ({listing or 'none'}), in one transaction, the tables' "
                       f"triggers off{note}", {"carried": inserted, "kept_aside": len(kept)})


async def _rows(failed, w: dict) -> list[tuple[str, dict]]:
    """(key text, the row's common columns as JSON) of the rows to carry, read from the failed database."""
    key = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(map(sql.Identifier, w["key"])))
    cursor = await failed.execute(sql.SQL(
        "SELECT r.__key, to_jsonb(r) - '__key' FROM (SELECT {c}, {k} AS __key FROM {t}) AS r "
        "WHERE r.__key = ANY(%s) ORDER BY r.__key").format(
        c=sql.SQL(", ").join(map(sql.Identifier, w["columns"])), k=key, t=qualified(w["table"])), (w["keys"],))
    return await cursor.fetchall()


def _insert(w: dict) -> sql.Composable:
    columns = sql.SQL(", ").join(map(sql.Identifier, w["columns"]))
    overriding = sql.SQL(" OVERRIDING SYSTEM VALUE") if w["identity_always"] else sql.SQL("")
    return sql.SQL("INSERT INTO {t} ({c}){o} SELECT {c} FROM jsonb_populate_record(NULL::{t}, %s::jsonb)").format(
        t=qualified(w["table"]), c=columns, o=overriding)


async def _advance_sequences(live, table: str) -> None:
    """Every sequence a column of `table` owns (serial, identity) past the largest value the column holds."""
    cursor = await live.execute(
        "SELECT a.attname, pg_get_serial_sequence(%s, a.attname) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "AND pg_get_serial_sequence(%s, a.attname) IS NOT NULL", (table, table, table))
    for column, sequence in await cursor.fetchall():
        await live.execute(sql.SQL(
            "SELECT setval(%s::regclass, greatest((SELECT coalesce(max({c}), 0) FROM {t}), "
            "coalesce(pg_sequence_last_value(%s::regclass), 0), 1), true)").format(
            c=sql.Identifier(column), t=qualified(table)), (sequence, sequence))


def preview(ctx: RunContext) -> ApprovalPreview:
    work = ctx.facts["carry"]
    total = sum(len(w["keys"]) for w in work)
    actions = [f"INSERT {len(w['keys']):,} row(s) into `{w['table']}`"
               + (f" (columns live has and the failed database lacks take live's default: "
                  f"{', '.join(w['defaults'])})" if w["defaults"] else "") for w in work[:SHOWN]]
    if len(work) > SHOWN:
        actions.append(f"…and {len(work) - SHOWN} more tables")
    for n in ctx.facts.get("not_carried", [])[:SHOWN]:
        columns = ", ".join(f"{c} {count:,}" for c, count in sorted(n["columns"].items(), key=lambda i: -i[1])[:6])
        seen = "; ".join(f"{k} {c}: {a} → {b}" for k, c, a, b in n["examples"])
        actions.append(f"Not carried: {n['updated']:,} row(s) of `{n['table']}` updated after the backup (by column: "
                       f"{columns}; e.g. {seen}): live keeps the backup's values")
    actions += ["Parents before children, in one transaction; the tables' own triggers and rules off, foreign keys "
                "on; sequences moved past the carried keys",
                "A row that would break a constraint is not inserted: it is kept in rollback_quarantine.carried_over",
                "Rows updated or deleted after the backup are not touched (the migration's own changes among them)"]
    return ApprovalPreview(
        title=f"Carry over {total:,} rows inserted after the backup into {ctx.environment.name}",
        actions=tuple(actions),
        facts=(("From", f"`{ctx.facts['failed_db']}` (kept by {ctx.facts['from_incident']})"),
               ("Into", ctx.environment.target), ("Requested by", f"<@{ctx.run.requested_by}>")),
        confirm=f"Insert {total:,} rows into {ctx.environment.database}? Nothing there is updated or deleted.")


def outcome(ctx: RunContext, state: RunState, failed_step: str | None) -> RunOutcome:
    if state is RunState.SUCCEEDED:
        carried = sum((ctx.facts.get("carried") or {}).values())
        return RunOutcome(f"`{ctx.environment.database}` has {carried:,} more rows: the ones inserted after the backup.")
    return RunOutcome("Nothing was changed (the carry-over is one transaction).",
                      "Read the ❌ step." if state.failed else "")


def build_plan(env: Environment, args: tuple[str, ...]) -> Plan:
    return partial.partial_plan(
        "carry-over", "Carry-over",
        Step("find", "Find the rows inserted after the backup", find),
        Step("carry", "Insert them into live", carry, destructive=True, preview=preview),
        outcome=outcome)


SPEC = PlanSpec("carry-over", "Carry-over", build_plan, check_args, level=1)
