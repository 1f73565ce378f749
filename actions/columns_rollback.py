"""`/rollback columns <env>`: bring back dropped columns *with their data*.

The runbook's repair (`ALTER TABLE … ADD COLUMN`) brings columns back empty. Here the backup's
affected tables are restored into a scratch database, their key and lost columns copied into a
scratch schema of the live database, and — after approval, in one transaction — the columns are
re-added with their type and default and filled by primary key (`UPDATE … FROM`). Rows the backup
lacks (inserted after it) keep the default; rows only the backup has are counted, not inserted.
"""

from __future__ import annotations

from pathlib import Path

from psycopg import sql

from actions import partial_steps, pg
from actions.catalog import qualified
from actions.config import Environment
from actions.plan import ApprovalPreview, Outcome, Plan, PlanSpec, RunContext, Step, StepFailed, StepOutcome
from actions.records import RunState
from actions.backups import read_toc
from actions.scratch import restore_rows, scratch_database


def _scratch_schema(ctx: RunContext) -> str:
    return f"rollback_columns_{ctx.database_suffix}"


def _in_scratch(ctx: RunContext, table: str) -> sql.Identifier:
    return sql.Identifier(_scratch_schema(ctx), table.replace(".", "__"))


async def preflight(ctx: RunContext) -> StepOutcome:
    _, backup_cat, live, diff, source = await partial_steps.read_diff(ctx)
    work, skipped = [], []
    for table in sorted({c.table for c in diff.columns_dropped}):
        columns = [c for c in backup_cat.tables[table].columns if c.name in
                   {d.column for d in diff.columns_dropped if d.table == table}]
        key = backup_cat.tables[table].primary_key
        if not key:
            skipped.append(f"{table} (no primary key in the backup: rows cannot be matched)")
        elif any(live.tables[table].column(k) is None for k in key):
            skipped.append(f"{table} (its primary key columns {', '.join(key)} are gone from the live table)")
        else:
            work.append({"table": table, "key": key, "key_types": [backup_cat.tables[table].column(k).type for k in key],
                         "columns": [{"name": c.name, "type": c.type, "default": c.default, "nullable": c.nullable}
                                     for c in columns]})
    if not work:
        raise StepFailed("no dropped column to bring back" + (f"; skipped: {'; '.join(skipped)}" if skipped else
                                                             f": the live tables have every column the backup has ({source})"))
    count = sum(len(w["columns"]) for w in work)
    return StepOutcome(f"{count} column(s) the backup has and live lacks, in {len(work)} table(s) ({source})"
                       + (f"; skipped: {'; '.join(skipped)}" if skipped else ""), {"work": work, "skipped": skipped})


async def copy_backup_values(ctx: RunContext) -> StepOutcome:
    """The backup's key and lost columns, into a scratch schema of the live database (nothing live changes)."""
    env, work = ctx.environment, ctx.facts["work"]
    async with scratch_database(env, "columns") as scratch:
        dump = Path(ctx.facts["backup_path"])
        await restore_rows(env, scratch, dump, await read_toc(dump), [w["table"] for w in work])
        async with await pg.connect(env) as live, await pg.connect(env, scratch) as source:
            await live.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(_scratch_schema(ctx))))
            await ctx.remember({"scratch_schema": True})
            copied = []
            for w in work:
                names = [*w["key"], *(c["name"] for c in w["columns"])]
                types = [*w["key_types"], *(c["type"] for c in w["columns"])]
                # Types come from the catalog's format_type(): SQL text, not identifiers.
                await live.execute(sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
                    _in_scratch(ctx, w["table"]),
                    sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in zip(names, types, strict=True)),
                    sql.SQL(", ").join(map(sql.Identifier, w["key"]))))
                columns = sql.SQL(", ").join(map(sql.Identifier, names))
                # Text COPY: binary would carry type oids, which differ between databases for user types.
                async with source.cursor().copy(sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(
                        columns, qualified(w["table"]))) as out, live.cursor().copy(
                        sql.SQL("COPY {} ({}) FROM STDIN").format(_in_scratch(ctx, w["table"]), columns)) as into:
                    async for block in out:
                        await into.write(block)
                rows = await pg.scalar(live, sql.SQL("SELECT count(*) FROM {}").format(_in_scratch(ctx, w["table"])))
                copied.append(f"{w['table']} {rows:,}")
    return StepOutcome(f"backup values copied into schema {_scratch_schema(ctx)}: " + ", ".join(copied))


