"""`/rollback carry-over <env> <incident> [t1,t2] [updates=t3,t4]`: put rows written after the backup back into live.

After a full rollback the rows written after the backup are only in the failed database it kept (counted by
*Count the writes made after the backup*). This plan finds them exactly, against the backup itself — the
tables' rows are restored from it into a scratch database, because live has moved on since the rollback —
and, after the usual preview and approval, puts them into live (`carry_rows.py`):

- rows **inserted** after the backup (in the failed database, not in the backup) are inserted, unless live
  has another row under that key by now (its sequences came back with the backup, so the application may
  have used the key again): such a row is kept aside, not inserted;
- rows **updated** after the backup are never carried by default: a migration's own updates (nulling a
  column) must not be applied again. The preview shows them by column, with examples. `updates=t3,t4`
  carries the updates of those tables, and only where live still holds the backup's version of the row;
  where the application has changed the row since, it is kept aside, not overwritten;
- rows **deleted** after the backup are never deleted from live.

Named tables limit what is carried (`updates=` tables are carried too); with none, every table the count
found a write in. Running it twice changes nothing the second time: what was carried is in live as the
failed database has it, and a row kept aside is kept once.
"""

from __future__ import annotations

import re
from dataclasses import replace

from actions.backups.files import read_toc
from actions.backups.scratch import restore_rows, scratch_database
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
from actions.plans import carry_rows, partial
from actions.plans.facts import RunFacts, facts_update
from actions.postgres import server as pg
from actions.postgres.catalog import Catalog, describe, stable_session
from actions.postgres.foreign_keys import foreign_keys
from actions.postgres.writes_after import carry_candidates, column_changes, comparable
from actions.store.records import RunState

INCIDENT = re.compile(r"^INC-\d{8}-\d{4}$")
UPDATES = "updates="
SHOWN = 12  # tables named in the preview before "and N more"


def options(args: tuple[str, ...] | list[str]) -> tuple[list[str] | None, list[str]]:
    """(the tables named, or None for every table with a write; the tables whose updates are carried too),
    as schema.table. Raises ValueError naming what is wrong."""
    tables, updates = None, []
    for word in args[1:]:
        if word.startswith(UPDATES):
            if updates:
                raise ValueError(f"`{UPDATES}` is given twice")
            updates = _names(word.removeprefix(UPDATES))
            if not updates:
                raise ValueError(f"`{UPDATES}` names no table: say which tables' updates to carry ({UPDATES}t1,t2)")
        elif "=" in word:
            raise ValueError(f"unknown option `{word.split('=')[0]}=`: the only option is `{UPDATES}t1,t2`")
        elif tables is not None:
            raise ValueError(f"the tables are named twice ({' '.join(args[1:])}): name them once, comma-separated")
        else:
            tables = _names(word)
    return tables, updates


def _names(text: str) -> list[str]:
    return list(dict.fromkeys(t if "." in t else f"public.{t}" for t in text.split(",") if t))


async def check_args(env: Environment, args: tuple[str, ...]) -> str | None:
    if not args or not INCIDENT.match(args[0]):
        return "name the incident whose full rollback kept the rows (INC-YYYYMMDD-NNNN)"
    try:
        options(args)
    except ValueError as wrong:
        return str(wrong)
    return None


async def _source(ctx: RunContext) -> tuple[RunFacts, str]:
    """(the facts of the incident's full rollback that swapped, the incident id)."""
    incident_id = ctx.facts["args"][0]
    for run in reversed(await ctx.store.runs(incident_id=incident_id)):
        facts = RunFacts.of(run.facts)
        if run.plan == "full" and facts.swapped and facts.databases and run.environment == ctx.environment.name:
            return facts, incident_id
    raise StepFailed(f"{incident_id} has no full rollback of {ctx.environment.name} that swapped a restored copy "
                     "in: there is no kept failed database to carry rows from")


