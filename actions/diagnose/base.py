"""What every `/rollback diagnose` check shares: its context, its outcome, its connection, and the
small formatters that put figures into one-line findings.

A check connection is read-only (`default_transaction_read_only`), carries the run's
`application_name` (so the session checks leave the diagnosis's own backends out), and has a
`statement_timeout` equal to the time the check has left, so the server stops the work too when
the check's asyncio time limit expires.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg

import readable
from actions.config import Environment
from actions.diagnose.model import Finding, Remedy, RemedyKind, Status
from actions.postgres import server as pg

RUN_TAG_PREFIX = "rollback-bot diagnose"
LOCK_TIMEOUT_SECONDS = 2.0  # a check that needs a table lock gives up on it after this long


@dataclass(frozen=True)
class Context:
    """What a check runs with. `conn` is None for a check that opens its own (connectivity)."""

    env: Environment
    conn: psycopg.AsyncConnection | None
    tag: str  # the application_name of this run's connections
    timeout: float  # the check's time limit, seconds
    deadline: float  # time.monotonic() by which the check must be done

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    @property
    def db(self) -> psycopg.AsyncConnection:
        if self.conn is None:
            raise RuntimeError("this check runs without a prepared connection")
        return self.conn


@dataclass(frozen=True)
class CheckOutcome:
    """What a check found; the runner adds key, title, duration and (by default) the hint."""

    status: Status
    summary: str
    findings: tuple[Finding, ...] = ()
    hint: str | None = None  # overrides the check's own hint, e.g. with advice for this result


@dataclass(frozen=True)
class Check:
    key: str
    title: str
    hint: str  # one line naming the runbook contingency, shown when the status is not OK
    run: Callable[[Context], Awaitable[CheckOutcome]]
    own_connection: bool = False  # True: the check connects by itself (its connect failing is a finding)


def connect_timeout(timeout: float) -> int:
    """libpq's connect_timeout (whole seconds, at least 2) for a check limited to `timeout` seconds."""
    return max(2, math.ceil(timeout / 2))


async def check_connection(env: Environment, tag: str, deadline: float,
                          dbname: str | None = None) -> psycopg.AsyncConnection:
    """A read-only connection for one check, named `tag`, its statements limited to the time the
    check has left and its lock waits to half of it (at most LOCK_TIMEOUT_SECONDS)."""
    left = max(deadline - time.monotonic(), 0.001)
    return await pg.connect(env, dbname, timeout=connect_timeout(left), name=tag, read_only=True,
                            statement_timeout_ms=max(1, int(left * 1000)),
                            lock_timeout_ms=int(min(LOCK_TIMEOUT_SECONDS, left / 2) * 1000) or 1)


async def limit_statements(conn: psycopg.AsyncConnection, deadline: float, margin: float = 0.0) -> None:
    """Set statement_timeout to the time left before `deadline` (less `margin`), at least 1 ms."""
    milliseconds = max(1, int((deadline - time.monotonic() - margin) * 1000))
    await conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{milliseconds}ms",))


def error_line(exc: BaseException) -> str:
    """An exception as one line: the server's primary message when there is one."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return readable.first_line(primary or str(exc) or type(exc).__name__, 300)


def age(seconds: float | None) -> str:
    """How long ago or for how long, as a finding says it ("unknown" when the server did not say)."""
    return readable.duration(seconds, unknown="unknown")


def terminate(pid: int, backend_start: datetime, label: str | None = None) -> Remedy:
    """The remedy that ends one backend; backend_start makes it refuse a recycled pid."""
    return Remedy(RemedyKind.TERMINATE, {"pid": int(pid), "backend_start": backend_start.isoformat()},
                  label or f"Terminate {pid}")


SEVERITY = (Status.OK, Status.WARN, Status.ERROR, Status.FAIL)  # as Diagnosis.worst orders them


def worst_of(*statuses: Status) -> Status:
    return max(statuses, key=SEVERITY.index, default=Status.OK)