async def readd(ctx: RunContext) -> StepOutcome:
    """One transaction: ADD COLUMN with type and default, then fill from the backup by primary key."""
    report, not_null_kept = [], []
    async with await pg.connect(ctx.environment) as conn:
        async with conn.transaction():
            for w in ctx.facts["work"]:
                table, scratch = qualified(w["table"]), _in_scratch(ctx, w["table"])
                for c in w["columns"]:
                    default = sql.SQL(" DEFAULT {}").format(sql.SQL(c["default"])) if c["default"] else sql.SQL("")
                    await conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}{}").format(
                        table, sql.Identifier(c["name"]), sql.SQL(c["type"]), default))
                match = sql.SQL(" AND ").join(sql.SQL("t.{k} = s.{k}").format(k=sql.Identifier(k)) for k in w["key"])
                cursor = await conn.execute(sql.SQL("UPDATE {} AS t SET {} FROM {} AS s WHERE {}").format(
                    table, sql.SQL(", ").join(sql.SQL("{c} = s.{c}").format(c=sql.Identifier(c["name"])) for c in w["columns"]),
                    scratch, match))
                matched = cursor.rowcount
                total = await pg.scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(table))
                backup_only = await pg.scalar(conn, sql.SQL(
                    "SELECT count(*) FROM {} AS s WHERE NOT EXISTS (SELECT 1 FROM {} AS t WHERE {})").format(scratch, table, match))
                for c in w["columns"]:
                    if not c["nullable"]:
                        nulls = await pg.scalar(conn, sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(
                            table, sql.Identifier(c["name"])))
                        if nulls:
                            not_null_kept.append(f"{w['table']}.{c['name']} ({nulls:,} rows newer than the backup are NULL)")
                        else:
                            await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(
                                table, sql.Identifier(c["name"])))
                report.append({"table": w["table"], "columns": [c["name"] for c in w["columns"]], "matched": matched,
                               "live_only": total - matched, "backup_only": backup_only})
    await ctx.remember({"readded": report})
    lines = [f"{r['table']} +{', '.join(r['columns'])}: {r['matched']:,} rows filled from the backup, "
             f"{r['live_only']:,} newer than the backup (default/NULL), {r['backup_only']:,} only in the backup"
             for r in report]
    if not_null_kept:
        lines.append("left nullable: " + "; ".join(not_null_kept))
    return StepOutcome("; ".join(lines))


async def verify(ctx: RunContext) -> StepOutcome:
    """Every matched row's re-added values equal the backup's."""
    async with await pg.connect(ctx.environment) as conn:
        for w in ctx.facts["work"]:
            match = sql.SQL(" AND ").join(sql.SQL("t.{k} = s.{k}").format(k=sql.Identifier(k)) for k in w["key"])
            differ = sql.SQL(" OR ").join(sql.SQL("t.{c} IS DISTINCT FROM s.{c}").format(c=sql.Identifier(c["name"]))
                                          for c in w["columns"])
            wrong = await pg.scalar(conn, sql.SQL("SELECT count(*) FROM {} AS t JOIN {} AS s ON {} WHERE {}").format(
                qualified(w["table"]), _in_scratch(ctx, w["table"]), match, differ))
            if wrong:
                raise StepFailed(f"{w['table']}: {wrong:,} rows differ from the backup after the fill")
    return StepOutcome("every re-added value equals the backup's, row by row")


async def cleanup(ctx: RunContext) -> StepOutcome:
    await _drop_scratch(ctx)
    return StepOutcome(f"schema {_scratch_schema(ctx)} dropped")


async def _drop_scratch(ctx: RunContext) -> None:
    async with await pg.connect(ctx.environment) as conn:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(_scratch_schema(ctx))))
    await ctx.remember({"scratch_schema": False})


def preview(ctx: RunContext) -> ApprovalPreview:
    actions = [f"`{w['table']}`: ADD COLUMN " + ", ".join(f"`{c['name']}` {c['type']}" for c in w["columns"])
               + f", then fill them from the backup by {', '.join(w['key'])}" for w in ctx.facts["work"]][:12]
    actions.append("All in one transaction. Rows newer than the backup get the column's default (or NULL).")
    skipped = ctx.facts.get("skipped") or []
    return ApprovalPreview(
        title=f"Bring back {sum(len(w['columns']) for w in ctx.facts['work'])} dropped column(s) in {ctx.environment.name}",
        actions=tuple(actions),
        facts=(("Target", ctx.environment.target), ("Backup", Path(ctx.facts["backup_path"]).parent.name),
               ("Skipped", "; ".join(skipped) or "none"), ("Requested by", f"<@{ctx.run.requested_by}>")),
        confirm=f"Add the columns back to {ctx.environment.database} and fill them from the backup?")


async def abort(ctx: RunContext) -> str:
    if ctx.facts.get("scratch_schema"):
        await _drop_scratch(ctx)
        return f"The scratch schema {_scratch_schema(ctx)} was dropped."
    return ""


async def reconcile(ctx: RunContext) -> None:
    return None  # the change is one transaction: the step's own success or failure says which


def outcome(ctx: RunContext, state: RunState, failed_step: str | None) -> Outcome:
    if state is RunState.SUCCEEDED:
        return Outcome(f"`{ctx.environment.database}` has its dropped columns back, filled from the backup.")
    if ctx.facts.get("readded"):
        return Outcome("The columns were re-added and filled (that transaction committed); a later check failed.",
                       "Read the ❌ step; the re-added columns are in place.")
    return Outcome(f"Nothing was changed: `{ctx.environment.database}` is untouched.",
                   "Fix what the ❌ step reports, then run the command again." if state is RunState.FAILED else "")


def build_plan(env: Environment, args: tuple[str, ...]) -> Plan:
    return Plan("columns", "Column rollback", (
        Step("declare", "Declare the incident", partial_steps.declare),
        Step("preflight", "Preflight: backup and the dropped columns", preflight),
        Step("copy", "Copy the backup's values aside", copy_backup_values, interruptible=True),
        Step("readd", "Re-add the columns and their data", readd, destructive=True, ask_approval_after="preflight",
             preview=preview),
        Step("verify", "Verify the values against the backup", verify),
        Step("cleanup", "Drop the scratch schema", cleanup),
        Step("finish", "Update the incident report", partial_steps.finish),
    ), abort=abort, outcome=outcome, reconcile=reconcile)


SPEC = PlanSpec("columns", "Column rollback", build_plan)