async def _the_backup_it_restored(ctx: RunContext, full: RunFacts, incident_id: str) -> None:
    """This run reads the backup the full rollback restored (its approval is bound to that file): it must
    still be there, unchanged, or the rows it held cannot be told from the ones written after it."""
    if full.backup is None:
        raise StepFailed(f"{incident_id}'s full rollback recorded no backup file")
    await ctx.remember(facts_update(backup=full.backup))
    checksum = await partial.backup_checksum(ctx)
    if checksum == "missing":
        raise StepFailed(f"the backup {full.backup.path} that {incident_id} restored is gone: without it the rows "
                         "written after it cannot be told from the ones it had. Nothing was changed")
    if full.backup.sha256 and checksum != full.backup.sha256:
        raise StepFailed(f"the backup {full.backup.path} has changed since {incident_id} restored it: it no longer "
                         "says which rows were written after it. Nothing was changed")


def _scope(named: list[str] | None, updates: list[str], full: RunFacts,
           pairs: list[tuple[str, list[str], list[str]]], skipped: list[tuple[str, str]]) -> list[str]:
    """The tables to look at: the ones named (and the `updates=` ones), else every table the count found
    a row written in after the backup (every comparable table when it could not count)."""
    comparable_tables = [p[0] for p in pairs]
    if named is not None or updates:
        wanted = list(dict.fromkeys([*(named or []), *updates]))
        unknown = [t for t in wanted if t not in comparable_tables]
        if unknown:
            reasons = dict(skipped)
            raise StepFailed("cannot carry rows of " + ", ".join(
                f"{t} ({reasons.get(t, 'no such table in both databases')})" for t in unknown))
        if named is not None:
            return wanted
    counted = (full.writes_after or {}).get("tables")
    found = comparable_tables if counted is None else [t for t, inserted, updated, _ in counted
                                                        if (inserted or updated) and t in comparable_tables]
    return list(dict.fromkeys([*found, *updates]))


def _with_partitions(catalog: Catalog, tables: list[str]) -> list[str]:
    """The tables and every partition under them: a partitioned table's rows are its partitions'."""
    def subtree(name: str) -> list[str]:
        return [name, *(n for child in catalog.partitions(name) for n in subtree(child))]
    return [n for t in tables for n in subtree(t)]


async def find(ctx: RunContext) -> StepOutcome:
    env = ctx.environment
    full, incident_id = await _source(ctx)
    failed_db = full.databases.keep_as
    named, updates = options(ctx.facts["args"])
    await _the_backup_it_restored(ctx, full, incident_id)
    async with await pg.admin(env) as conn:
        if not await pg.database_exists(conn, failed_db):
            raise StepFailed(f"the kept failed database {failed_db} no longer exists")
    async with await pg.connect(env, failed_db, read_only=True) as failed, await pg.connect(env, read_only=True) as live:
        for conn in (failed, live):
            await stable_session(conn)
        live_catalog = await describe(live)
        pairs, skipped = comparable(await describe(failed), live_catalog)
        scope = _scope(named, updates, full, pairs, skipped)
        if not scope:
            raise StepFailed(f"{incident_id}'s count found no row inserted or updated after the backup: nothing to "
                             "carry over")
        toc = await read_toc(full.backup.file())
        async with scratch_database(env, "carry") as scratch:
            await restore_rows(env, scratch, full.backup.file().path, toc, _with_partitions(live_catalog, scope))
            async with await pg.connect(env, scratch, read_only=True) as backup:
                await stable_session(backup)
                backup_catalog = await describe(backup)
                kept = await _kept_aside(live, incident_id)
                work = [await _table_work(failed, backup, live, live_catalog, backup_catalog, table, key, common,
                                          table in updates, kept.get(table, set()))
                        for table, key, common in pairs if table in scope]
    done, aside = sum(w["already"] for w in work), sum(w["kept_before"] for w in work)
    work = [w for w in work if w["inserts"] or w["taken"] or w["updates"] or w["changed"] or w["updated"]]
    if not any(w["inserts"] or w["taken"] or w["updates"] or w["changed"] for w in work):
        raise StepFailed(
            "nothing to carry over: every row inserted after the backup" + (" and every update asked for" if updates
                                                                             else "")
            + f" is in live already ({done:,} row(s))"
            + (f" or kept in rollback_quarantine.carried_over by an earlier carry-over ({aside:,} row(s))" if aside else "")
            + ("" if updates or not any(w["updated"] for w in work)
               else "; rows updated after the backup are carried only when asked (updates=t1,t2)"))
    order = _parents_first([w["table"] for w in work], await _edges(env))
    work.sort(key=lambda w: order.index(w["table"]))
    return StepOutcome(_found_line(work, failed_db), {"carry": work, "failed_db": failed_db,
                                                      "from_incident": incident_id})


