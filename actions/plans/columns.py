"""`/rollback columns <env>`: bring back dropped columns *with their data*.

The runbook's repair (`ALTER TABLE … ADD COLUMN`) brings columns back empty. Here the backup's
affected tables are restored into a scratch database, their key and lost columns copied into a
scratch schema of the live database, and — after approval, in one transaction — the columns are
re-added with their type and default and filled by primary key (`UPDATE … FROM`). Rows the backup
lacks (inserted after it) keep the default; rows only the backup has are counted, not inserted.

Nothing else changes: the tables' own triggers and rules are off for that transaction and row
level security cannot filter it (`actions/quiet_writes.py`), and every other column of every row
is checksummed before and after inside the transaction — any difference rolls it back. A column
the backup computed (GENERATED … STORED) is re-added computed, not copied. What cannot come back
exactly (an identity column, a type or sequence the migration also dropped) is named and skipped
before the approval.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from psycopg import sql

from actions.backups.files import read_toc
from actions.backups.scratch import restore_rows, scratch_database
from actions.config import Environment
from actions.engine.plan import ApprovalPreview, Plan, PlanSpec, RunContext, RunOutcome, Step, StepFailed, StepOutcome
from actions.plans import partial
from actions.plans.tables import sql as q
from actions.postgres import server as pg
from actions.postgres.catalog import Catalog, Column
from actions.postgres.quiet_writes import event_triggers, quiet, row_security_applies, switches
from actions.postgres.schemadiff import SchemaDiff
from actions.store.records import RunState


def _scratch_schema(ctx: RunContext) -> str:
    return f"rollback_columns_{ctx.database_suffix}"


def _in_scratch(ctx: RunContext, table: str) -> sql.Identifier:
    return sql.Identifier(_scratch_schema(ctx), table.replace(".", "__"))


def _column(c: Column) -> dict:
    return {"name": c.name, "type": c.type, "default": c.default, "nullable": c.nullable, "generated": bool(c.generated)}


async def _why_not(conn, table: str, column: Column) -> str | None:
    """Why this dropped column cannot be re-added exactly as the backup had it, or None."""
    if column.identity:
        return (f"{table}.{column.name} was an identity column: re-adding it would number the rows anew "
                "instead of bringing their values back")
    why = await q.unusable_definition(conn, {"type": column.type, "default": None if column.generated else column.default})
    if why:
        return f"{table}.{column.name} ({column.describe()}) cannot be re-added here: {why}"
    return None


async def preflight(ctx: RunContext) -> StepOutcome:
    _, backup_cat, live, diff, source = await partial.read_diff(ctx)
    dropped: dict[str, set[str]] = defaultdict(set)
    for change in diff.columns_dropped:
        dropped[change.table].add(change.column)
    work, skipped = [], []
    async with await pg.connect(ctx.environment) as conn:
        filtered = set(await row_security_applies(conn, list(dropped)))
        for table in sorted(dropped):
            backup_table, live_table = backup_cat.tables[table], live.tables[table]
            key = backup_table.primary_key
            children = [n for n, t in live.tables.items() if table in t.inherits]
            if not key:
                skipped.append(f"{table} (no primary key in the backup: rows cannot be matched)")
            elif any(live_table.column(k) is None for k in key):
                skipped.append(f"{table} (its primary key columns {', '.join(key)} are gone from the live table)")
            elif live_table.inherits or children:
                skipped.append(f"{table} (part of an inheritance tree: re-adding a column there changes the other "
                               "tables of the tree too)")
            elif table in filtered:
                skipped.append(f"{table} (its row level security would decide which rows this role may fill; "
                               "run it with a superuser or a BYPASSRLS role)")
            else:
                columns = []
                for column in (c for c in backup_table.columns if c.name in dropped[table]):
                    why = await _why_not(conn, table, column)
                    (skipped.append(why) if why else columns.append(_column(column)))
                if columns:
                    work.append({"table": table, "key": key, "partitioned": live_table.partitioned,
                                 "key_types": [backup_table.column(k).type for k in key], "columns": columns,
                                 "live_columns": [c.name for c in live_table.columns]})
        tables = [w["table"] for w in work]
        quieted = [s.label for s in await switches(conn, tables)]
        ddl_watchers = await event_triggers(conn)
    if not work:
        raise StepFailed("no dropped column to bring back" + (f"; skipped: {'; '.join(skipped)}" if skipped else
                                                             f": the live tables have every column the backup has ({source})"))
    count = sum(len(w["columns"]) for w in work)
    return StepOutcome(
        f"{count} column(s) the backup has and live lacks, in {len(work)} table(s) ({source})"
        + (f"; skipped: {'; '.join(skipped)}" if skipped else ""),
        {"work": work, "skipped": skipped, "quieted": quieted, "event_triggers": ddl_watchers,
         "not_back": _not_brought_back(diff, backup_cat, set(tables)),
         "leaves": {t: backup_cat.leaves(t) for t in tables if backup_cat.tables[t].partitioned}})


def _not_brought_back(diff: SchemaDiff, backup: Catalog, tables: set[str]) -> list[str]:
    """What the backup had on these tables, which went with the columns and this verb does not
    recreate: their indexes and constraints, and views changed since (which may have used them)."""
    return ([f"index {i}" for i in diff.indexes_dropped if backup.indexes[i]["table"] in tables]
            + [f"constraint {c}" for c in diff.constraints_dropped if backup.constraints[c]["table"] in tables]
            + [f"view {v} (changed since the backup)" for v in diff.views_changed])


async def copy_backup_values(ctx: RunContext) -> StepOutcome:
    """The backup's key and lost columns, into a scratch schema of the live database (nothing live changes)."""
    env, work = ctx.environment, ctx.facts["work"]
    prepared = await partial.prepared_source(ctx)
    async with scratch_database(env, "columns", copy_of=prepared and prepared.database) as scratch:
        dump = Path(partial.backup_of(ctx).path)
        if prepared is None:
            await restore_rows(env, scratch, dump, await read_toc(dump), _row_tables(ctx))
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
                        columns, q.ident(w["table"]))) as out, live.cursor().copy(
                        sql.SQL("COPY {} ({}) FROM STDIN").format(_in_scratch(ctx, w["table"]), columns)) as into:
                    async for block in out:
                        await into.write(block)
                rows = await pg.scalar(live, sql.SQL("SELECT count(*) FROM {}").format(_in_scratch(ctx, w["table"])))
                copied.append(f"{w['table']} {rows:,}")
    source = (f" (read from a file copy of the prepared copy {prepared.database}, which is left as it was)"
              if prepared else "")
    return StepOutcome(f"backup values copied into schema {_scratch_schema(ctx)}{source}: " + ", ".join(copied))


