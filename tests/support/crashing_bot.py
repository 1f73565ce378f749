"""The crash sweep's build of `rollback-bot`: the real command line, plus one hook on the runner's step
boundaries (`actions.engine.boundaries.BOUNDARY_HOOKS`) that SIGKILLs this very process at the boundary named
by `CRASH_AT`, "<plan>:<step>:<moment>":

- `started`: the step's start is saved, and it has not acted yet;
- `middle`: while the step's long part runs — its pg_restore child process is working;
- `acted`: the step has acted, and its end is not saved yet.

Before dying it writes where it died to `CRASH_REPORT` (a `middle` whose step never started a pg_restore
dies at `acted` instead, and says so). Production never installs the hook: only running this file does.
Without `CRASH_AT` this is exactly `rollback-bot`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

from actions.engine import boundaries
from bot.cli import main

LONG_PART = b"pg_restore"


def _die(where: str) -> None:
    if os.environ.get("CRASH_REPORT"):
        Path(os.environ["CRASH_REPORT"]).write_text(where)
    os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no last message: exactly a crash


def _children_running(name: bytes) -> bool:
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        # "pid (comm) state ppid …": comm may hold spaces, so split after its closing parenthesis.
        comm = stat[stat.index(b"(") + 1:stat.rindex(b")")]
        if comm == name and stat[stat.rindex(b")") + 2:].split()[1].decode() == me:
            return True
    return False


def _kill_inside_the_long_part(stop: threading.Event) -> None:
    while not stop.is_set():
        if _children_running(LONG_PART):
            time.sleep(0.05)  # well inside it
            _die("middle")
        time.sleep(0.01)


def install(target: str) -> None:
    plan, step, moment = target.split(":")
    step_ended = threading.Event()

    def hook(name: str, key: str, at: str) -> None:
        if name != plan or key != step:
            return
        if at == moment:
            _die(moment)
        if moment == "middle" and at == "started":
            threading.Thread(target=_kill_inside_the_long_part, args=(step_ended,), daemon=True).start()
        if moment == "middle" and at == "acted":
            step_ended.set()
            _die("acted (the step ended before its long part was seen)")
    boundaries.BOUNDARY_HOOKS.append(hook)


if __name__ == "__main__":
    if os.environ.get("CRASH_AT"):
        install(os.environ["CRASH_AT"])
    sys.exit(main(sys.argv[1:]))
