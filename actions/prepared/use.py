"""A full rollback's use of a prepared copy: is there one it may use, and is it still unchanged right
before the swap. The proof itself is `proof.py`."""

from __future__ import annotations

from actions.engine.plan import RunContext, StepFailed
from actions.plans.facts import RunFacts
from actions.postgres import server as pg
from actions.prepared.proof import unchanged
from actions.store.records import PreparedCopy, PreparedState


async def usable_copy(ctx: RunContext, sha256: str) -> tuple[PreparedCopy | None, str | None]:
    """The environment's ready prepared copy if it holds the newest backup and is proven unchanged; else
    (None, why not) — or (None, None) when there is none."""
    ready = await ctx.store.prepared_copies(environment=ctx.environment.name, states=(PreparedState.READY,))
    if not ready:
        return None, None
    copy = ready[-1]
    if copy.backup_sha256 != sha256:
        return None, (f"{copy.database} holds the backup of {copy.backup_created:%Y-%m-%d %H:%M} UTC, and a newer "
                      "backup is the newest now")
    try:
        async with await pg.admin(ctx.environment) as conn:
            why_not = await unchanged(conn, copy)
    except Exception as exc:
        return None, f"it could not be checked ({type(exc).__name__})"
    return (None, why_not) if why_not else (copy, None)


async def still_unchanged(ctx: RunContext) -> PreparedCopy:
    """The prepared copy this run uses, proven again unchanged; StepFailed (nothing changed) if it is not."""
    copy = await ctx.store.prepared_copy(RunFacts.of(ctx.facts).prepared.id)
    async with await pg.admin(ctx.environment) as conn:
        why_not = await unchanged(conn, copy)
    if why_not:
        await ctx.store.update_prepared(copy.id, state=PreparedState.FAILED, note=f"not used: {why_not}")
        raise StepFailed(f"the prepared copy cannot be used: {why_not}. Nothing was changed; run "
                         f"`/rollback full {ctx.environment.name}` again to restore the backup as usual")
    return copy