def _row_tables(ctx: RunContext) -> list[str]:
    """The tables whose rows the scratch restore needs: a partitioned table's rows are in its partitions."""
    return [leaf for w in ctx.facts["work"] for leaf in ctx.facts.get("leaves", {}).get(w["table"], [w["table"]])]


async def readd(ctx: RunContext) -> StepOutcome:
    """One transaction, the tables' triggers and rules off: ADD COLUMN with type and default, fill
    from the backup by primary key, re-add computed columns; every other column must be unchanged."""
    report, not_null_kept = [], []
    async with await pg.connect(ctx.environment) as conn:
        await q.prepare(conn)
        async with conn.transaction():
            async with quiet(conn, [w["table"] for w in ctx.facts["work"]]):
                for w in ctx.facts["work"]:
                    report.append(await _readd_table(ctx, conn, w, not_null_kept))
    await ctx.remember({"readded": report})
    lines = [f"{r['table']} +{', '.join(r['columns'])}: {r['matched']:,} rows filled from the backup, "
             f"{r['live_only']:,} newer than the backup (default/NULL), {r['backup_only']:,} only in the backup"
             for r in report]
    if not_null_kept:
        lines.append("left nullable: " + "; ".join(not_null_kept))
    lines.append("every other column of every row unchanged (checksummed before and after)")
    if ctx.facts.get("quieted"):
        lines.append(f"{len(ctx.facts['quieted'])} trigger(s)/rule(s) off for the transaction and back on as they were")
    return StepOutcome("; ".join(lines))