async def _kept_aside(live, incident_id: str) -> dict[str, set[str]]:
    """table -> keys an earlier carry-over of this incident kept in rollback_quarantine.carried_over."""
    exists = await (await live.execute("SELECT to_regclass('rollback_quarantine.carried_over')")).fetchone()
    if exists[0] is None:
        return {}
    kept: dict[str, set[str]] = {}
    for table, key in await (await live.execute(
            "SELECT source_table, row_key FROM rollback_quarantine.carried_over WHERE incident_id = %s",
            (incident_id,))).fetchall():
        kept.setdefault(table, set()).add(key)
    return kept


async def _table_work(failed, backup, live, live_catalog: Catalog, backup_catalog: Catalog, table: str,
                      key: list[str], common: list[str], with_updates: bool, kept: set[str]) -> dict:
    """What the carry step does to one table, decided against the backup's rows and live as it is now; rows
    an earlier carry-over kept aside stay there (they are not tried again)."""
    in_backup = backup_catalog.tables.get(table)
    columns = [c for c in common if in_backup is not None and in_backup.column(c)]
    found = await carry_candidates(failed, backup, live, table, key, columns)
    rows = replace(found, inserts=[k for k in found.inserts if k not in kept],
                   taken=[k for k in found.taken if k not in kept],
                   updates={k: h for k, h in found.updates.items() if k not in kept},
                   changed=[k for k in found.changed if k not in kept])
    live_table = live_catalog.tables[table]
    settable = [c for c in columns if not live_table.column(c).generated]
    per_column, examples = await column_changes(failed, backup, table, key, columns, rows.updated)
    return {"table": table, "key": key, "hashed": columns, "columns": settable,
            "inserts": rows.inserts, "taken": rows.taken,
            "updates": rows.updates if with_updates else {}, "changed": rows.changed if with_updates else [],
            "updates_asked": with_updates, "already": rows.already, "updated": len(rows.updated),
            "kept_before": sum(1 for k in (*found.inserts, *found.taken, *found.updates, *found.changed) if k in kept),
            "by_column": per_column, "examples": [[k, c, _short(a), _short(b)] for k, c, a, b in examples],
            "defaults": [c.name for c in live_table.columns if c.name not in common and not c.generated],
            "identity_always": any(live_table.column(c).identity == "a" for c in settable)}


def _found_line(work: list[dict], failed_db: str) -> str:
    inserts = sum(len(w["inserts"]) + len(w["taken"]) for w in work)
    updates = sum(len(w["updates"]) for w in work)
    kept = sum(len(w["taken"]) + len(w["changed"]) for w in work)
    not_carried = sum(w["updated"] for w in work if not w["updates_asked"])
    listing = "; ".join(f"{w['table']} {len(w['inserts']) + len(w['taken']):,} inserted"
                        + (f", {len(w['updates']):,} updated" if w["updates"] else "") for w in work)
    return (f"in {failed_db} and not in the backup: {inserts:,} rows inserted after it"
            + (f", {updates:,} updates to carry where live still holds the backup's version" if updates else "")
            + f" ({listing})"
            + (f"; {kept:,} of them clash with what live holds now and will be kept aside" if kept else "")
            + (f"; {not_carried:,} rows updated after the backup are not carried (not asked)" if not_carried else ""))


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


