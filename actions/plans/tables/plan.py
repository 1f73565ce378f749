"""`/rollback tables <env> t1,t2,…` (runbook Scenario 2): the chosen tables get the backup's rows back.

This module has the arguments, the preflight, the shadow copy and the plan; `check.py` checks the
shadow before any approval, `swap.py` is the approved transaction and how a run ends,
`partitions.py` a partitioned table as one unit, `sql.py` the catalog reads and sums.

The runbook's `pg_restore -t` into the live database fails on tables that exist, and its
`DROP … CASCADE` would take other tables' foreign keys with it. Here the chosen tables are
restored from the backup into a scratch database, copied into a shadow schema of the live
database and checked there (checksums against the manifest or the scratch copy, the live
constraints, and every foreign key in and out: rows that would be orphaned fail the step before
an approval is asked). After approval one REPEATABLE READ transaction keeps each live table object
(so other tables' foreign keys, views, grants and sequences stay attached), copies its rows into
`rollback_replaced_<run>` (the way back), re-adds the backup's columns it lacks, replaces its rows
with the shadow's under `session_replication_role = replica` (no cascade, no trigger fires),
re-checks every foreign key and compares each table with the backup row by row — any difference
rolls everything back — and commits. Tables that are not named keep their rows.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg import sql

from actions.backups.files import BackupProblem, newest_backup, read_toc
from actions.backups.scratch import restore_rows, scratch_database
from actions.backups.toc import Toc
from actions.config import Environment
from actions.engine.plan import Plan, PlanSpec, RunContext, Step, StepFailed, StepOutcome
from actions.plans import partial
from actions.plans.tables import sql as q
from actions.plans.tables.check import check
from actions.plans.tables.partitions import plan_unit
from actions.plans.tables.swap import abort, cleanup, outcome, preview, reconcile, swap, verify
from actions.postgres import server as pg
from actions.postgres.catalog import Catalog

USAGE = "name the tables as one comma-separated list, like `tables staging sales,public.tickets`"


# -- names ----------------------------------------------------------------------------------------

def parse_names(args: tuple[str, ...] | list[str]) -> list[str]:
    """"sales,public.tickets" -> ["public.sales", "public.tickets"] (unqualified means public)."""
    names = [n.strip() for arg in args for n in arg.split(",") if n.strip()]
    return list(dict.fromkeys(n if "." in n else f"public.{n}" for n in names))


def backup_tables(toc: Toc) -> list[str]:
    return sorted(f"{e.schema}.{e.tag}" for e in toc.of("TABLE"))


def resolve(names: list[str], available: list[str]) -> tuple[list[str], list[str]]:
    """(names found in `available` — as typed, or folded to lower case like unquoted SQL —, unknown names)."""
    found, unknown = [], []
    for name in names:
        match = name if name in available else name.lower() if name.lower() in available else None
        (found if match else unknown).append(match or name)
    return list(dict.fromkeys(found)), unknown


def _listed(names: list[str], limit: int) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


# -- the command's arguments ------------------------------------------------------------------------

async def check_args(env: Environment, args: tuple[str, ...]) -> str | None:
    """One comma-separated list of tables the newest backup has (read from its table of contents)."""
    if len(args) != 1:
        return USAGE if not args else f"give the tables as one list without spaces; {USAGE}"
    names = parse_names(args)
    if not names:
        return USAGE
    try:
        backup = await asyncio.to_thread(newest_backup, env)
        toc = await read_toc(backup)
    except BackupProblem as problem:
        return str(problem).rstrip(".")
    available = backup_tables(toc)
    _, unknown = resolve(names, available)
    if unknown:
        return (f"the backup has no table {', '.join(unknown)}. The tables in {backup.path.parent.name}/"
                f"{backup.path.name}: {_listed(available, 80)}")
    return None


# -- steps ----------------------------------------------------------------------------------------

async def preflight(ctx: RunContext) -> StepOutcome:
    """Everything knowable before a copy is made: the backup, the tables, the role, the foreign keys."""
    env = ctx.environment
    async with await pg.connect(env) as conn:  # first: without it nothing else matters
        role, superuser = await (await conn.execute(
            "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")).fetchone()
    if not superuser:
        raise StepFailed(
            f"the role `{role}` of {env.name} is not a superuser. The swap must turn foreign-key triggers off for "
            "its own transaction (`SET LOCAL session_replication_role = replica`): otherwise deleting the current "
            "rows fails on other tables' foreign keys, or ON DELETE CASCADE deletes their rows. PostgreSQL lets "
            "only superusers do that. Run this rollback with a superuser DSN, or use `/rollback full`")
    backup, backup_cat, live_cat, diff, source = await partial.read_diff(ctx)
    toc = await read_toc(backup)
    named, unknown = resolve(parse_names(ctx.facts.get("args", [])), backup_tables(toc))
    if unknown or not named:
        raise StepFailed(f"the newest backup has no table {', '.join(unknown) or '(none named)'}")
    problems: list[str] = []
    tables, units = _row_tables(named, toc, backup_cat, live_cat, problems)
    problems += [f"{c.table}.{c.column} is {c.live_type} live but {c.backup_type} in the backup: retyping columns "
                 "is not done here" for c in diff.columns_retyped if c.table in named]
    stored = [*tables, *(u["name"] for u in units)]
    problems += [f"{t}: its name in the shadow schema would exceed 63 bytes" for t in stored
                 if len(q.stored_name(t).encode()) > pg.MAX_IDENTIFIER_BYTES]
    if len({q.stored_name(t) for t in stored}) != len(stored):
        problems.append("two of the tables would get the same name in the shadow schema; restore them in separate runs")
    in_units = {t for u in units for t in (*u["leaves"], *u["live_only"])}
    parents = [p for u in units for p in u["parents"]]
    existing = [t for t in tables if t in live_cat.tables]
    quiet: list[str] = []
    async with await pg.connect(env) as conn:
        for schema in (q.shadow_schema(ctx), q.replaced_schema(ctx)):
            if await pg.scalar(conn, "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)):
                problems.append(f"a schema {schema} already exists (an earlier attempt?): inspect it, drop or rename it")
        for t in [*existing, *parents]:
            shape = await q.table_shape(conn, t)
            if t not in in_units and t not in parents:
                if shape["kind"] == "p":
                    problems.append(f"{t} is partitioned live but a plain table in the backup: `/rollback full` brings "
                                    "it back")
                elif shape["partition"]:
                    problems.append(f"{t} is a partition live but a plain table in the backup: detach it first, or use "
                                    "`/rollback full`")
                elif shape["inherits"]:
                    problems.append(f"{t} is part of an inheritance tree (its parent's or children's rows are other "
                                    "tables): not supported here; `/rollback full` brings it back")
            firing = [name for name, enabled in shape["triggers"] if enabled in ("A", "R")]
            if firing:
                problems.append(f"{t} has triggers or rules that fire even with triggers off (ENABLE ALWAYS/REPLICA): "
                                f"{', '.join(firing)}; they could change other tables during the swap")
            quiet += [f"{t}: {name}" for name, enabled in shape["triggers"] if enabled == "O"]
        fk_tables = [*existing, *(u["name"] for u in units)]
        fks = await q.foreign_keys(conn, fk_tables)
    if problems:
        raise StepFailed("; ".join(problems))
    keys = {t: (backup_cat.tables[t] if t in backup_cat.tables else live_cat.tables[t]).primary_key for t in tables}
    replaced = {*tables, *(u["name"] for u in units)}
    outward = [fk for fk in fks if fk["parent"] in replaced and fk["child"] not in replaced]
    shown = [*(t for t in tables if t not in in_units),
             *(f"{u['name']} ({len(u['leaves'])} partition(s) as one unit)" for u in units)]
    return StepOutcome(
        f"backup {backup.describe()}, its catalog read from the {source}; {len(named)} table(s): "
        f"{', '.join(shown)}; role is a superuser; "
        f"{len(fks)} foreign key(s) to check, {len(outward)} of them from other tables",
        {"tables": tables, "named": named, "units": units, "keys": keys, "fks": fks, "fk_tables": fk_tables,
         "quiet_triggers": quiet})


def _row_tables(named: list[str], toc: Toc, backup: Catalog, live: Catalog,
                problems: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """The tables whose rows the swap replaces (a partitioned table's are its leaf partitions), and
    the partitioned tables as units; what cannot be restored goes into `problems`, with why."""
    with_rows = {f"{e.schema}.{e.tag}" for e in toc.of("TABLE DATA")}
    tables, units = [], []
    for t in named:
        then, now = backup.tables.get(t), live.tables.get(t)
        if then is None:
            problems.append(f"{t} is not one of the backup's own tables (it belongs to an extension, or to the bot's "
                            "rollback_* schemas): this verb does not restore it")
        elif then.partitioned:
            unit = plan_unit(t, backup, live, problems)
            if unit is not None:
                units.append(unit)
                tables += [*unit["leaves"], *unit["live_only"]]
        elif now is not None and now.partition_of is not None:
            root = live.root(t)
            problems.append(f"{t} is a partition of {now.partition_of}: name {root} to restore the whole table, every "
                            f"partition as one unit (`/rollback tables <env> {root.removeprefix('public.')}`). A "
                            "partition alone is not restored: the foreign keys of its table are checked on all of it")
        elif t not in with_rows:
            problems.append(f"the backup holds no rows of {t}: it was taken without them (pg_dump --schema-only or "
                            "--exclude-table-data); use a backup that has them")
        elif now is None:
            problems.append(f"{t} is not in the live database: this verb puts rows back into existing tables "
                            "(`/rollback full` brings back dropped tables)")
        else:
            tables.append(t)
    return list(dict.fromkeys(tables)), units


async def shadow(ctx: RunContext) -> StepOutcome:
    """Restore the tables into a scratch database, then copy them into the live database's shadow schema.
    A partitioned table gets a view there, over its partitions' shadow rows (what its foreign keys see)."""
    env, tables, schema = ctx.environment, ctx.facts["tables"], q.shadow_schema(ctx)
    units = ctx.facts.get("units", [])
    live_only = {t: u["name"] for u in units for t in u["live_only"]}
    toc = await read_toc(q.backup_of(ctx))
    specs: dict[str, Any] = {}
    unit_columns: dict[str, list[dict]] = {}
    prepared = await partial.prepared_source(ctx)
    async with scratch_database(env, "tables", copy_of=prepared and prepared.database) as scratch:
        await ctx.remember({"scratch_db": scratch, "read_from_prepared": prepared and prepared.database})
        if prepared is None:
            await restore_rows(env, scratch, q.backup_of(ctx).path, toc, [t for t in tables if t not in live_only])
        async with await pg.connect(env, scratch) as source, await pg.connect(env) as live:
            await q.prepare(source)
            await q.prepare(live)
            await live.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            await ctx.remember({"shadow_created": True})
            for u in units:
                unit_columns[u["name"]] = await q.table_columns(source, u["name"])
            for t in tables:
                # A partition the backup lacks gets an empty shadow: the backup has no rows for it.
                columns = unit_columns[live_only[t]] if t in live_only else await q.table_columns(source, t)
                if not columns:
                    raise StepFailed(f"{t} was not restored from the backup")
                names = [c["name"] for c in columns]
                target = q.in_schema(schema, t)
                await live.execute(sql.SQL("CREATE TABLE {} ({})").format(target, sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c["name"]), sql.SQL(c["type"])) for c in columns)))
                if t not in live_only:
                    # Text format: binary COPY carries type oids, which differ between databases for user types.
                    async with source.cursor().copy(sql.SQL("COPY (SELECT {} FROM ONLY {}) TO STDOUT").format(
                            q.cols(names), q.ident(t))) as out, live.cursor().copy(
                            sql.SQL("COPY {} ({}) FROM STDIN").format(target, q.cols(names))) as into:
                        async for block in out:
                            await into.write(block)
                if ctx.facts["keys"].get(t):
                    try:
                        await live.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(
                            target, q.cols(ctx.facts["keys"][t])))
                    except psycopg.errors.UniqueViolation:
                        raise StepFailed(f"the backup's rows of {t} repeat a primary key value: "
                                         "the backup is damaged") from None
                specs[t] = {"columns": columns,
                            "scratch": "0:0" if t in live_only else await q.sums(source, q.live_rel(t))}
            for u in units:
                await live.execute(_unit_view(schema, u, unit_columns[u["name"]]))
            for fk in ctx.facts["fks"]:  # anti-joins look the shadow rows up by the referenced columns
                if fk["parent"] in tables and fk["parent_cols"] != ctx.facts["keys"].get(fk["parent"]):
                    await live.execute(sql.SQL("CREATE INDEX ON {} ({})").format(q.in_schema(schema, fk["parent"]),
                                                                                   q.cols(fk["parent_cols"])))
            for t in tables:
                await live.execute(sql.SQL("ANALYZE {}").format(q.in_schema(schema, t)))
    await ctx.remember({"scratch_db": None, "specs": specs, "unit_columns": unit_columns})
    in_units = {t for u in units for t in (*u["leaves"], *u["live_only"])}
    counts = [f"{t} {int(specs[t]['scratch'].split(':')[0]):,}" for t in tables if t not in in_units]
    counts += [f"{u['name']} {sum(int(specs[t]['scratch'].split(':')[0]) for t in u['leaves']):,} in "
               f"{len(u['leaves'])} partition(s)" for u in units]
    where = (f"read from a file copy of the prepared copy {prepared.database} (left as it was)" if prepared
             else "restored into a scratch database")
    return StepOutcome(f"the backup's rows {where} and copied into schema {schema}: "
                       f"{', '.join(counts)} row(s); the scratch database is dropped")


