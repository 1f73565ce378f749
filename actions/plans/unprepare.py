"""`/rollback unprepare <env>`: remove the environment's prepared copy, after an approval.

The same rule as `/rollback cleanup`: dropping a database is a gated step, even one the bot made and
nobody used. Only a ready prepared copy (`<live>__prepared_<id>`) is a candidate; a prepare under way is
not (it ends by itself), and copies of failed prepares are `/rollback cleanup`'s. The live database is
never touched.
"""

from __future__ import annotations

import readable
from actions.config import Environment
from actions.engine.plan import ApprovalPreview, Plan, PlanSpec, RunContext, Step, StepFailed, StepOutcome
from actions.plans import partial
from actions.postgres import server as pg
from actions.store.records import PreparedState, utcnow


async def check_args(env: Environment, args: tuple[str, ...]) -> str | None:
    return "unprepare takes no arguments: it removes the environment's prepared copy" if args else None


async def find(ctx: RunContext) -> StepOutcome:
    ready = await ctx.store.prepared_copies(environment=ctx.environment.name, states=(PreparedState.READY,))
    if not ready:
        raise StepFailed(f"{ctx.environment.name} has no prepared copy: nothing to remove")
    listing = ", ".join(f"{c.database} ({readable.size(c.size or 0)}, verified {c.ready_at:%Y-%m-%d %H:%M} UTC)"
                        for c in ready)
    return StepOutcome(f"prepared: {listing}", {"copies": [c.id for c in ready],
                                                "copy_names": {c.id: c.database for c in ready},
                                                "copy_sizes": {c.id: c.size or 0 for c in ready}})


async def drop(ctx: RunContext) -> StepOutcome:
    dropped = []
    async with await pg.admin(ctx.environment) as conn:
        for copy_id in ctx.facts["copies"]:
            copy = await ctx.store.prepared_copy(copy_id)
            if copy is None or copy.state is not PreparedState.READY:
                continue  # a full rollback used it since the approval: it is live now, leave it alone
            await pg.drop_database(conn, copy.database)
            await ctx.store.update_prepared(copy.id, state=PreparedState.REMOVED, ended_at=utcnow(),
                                            note=f"removed by {ctx.run.id} (requested by {ctx.run.requested_by})")
            dropped.append(copy.database)
    if not dropped:
        raise StepFailed("the prepared copy is not there any more (a full rollback used it): nothing was dropped")
    return StepOutcome(f"dropped {', '.join(dropped)}; a full rollback of {ctx.environment.name} restores the "
                       "backup as usual until the next prepare", {"dropped": dropped})


def preview(ctx: RunContext) -> ApprovalPreview:
    names, sizes = ctx.facts["copy_names"], ctx.facts["copy_sizes"]
    return ApprovalPreview(
        title=f"Remove the prepared copy of {ctx.environment.name}",
        actions=(*(f"DROP DATABASE `{names[i]}` ({readable.size(sizes[i])}): the prepared rollback; a full rollback "
                   "will restore the backup instead" for i in ctx.facts["copies"]),
                 f"Never `{ctx.environment.database}` itself, never a backup file"),
        facts=(("Target", ctx.environment.target), ("Requested by", f"<@{ctx.run.requested_by}>")),
        confirm=f"Drop the prepared copy of {ctx.environment.name}? Live is not touched.")


def build_plan(env: Environment, args: tuple[str, ...]) -> Plan:
    return partial.partial_plan(
        "unprepare", "Prepared copy removal",
        Step("find", "Find the prepared copy", find),
        Step("drop", "Drop it", drop, destructive=True, preview=preview),
        outcome=partial.live_untouched("only the prepared copy was dropped"))


SPEC = PlanSpec("unprepare", "Prepared copy removal", build_plan, check_args, level=1)