async def _readd_table(ctx: RunContext, conn, w: dict, not_null_kept: list[str]) -> dict:
    table, scratch = q.ident(w["table"]), _in_scratch(ctx, w["table"])
    rows = q.live_rel(w["table"], w["partitioned"])
    before = await q.sums(conn, rows, w["live_columns"])
    filled = [c for c in w["columns"] if not c["generated"]]
    for c in filled:
        default = sql.SQL(" DEFAULT {}").format(sql.SQL(c["default"])) if c["default"] else sql.SQL("")
        await conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}{}").format(
            table, sql.Identifier(c["name"]), sql.SQL(c["type"]), default))
    match = sql.SQL(" AND ").join(sql.SQL("t.{k} = s.{k}").format(k=sql.Identifier(k)) for k in w["key"])
    matched = 0
    if filled:
        cursor = await conn.execute(sql.SQL("UPDATE {} AS t SET {} FROM {} AS s WHERE {}").format(
            table, sql.SQL(", ").join(sql.SQL("{c} = s.{c}").format(c=sql.Identifier(c["name"])) for c in filled),
            scratch, match))
        matched = cursor.rowcount
    for c in (c for c in w["columns"] if c["generated"]):  # computed from the filled row, as the backup defined it
        await conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {} GENERATED ALWAYS AS ({}) STORED").format(
            table, sql.Identifier(c["name"]), sql.SQL(c["type"]), sql.SQL(c["default"])))
    total = await pg.scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(rows))
    both = await pg.scalar(conn, sql.SQL("SELECT count(*) FROM {} AS s WHERE EXISTS (SELECT 1 FROM {} AS t WHERE {})")
                           .format(scratch, table, match))
    for c in filled:
        if not c["nullable"]:
            nulls = await pg.scalar(conn, sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(
                table, sql.Identifier(c["name"])))
            if nulls:
                not_null_kept.append(f"{w['table']}.{c['name']} ({nulls:,} rows newer than the backup are NULL)")
            else:
                await conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(
                    table, sql.Identifier(c["name"])))
    if await q.sums(conn, rows, w["live_columns"]) != before:
        raise StepFailed(f"{w['table']}: a column that was not re-added changed during the fill; rolled back, "
                         "nothing was changed")
    backup_rows = await pg.scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(scratch))
    return {"table": w["table"], "columns": [c["name"] for c in w["columns"]], "matched": matched if filled else both,
            "live_only": total - both, "backup_only": backup_rows - both}


async def verify(ctx: RunContext) -> StepOutcome:
    """Every matched row's filled values equal the backup's; computed ones are reported."""
    recomputed = []
    async with await pg.connect(ctx.environment) as conn:
        await q.prepare(conn)
        for w in ctx.facts["work"]:
            match = sql.SQL(" AND ").join(sql.SQL("t.{k} = s.{k}").format(k=sql.Identifier(k)) for k in w["key"])
            for generated in (False, True):
                columns = [c for c in w["columns"] if c["generated"] is generated]
                if not columns:
                    continue
                differ = sql.SQL(" OR ").join(sql.SQL("t.{c} IS DISTINCT FROM s.{c}").format(c=sql.Identifier(c["name"]))
                                              for c in columns)
                wrong = await pg.scalar(conn, sql.SQL("SELECT count(*) FROM {} AS t JOIN {} AS s ON {} WHERE {}").format(
                    q.ident(w["table"]), _in_scratch(ctx, w["table"]), match, differ))
                if wrong and not generated:
                    raise StepFailed(f"{w['table']}: {wrong:,} rows differ from the backup after the fill")
                if wrong:
                    recomputed.append(f"{w['table']}: {wrong:,} row(s) computed differently from the backup, as their "
                                      "other columns changed since it was taken")
    return StepOutcome("every re-added value equals the backup's, row by row"
                       + (f"; {'; '.join(recomputed)}" if recomputed else ""))


async def cleanup(ctx: RunContext) -> StepOutcome:
    await _drop_scratch(ctx)
    return StepOutcome(f"schema {_scratch_schema(ctx)} dropped")


