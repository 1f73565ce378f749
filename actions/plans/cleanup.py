"""`/rollback cleanup <env>`: drop the restored copies (`<live>__rollback_<incident>`) that
interrupted or failed runs left behind, and the copies of prepares that failed or were interrupted
(`<live>__prepared_<id>` that were never verified), after an approval.

Only copies that never became live are candidates: the name must be the live name plus
`__rollback_` or `__prepared_`, no running rollback may be using it, a ready prepared copy is not
a leftover (`/rollback unprepare` removes one), and the live database and the kept failed copies
(`__failed_`, kept for forensics) are never touched. The bot finds such copies at start-up and
offers this plan with a button.
"""

from __future__ import annotations

from psycopg import sql

import readable
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
 WHERE (starts_with(datname, %s) OR starts_with(datname, %s)) AND datname <> %s ORDER BY datname"""


def copy_name(live: str, incident_id: str) -> str:
    """The aside copy's name for an incident, as actions/full_rollback.py makes it."""
    return f"{live}__rollback_{incident_id.lower().replace('-', '_')}"


async def leftovers(env: Environment, busy_incidents: set[str], in_use: set[str] = frozenset()) -> list[tuple[str, int]]:
    """(name, bytes) of every aside copy of `env` that no running rollback is using, and every prepared
    copy not in `in_use` (the ready ones, and one a prepare is making now)."""
    live = env.database
    busy = {copy_name(live, incident) for incident in busy_incidents} | set(in_use)
    async with await pg.admin(env) as conn:
        rows = await (await conn.execute(LEFTOVERS_SQL, (f"{live}__rollback_", f"{live}__prepared_", live))).fetchall()
    return [(name, size) for name, size in rows if name not in busy]


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
    async with await pg.admin(ctx.environment) as conn:
        for name in ctx.facts["leftovers"]:
            if not name.startswith((f"{live}__rollback_", f"{live}__prepared_")) or name == live or name not in still_free:
                continue  # a rollback started using it since the approval: leave it alone
            await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            dropped.append(name)
    if not dropped:
        raise StepFailed("none of the copies is free any more: nothing was dropped")
    return StepOutcome(f"dropped {', '.join(dropped)}", {"dropped": dropped})


def preview(ctx: RunContext) -> ApprovalPreview:
    sizes = ctx.facts["leftover_sizes"]
    return ApprovalPreview(
        title=f"Drop leftover restored copies of {ctx.environment.name}",
        actions=(*(f"DROP DATABASE `{name}` ({readable.size(sizes[name])}): a copy restored by an interrupted or "
                   "failed run or prepare; it never became live and was never used" for name in ctx.facts["leftovers"]),
                 f"Never `{ctx.environment.database}` itself, never a kept `__failed_` copy"),
        facts=(("Target", ctx.environment.target), ("Requested by", f"<@{ctx.run.requested_by}>")),
        confirm=f"Drop {len(ctx.facts['leftovers'])} leftover restored cop"
                f"{'y' if len(ctx.facts['leftovers']) == 1 else 'ies'}? Live is not touched.")


def build_plan(env: Environment, args: tuple[str, ...]) -> Plan:
    return partial.partial_plan(
        "cleanup", "Clean-up",
        Step("find", "Find the leftover restored copies", find),
        Step("drop", "Drop them", drop, destructive=True, preview=preview),
        outcome=partial.live_untouched("only leftover copies were dropped"))


SPEC = PlanSpec("cleanup", "Clean-up", build_plan, check_args, level=1)
