"""Independent checks run at the same time, and one failure stops the others."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable


async def together(*awaitables: Awaitable[Any]) -> list[Any]:
    """Await all at once; return their results in order.

    On the first failure the others are cancelled (a child process they started is killed by
    its own cancellation handling) and that failure is raised as it is — not wrapped in an
    ExceptionGroup as TaskGroup would, so callers keep catching StepFailed or BackupProblem.
    """
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
