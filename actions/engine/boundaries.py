"""Step boundaries, for the crash sweep: the runner (and a prepare's phases) call `boundary(plan, step, moment)`
with "started" once a step's start is saved and before it acts, and "acted" once it has acted and before its
end is saved. `BOUNDARY_HOOKS` is empty in production; only the crash sweep's test build
(tests/support/crashing_bot.py) adds a hook, which kills the process at a chosen boundary."""

from __future__ import annotations

from typing import Callable

BOUNDARY_HOOKS: list[Callable[[str, str, str], None]] = []


def boundary(plan: str, step: str, moment: str) -> None:
    for hook in BOUNDARY_HOOKS:
        hook(plan, step, moment)
