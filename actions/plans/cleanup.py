"""`/rollback cleanup <env>`: drop what interrupted or failed runs made beside live and never made live,
after an approval:

- the restored copies (`<live>__rollback_<incident>`), and the copies of prepares that failed or were
  interrupted (`<live>__prepared_<id>` that were never verified);
- scratch databases (`<live>__scratch_…`) that this process is not reading now: a run or a diff drops
  its own when it ends, but not when the process is killed;
- in live, the bot's own scratch schemas: a column rollback's copy of the backup's values
  (`rollback_columns_<incident>`) and a table rollback's shadow of the backup's rows
  (`rollback_shadow_<run>`), of no running run.

Never touched: the live database's own schemas, the kept failed copies (`__failed_`, kept for
forensics), a ready prepared copy (`/rollback unprepare` removes one), a table rollback's way back
(`rollback_replaced_<run>`) and the quarantine (`rollback_quarantine`). The bot finds leftovers at
start-up and offers this plan with a button; *Abandon and clean up* on an interrupted run starts it.
"""

from __future__ import annotations

import logging

from psycopg import sql

import readable
from actions.backups.scratch import IN_USE as SCRATCH_IN_USE
from actions.config import Environment
from actions.engine.plan import (
    ApprovalPreview,
    Plan,
    PlanSpec,
    RunContext,
    Step,
    StepFailed,
    StepOutcome,
)
from actions.plans import partial
from actions.postgres import server as pg
from actions.store.records import PreparedState

LEFTOVERS_SQL = """
SELECT datname, pg_database_size(oid) FROM pg_database
 WHERE (starts_with(datname, %s) OR starts_with(datname, %s) OR starts_with(datname, %s)) AND datname <> %s
 ORDER BY datname"""
log = logging.getLogger(__name__)
SCHEMA_KINDS = ("rollback_shadow_", "rollback_columns_")  # the bot's scratch schemas in live, and only those
SCHEMAS_SQL = """
SELECT n.nspname, coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_namespace n
  LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'm')
 WHERE starts_with(n.nspname, %s) OR starts_with(n.nspname, %s) GROUP BY n.nspname ORDER BY n.nspname"""


def copy_name(live: str, incident_id: str) -> str:
    """The aside copy's name for an incident, as actions/full_rollback.py makes it."""
    return f"{live}__rollback_{incident_id.lower().replace('-', '_')}"


async def leftovers(env: Environment, busy_incidents: set[str], in_use: set[str] = frozenset()) -> list[tuple[str, int]]:
    """(name, bytes) of every aside copy of `env` that no running rollback is using, every prepared copy
    not in `in_use` (the ready ones, and one a prepare is making now), every scratch database this process
    is not reading, and (as "schema <name>") the bot's scratch schemas in live of no running run."""
    live = env.database
    busy = {copy_name(live, incident) for incident in busy_incidents} | set(in_use) | SCRATCH_IN_USE
    async with await pg.admin(env) as conn:
        rows = await (await conn.execute(LEFTOVERS_SQL, (f"{live}__rollback_", f"{live}__prepared_",
                                                         f"{live}__scratch_", live))).fetchall()
    found = [(name, size) for name, size in rows if name not in busy]
    suffixes = {incident.lower().replace("-", "_") for incident in busy_incidents}
    async with await pg.connect(env) as conn:
        schemas = await (await conn.execute(SCHEMAS_SQL, SCHEMA_KINDS)).fetchall()
    return found + [(f"{SCHEMA}{name}", size) for name, size in schemas if not any(s in name for s in suffixes)]


SCHEMA = "schema "  # how a leftover schema in live is named among the leftover databases


