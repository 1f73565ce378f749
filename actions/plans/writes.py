"""The full rollback's step after RESOLVED: count the rows written after the backup (issue 18); the
comparison itself is `actions/postgres/writes_after.py`, putting the inserted ones back is `carry_over.py`."""

from __future__ import annotations

import readable
from actions.engine.plan import RunContext, StepOutcome
from actions.plans.facts import RunFacts, facts_update
from actions.postgres import server as pg
from actions.postgres import writes_after


async def count_writes(ctx: RunContext) -> StepOutcome:
    """After RESOLVED: what was written after the backup, kept in the failed database and not in the
    restored one, counted exactly (`postgres/writes_after.py`). The rollback is done: a failure here is
    said, never a failed run."""
    databases = RunFacts.of(ctx.facts).databases
    live, keep_as = databases.live, databases.keep_as
    env = ctx.environment
    try:
        writes = await writes_after.compare(
            lambda: pg.connect(env, keep_as, read_only=True, name="rollback-bot count writes"),
            lambda: pg.connect(env, live, read_only=True, name="rollback-bot count writes"))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        line = (f"Writes made after the backup could not be counted ({reason}); they are kept in `{keep_as}`: "
                f"compare it with `{live}` to see them")
        return StepOutcome(line, facts_update(writes_line=line))
    line = writes_after.summary(writes, keep_as)
    tables = "; ".join(f"{t.table}: +{t.inserted} ~{t.updated} -{t.deleted}" for t in writes.tables[:10])
    more = f" and {len(writes.tables) - 10} more tables" if len(writes.tables) > 10 else ""
    skipped = ("; not compared: " + ", ".join(f"{name} ({why})" for name, why in writes.not_compared[:6])
               + (" …" if len(writes.not_compared) > 6 else "")) if writes.not_compared else ""
    return StepOutcome(
        f"{line}. {writes.compared} tables compared in {readable.duration(writes.seconds)}"
        + (f" ({tables}{more})" if tables else "") + skipped
        + ". The migration's own changes count too: they cannot be told from the application's.",
        facts_update(writes_after=writes.as_dict(), writes_line=line))