async def _drop_scratch(ctx: RunContext) -> None:
    async with await pg.connect(ctx.environment) as conn:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(_scratch_schema(ctx))))
    await ctx.remember({"scratch_schema": False})


def _action(w: dict) -> str:
    filled = [c for c in w["columns"] if not c["generated"]]
    computed = [c for c in w["columns"] if c["generated"]]
    parts = []
    if filled:
        parts.append("ADD COLUMN " + ", ".join(f"`{c['name']}` {c['type']}" + (f" DEFAULT {c['default']}" if c["default"] else "")
                                               for c in filled)
                     + f", then fill them from the backup, matching rows by {', '.join(w['key'])}")
    if computed:
        parts.append("re-add " + ", ".join(f"`{c['name']}` GENERATED ALWAYS AS ({c['default']}) STORED" for c in computed)
                     + ": PostgreSQL computes it from each row, as the backup defined it (not copied)")
    return f"`{w['table']}`: " + "; ".join(parts)


def preview(ctx: RunContext) -> ApprovalPreview:
    actions = [_action(w) for w in ctx.facts["work"]][:12]
    actions.append("All in one transaction. Rows newer than the backup get the column's default (or NULL); rows only "
                   "the backup has are counted, not inserted.")
    quieted = ctx.facts.get("quieted") or []
    actions.append("The tables' own triggers and rules are switched off for this transaction only and back on exactly "
                   "as they were before it commits" + (f" ({len(quieted)})" if quieted else " (they have none)")
                   + "; row level security cannot filter the fill. Every other column of every row is checksummed "
                   "before and after: any change rolls everything back.")
    if ctx.facts.get("event_triggers"):
        actions.append("Event triggers of the database will see the ALTER TABLE: " + ", ".join(ctx.facts["event_triggers"]))
    skipped, not_back = ctx.facts.get("skipped") or [], ctx.facts.get("not_back") or []
    return ApprovalPreview(
        title=f"Bring back {sum(len(w['columns']) for w in ctx.facts['work'])} dropped column(s) in {ctx.environment.name}",
        actions=tuple(actions),
        facts=(("Target", ctx.environment.target), ("Backup", Path(partial.backup_of(ctx).path).parent.name),
               ("Skipped", "; ".join(skipped) or "none"),
               ("Triggers and rules off during the fill", ", ".join(quieted[:12]) + (" …" if len(quieted) > 12 else "")
                or "none"),
               ("Not brought back by this verb", "; ".join(not_back[:8]) + (" …" if len(not_back) > 8 else "") or "nothing"),
               ("Requested by", f"<@{ctx.run.requested_by}>")),
        confirm=f"Add the columns back to {ctx.environment.database} and fill them from the backup?")


async def abort(ctx: RunContext) -> str:
    if ctx.facts.get("scratch_schema"):
        await _drop_scratch(ctx)
        return f"The scratch schema {_scratch_schema(ctx)} was dropped."
    return ""


def outcome(ctx: RunContext, state: RunState, failed_step: str | None) -> RunOutcome:
    if state is RunState.SUCCEEDED:
        return RunOutcome(f"`{ctx.environment.database}` has its dropped columns back, filled from the backup.")
    if ctx.facts.get("readded"):
        return RunOutcome("The columns were re-added and filled (that transaction committed); a later check failed.",
                       "Read the ❌ step; the re-added columns are in place.")
    return RunOutcome(f"Nothing was changed: `{ctx.environment.database}` is untouched.",
                   "Fix what the ❌ step reports, then run the command again." if state.failed else "")


def build_plan(env: Environment, args: tuple[str, ...]) -> Plan:
    return partial.partial_plan(
        "columns", "Column rollback",
        Step("preflight", "Preflight: backup and the dropped columns", preflight),
        Step("copy", "Copy the backup's values aside", copy_backup_values, interruptible=True),
        Step("readd", "Re-add the columns and their data", readd, destructive=True, ask_approval_after="preflight",
             preview=preview),
        Step("verify", "Verify the values against the backup", verify),
        Step("cleanup", "Drop the scratch schema", cleanup),
        outcome=outcome, abort=abort, reads_backup=True)  # one transaction: no reconcile


SPEC = PlanSpec("columns", "Column rollback", build_plan)