def _by_column(w: dict) -> str:
    columns = ", ".join(f"{c} {n:,}" for c, n in sorted(w["by_column"].items(), key=lambda i: -i[1])[:6])
    seen = "; ".join(f"{k} {c}: {a} → {b}" for k, c, a, b in w["examples"])
    return f"by column: {columns}; e.g. {seen}"


def preview(ctx: RunContext) -> ApprovalPreview:
    work = ctx.facts["carry"]
    inserts = sum(len(w["inserts"]) for w in work)
    updates = sum(len(w["updates"]) for w in work)
    actions = []
    for w in work[:SHOWN]:
        if w["inserts"]:
            actions.append(f"INSERT {len(w['inserts']):,} row(s) into `{w['table']}`"
                           + (f" (columns live has and the failed database lacks take live's default: "
                              f"{', '.join(w['defaults'])})" if w["defaults"] else ""))
        if w["updates"]:
            actions.append(f"UPDATE {len(w['updates']):,} row(s) of `{w['table']}` to the failed database's values, "
                           f"only where live still holds the backup's version ({_by_column(w)})")
        if w["taken"]:
            actions.append(f"Kept aside, not inserted: {len(w['taken']):,} row(s) of `{w['table']}` whose key live "
                           "has given to another row since the rollback")
        if w["changed"]:
            actions.append(f"Kept aside, not updated: {len(w['changed']):,} row(s) of `{w['table']}` that live has "
                           "changed or deleted since the rollback")
        if w["updated"] and not w["updates_asked"]:
            actions.append(f"Not carried: {w['updated']:,} row(s) of `{w['table']}` updated after the backup "
                           f"({_by_column(w)}): live keeps the backup's values; `updates={w['table']}` would carry "
                           "them")
    if len(work) > SHOWN:
        actions.append(f"…and {len(work) - SHOWN} more tables")
    actions += ["Parents before children, in one transaction; the tables' own triggers and rules off, foreign keys "
                "on; sequences moved past the carried keys",
                "A row that would break a constraint is not written: it is kept in rollback_quarantine.carried_over",
                "Rows deleted after the backup are not deleted" + ("" if updates else ", nor updated ones updated")
                + " (the migration's own changes among them)"]
    what = f"{inserts:,} rows inserted" + (f" and {updates:,} updated" if updates else "")
    return ApprovalPreview(
        title=f"Carry over {what} after the backup into {ctx.environment.name}",
        actions=tuple(actions),
        facts=(("From", f"`{ctx.facts['failed_db']}` (kept by {ctx.facts['from_incident']})"),
               ("Into", ctx.environment.target), ("Checked against", partial.backup_of(ctx).describe()),
               ("Requested by", f"<@{ctx.run.requested_by}>")),
        confirm=f"Insert {inserts:,} rows" + (f" and update {updates:,}" if updates else "")
                + f" in {ctx.environment.database}? Nothing is deleted.")


def outcome(ctx: RunContext, state: RunState, failed_step: str | None) -> RunOutcome:
    if state is RunState.SUCCEEDED:
        carried = sum((ctx.facts.get("carried") or {}).values())
        updated = sum((ctx.facts.get("updated_rows") or {}).values())
        return RunOutcome(f"`{ctx.environment.database}` has {carried:,} more rows: the ones inserted after the backup"
                          + (f"; {updated:,} rows hold their values from after the backup again" if updated else "")
                          + ".")
    return RunOutcome("Nothing was changed (the carry-over is one transaction).",
                      "Read the ❌ step." if state.failed else "")


def build_plan(env: Environment, args: tuple[str, ...]) -> Plan:
    return partial.partial_plan(
        "carry-over", "Carry-over",
        Step("find", "Find the rows written after the backup (the backup's rows read aside)", find),
        Step("carry", "Write them into live", carry_rows.carry, destructive=True, preview=preview),
        outcome=outcome, reads_backup=True)


SPEC = PlanSpec("carry-over", "Carry-over", build_plan, check_args, level=1)
