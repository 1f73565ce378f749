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

from actions.postgres import server as pg
from actions.config import Environment
from actions.diagnose.model import Finding, Remedy, RemedyKind, Status

RUN_TAG_PREFIX = "rollback-bot diagnose"
QUERY_CHARS = 100  # the first line of a query, as shown in a finding
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
class Outcome:
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
    run: Callable[[Context], Awaitable[Outcome]]
    own_connection: bool = False  # True: the check connects by itself (its connect failing is a finding)


def connect_timeout(timeout: float) -> int:
    """libpq's connect_timeout (whole seconds, at least 2) for a check limited to `timeout` seconds."""
    return max(2, math.ceil(timeout / 2))


async def open_connection(env: Environment, tag: str, deadline: float,
                          dbname: str | None = None) -> psycopg.AsyncConnection:
    """A read-only connection for one check, its statements limited to the time the check has left."""
    left = deadline - time.monotonic()
    conn = await pg.connect(env, dbname, timeout=connect_timeout(left))
    try:
        await limit_statements(conn, deadline)
        await conn.execute(
            "SELECT set_config('application_name', %s, false), "
            "set_config('default_transaction_read_only', 'on', false), "
            "set_config('lock_timeout', %s, false)",
            (tag, f"{int(min(LOCK_TIMEOUT_SECONDS, max(left, 0.001) / 2) * 1000) or 1}ms"))
    except BaseException:
        await conn.close()
        raise
    return conn


async def limit_statements(conn: psycopg.AsyncConnection, deadline: float, margin: float = 0.0) -> None:
    """Set statement_timeout to the time left before `deadline` (less `margin`), at least 1 ms."""
    milliseconds = max(1, int((deadline - time.monotonic() - margin) * 1000))
    await conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{milliseconds}ms",))


def first_line(text: str | None, limit: int = QUERY_CHARS) -> str:
    """The first non-empty line of a query or an error, whitespace collapsed, clipped to `limit`."""
    for line in (text or "").splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def error_line(exc: BaseException) -> str:
    """An exception as one line: the server's primary message when there is one."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return first_line(primary or str(exc) or type(exc).__name__, 300)


def age(seconds: float | None) -> str:
    """45 s, 3 min 05 s, 2 h 10 min, 3 d 4 h."""
    if seconds is None:
        return "unknown"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n:,} {noun if n == 1 else (plural or noun + 's')}"


def terminate(pid: int, backend_start: datetime, label: str | None = None) -> Remedy:
    """The remedy that ends one backend; backend_start makes it refuse a recycled pid."""
    return Remedy(RemedyKind.TERMINATE, {"pid": int(pid), "backend_start": backend_start.isoformat()},
                  label or f"Terminate {pid}")


SEVERITY = (Status.OK, Status.WARN, Status.ERROR, Status.FAIL)  # as Diagnosis.worst orders them


def worst_of(*statuses: Status) -> Status:
    return max(statuses, key=SEVERITY.index, default=Status.OK)