async def leftovers_at_start(settings, store) -> dict[str, list[tuple[str, int]]]:
    """At start-up: per environment, the leftovers interrupted runs left behind (audited). An environment
    whose server does not answer is left out: it must not stop the bot starting."""
    busy = {run.incident_id for run in await store.runs(active=True)}
    found: dict[str, list[tuple[str, int]]] = {}
    for name, env in settings.environments.items():
        try:
            copies = await leftovers(env, busy, await prepared_in_use(store, name))
        except Exception as exc:
            log.warning("could not look for leftover copies of %s: %s", name,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            continue
        if copies:
            found[name] = copies
            await store.audit("bot", "leftovers.found", environment=name, copies=[c for c, _ in copies])
    return found


async def prepared_in_use(store, environment: str) -> set[str]:
    """The prepared copies that are not leftovers: ready ones, and the one a prepare is making now."""
    return {c.database for c in await store.prepared_copies(
        environment=environment, states=(PreparedState.READY, PreparedState.PREPARING))}


async def _busy(ctx: RunContext) -> set[str]:
    """Incidents of this environment whose rollback is running now (not this cleanup itself)."""
    return {run.incident_id for run in await ctx.store.runs(active=True)
            if run.environment == ctx.environment.name and run.id != ctx.run.id and run.plan != "cleanup"}


async def _free(ctx: RunContext) -> list[tuple[str, int]]:
    return await leftovers(ctx.environment, await _busy(ctx), await prepared_in_use(ctx.store, ctx.environment.name))


async def check_args(env: Environment, args: tuple[str, ...]) -> str | None:
    return "cleanup takes no arguments: it finds the copies itself" if args else None


async def find(ctx: RunContext) -> StepOutcome:
    found = await _free(ctx)
    if not found:
        raise StepFailed(f"no leftover restored copy of {ctx.environment.database}: nothing to clean up")
    listing = ", ".join(f"{name} ({readable.size(size)})" for name, size in found)
    return StepOutcome(f"{len(found)} leftover restored cop{'y' if len(found) == 1 else 'ies'}: {listing}",
                       {"leftovers": [name for name, _ in found], "leftover_sizes": dict(found)})


async def drop(ctx: RunContext) -> StepOutcome:
    live = ctx.environment.database
    still_free = {name for name, _ in await _free(ctx)}
    dropped = []
    for name in ctx.facts["leftovers"]:
        if name not in still_free:
            continue  # a run started using it since the approval: leave it alone
        if name.startswith(SCHEMA):
            schema = name.removeprefix(SCHEMA)
            if not schema.startswith(SCHEMA_KINDS):
                continue
            async with await pg.connect(ctx.environment) as conn:
                # The bot's own scratch tables only (the name says so); nothing outside depends on them.
                await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        else:
            if not name.startswith((f"{live}__rollback_", f"{live}__prepared_", f"{live}__scratch_")) or name == live:
                continue
            async with await pg.admin(ctx.environment) as conn:
                await pg.drop_database(conn, name)
        dropped.append(name)
    if not dropped:
        raise StepFailed("none of the leftovers is free any more: nothing was dropped")
    return StepOutcome(f"dropped {', '.join(dropped)}", {"dropped": dropped})


def _what(name: str, size: int, live: str) -> str:
    if name.startswith(SCHEMA):
        return (f"DROP SCHEMA `{name.removeprefix(SCHEMA)}` in `{live}` ({readable.size(size)}): an interrupted or "
                "failed run's scratch copy of the backup's rows; never live data")
    kind = ("a scratch database an interrupted run or diff read the backup into" if "__scratch_" in name else
            "a copy restored by an interrupted or failed run or prepare; it never became live and was never used")
    return f"DROP DATABASE `{name}` ({readable.size(size)}): {kind}"


def preview(ctx: RunContext) -> ApprovalPreview:
    sizes, names = ctx.facts["leftover_sizes"], ctx.facts["leftovers"]
    live = ctx.environment.database
    return ApprovalPreview(
        title=f"Drop leftover restored copies of {ctx.environment.name}",
        actions=(*(_what(name, sizes[name], live) for name in names),
                 f"Never `{live}`'s own data, never a kept `__failed_` copy, never `rollback_replaced_` (a table "
                 "rollback's way back) or `rollback_quarantine`"),
        facts=(("Target", ctx.environment.target), ("Requested by", f"<@{ctx.run.requested_by}>")),
        confirm=f"Drop {len(names)} leftover{'' if len(names) == 1 else 's'}? Live's data is not touched.")


def build_plan(env: Environment, args: tuple[str, ...]) -> Plan:
    return partial.partial_plan(
        "cleanup", "Clean-up",
        Step("find", "Find the leftover restored copies", find),
        Step("drop", "Drop them", drop, destructive=True, preview=preview),
        outcome=partial.live_untouched("only leftover copies were dropped"))


SPEC = PlanSpec("cleanup", "Clean-up", build_plan, check_args, level=1)
