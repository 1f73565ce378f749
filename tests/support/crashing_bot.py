"""The crash sweep's build of `rollback-bot`: the real command line, plus one hook on the runner's step
boundaries (`actions.engine.runner.BOUNDARY_HOOKS`) that SIGKILLs this very process at the boundary named
by `CRASH_AT`, "<plan>:<step>:<moment>":

- `started`: the step's start is saved, and it has not acted yet;
- `middle`: `CRASH_MIDDLE_SECONDS` (default 0.5) into the step, for a step with a long part (a restore);
- `acted`: the step has acted, and its end is not saved yet.

Production never installs the hook: only `python -m support.crashing_bot serve …` does. Without
`CRASH_AT` this is exactly `rollback-bot`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from actions.engine import runner
from bot.cli import main


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no last message: exactly a crash


def install(target: str) -> None:
    plan, step, moment = target.split(":")

    def hook(run, key: str, at: str) -> None:
        if run.plan != plan or key != step:
            return
        if at == moment:
            _die()
        if moment == "middle" and at == "started":
            threading.Timer(float(os.environ.get("CRASH_MIDDLE_SECONDS", "0.5")), _die).start()
    runner.BOUNDARY_HOOKS.append(hook)


if __name__ == "__main__":
    if os.environ.get("CRASH_AT"):
        install(os.environ["CRASH_AT"])
    sys.exit(main(sys.argv[1:]))