def _unit_view(schema: str, unit: dict[str, Any], columns: list[dict]) -> sql.Composed:
    """The partitioned table's rows after the swap, as one relation: its partitions' shadows together."""
    names = q.cols([c["name"] for c in columns])
    parts = [sql.SQL("SELECT {} FROM {}").format(names, q.in_schema(schema, t)) for t in (*unit["leaves"], *unit["live_only"])]
    return sql.SQL("CREATE VIEW {} AS {}").format(q.in_schema(schema, unit["name"]), sql.SQL(" UNION ALL ").join(parts))


def build_plan(env: Environment, args: tuple[str, ...]) -> Plan:
    return partial.partial_plan(
        "tables", "Table rollback",
        Step("preflight", "Preflight: backup, tables, role, foreign keys", preflight),
        Step("shadow", "Restore the tables into a shadow schema", shadow, interruptible=True),
        Step("check", "Check the shadow rows: checksums, constraints, orphans", check, interruptible=True),
        Step("swap", "Swap the backup's rows in (one transaction)", swap, destructive=True, ask_approval_after="check",
             preview=preview),
        Step("verify", "Verify the tables against the backup", verify),
        Step("cleanup", "Drop the shadow schema", cleanup),
        outcome=outcome, abort=abort, reconcile=reconcile, reads_backup=True)


SPEC = PlanSpec("tables", "Table rollback", build_plan, check_args, level=2)
