"""What `/rollback watch` alerts on, decided from one poll's sessions; each occurrence once.

- long_query: an active statement older than `long_query_seconds` (runbook Part 2, Level 1).
  One occurrence: (pid, backend_start, query_start).
- lock_wait: a session waiting for a heavyweight lock that another session holds.
  One occurrence: the waiting statement and the lock it waits for.
- hung (Contingency 1, "no progress"): a session stuck for `hung_minutes` without a break,
  measured on the server's clock: waiting for a lock since `pg_locks.waitstart`, or idle in
  transaction while holding locks since `state_change`. Any progress (the lock granted, a new
  statement) moves that timestamp, so the clock starts again. One occurrence:
  (pid, backend_start, xact_start, stuck since).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import readable
from actions.watch.poll import Session


class AlertKind(StrEnum):
    LONG_QUERY = "long_query"
    LOCK_WAIT = "lock_wait"
    HUNG = "hung"
    CONNECTION_LOST = "connection_lost"
    CONNECTION_BACK = "connection_back"


@dataclass(frozen=True)
class WatchFinding:
    kind: AlertKind
    text: str
    pid: int | None


@dataclass(frozen=True)
class Longest:
    seconds: float
    pid: int
    query: str  # first line, trimmed


def utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%H:%M:%S} UTC"


def query_line(text: str, limit: int = 100) -> str:
    """A query's first line for an alert, its backticks made harmless for the `code` around it."""
    return readable.first_line(text, limit).replace("`", "'")


def doing(s: Session) -> str:
    """What a session is doing, in a few words."""
    query = query_line(s.query)
    if s.state == "active":
        age = s.query_age or 0.0
        waiting = f", waiting on {s.wait_event_type}/{s.wait_event}" if s.wait_event_type else ""
        return f"running `{query}` for {readable.duration(age)}{waiting}"
    if s.idle_in_transaction and s.state_change is not None:
        idle = readable.duration((s.server_now - s.state_change).total_seconds())
        return f"{s.state} for {idle} after `{query}`"
    if s.state == "idle":
        return f"idle (last statement `{query}`)"
    return f"{s.state or 'activity not visible to the watcher role'}"


class Rules:
    """Keeps what was already alerted and the figures for the summary, across polls."""

    def __init__(self, long_query_seconds: float, hung_minutes: float):
        self.long_query_seconds = long_query_seconds
        self.hung_seconds = hung_minutes * 60
        self.longest: Longest | None = None
        self.migration: Session | None = None  # the longest-running non-idle session of the last good poll
        self._alerted: set[tuple] = set()

    def examine(self, sessions: list[Session]) -> list[WatchFinding]:
        by_pid = {s.pid: s for s in sessions}
        findings: list[WatchFinding] = []
        for s in sessions:
            age = s.query_age
            if age is not None and (self.longest is None or age > self.longest.seconds):
                self.longest = Longest(age, s.pid, query_line(s.query))
            if age is not None and age >= self.long_query_seconds:
                self._once(findings, ("long_query", s.pid, s.backend_start, s.query_start), AlertKind.LONG_QUERY,
                           f"pid {s.pid} ({s.user}) has been running one statement for {readable.duration(age)} "
                           f"(limit {readable.duration(self.long_query_seconds)}): `{query_line(s.query)}`", s.pid)
            if s.waiting_on_lock and s.blockers:
                self._once(findings, ("lock_wait", s.pid, s.backend_start, s.query_start, s.lock_type, s.lock_mode,
                                      s.lock_target), AlertKind.LOCK_WAIT,
                           f"pid {s.pid} ({s.user}) is waiting for {s.waited_lock}, held by "
                           f"{_blockers(s, by_pid)}. Its statement: `{query_line(s.query)}`", s.pid)
            since = stuck_since(s)
            if since is not None and (s.server_now - since).total_seconds() >= self.hung_seconds:
                self._once(findings, ("hung", s.pid, s.backend_start, s.xact_start, since), AlertKind.HUNG,
                           _hung_text(s, since, by_pid, sessions), s.pid)
        busy = [s for s in sessions if s.state not in (None, "idle") and s.running_since is not None]
        self.migration = min(busy, key=lambda s: s.running_since, default=None)
        return findings

    def fate(self, sessions: list[Session]) -> str:
        """After a lost connection: is the migration's backend (seen before the loss) still there?"""
        m = self.migration
        if m is None:
            return ("none was seen before the loss (no busy session) — check the database state "
                    "(runbook: if a simple query fails, full rollback)")
        now = next((s for s in sessions if s.pid == m.pid and s.backend_start == m.backend_start), None)
        if now is None:
            return (f"pid {m.pid} (`{query_line(m.query)}`) is gone — check the database state "
                    "(runbook: if a simple query fails, full rollback)")
        if now.state == "idle":
            return (f"pid {m.pid} is still connected but idle: its work ended — check the database state "
                    "(runbook: if a simple query works, the migration may have succeeded)")
        return f"still running (pid {m.pid}, {doing(now)}) — let it continue"

    def _once(self, findings: list[WatchFinding], key: tuple, kind: AlertKind, text: str, pid: int | None) -> None:
        if key not in self._alerted:
            self._alerted.add(key)
            findings.append(WatchFinding(kind, text, pid))


def stuck_since(s: Session) -> datetime | None:
    """Since when the session has made no progress, or None if it is not stuck."""
    if s.waiting_on_lock:
        return s.wait_start or s.server_now  # waitstart is NULL for an instant after the wait begins
    if s.idle_in_transaction and s.held:
        return s.state_change
    return None


def _blockers(s: Session, by_pid: dict[int, Session]) -> str:
    parts = []
    for pid in s.blockers:
        blocker = by_pid.get(pid)
        parts.append(f"pid {pid} ({blocker.user}, {doing(blocker)})" if blocker
                     else f"pid {pid} (not a session of this database)")
    return "; ".join(parts)


def _held(s: Session, limit: int = 3) -> str:
    shown = ", ".join(s.held[:limit])
    return shown + (f" and {len(s.held) - limit} more" if len(s.held) > limit else "")


def _hung_text(s: Session, since: datetime, by_pid: dict[int, Session], sessions: list[Session]) -> str:
    stuck = readable.duration((s.server_now - since).total_seconds())
    waits_for = "check what it waits for"
    if s.waiting_on_lock:
        what = (f"waiting since {utc(since)} for {s.waited_lock}, held by {_blockers(s, by_pid)}. "
                f"Its statement: `{query_line(s.query)}`")
    else:
        blocked = [w.pid for w in sessions if s.pid in w.blockers]
        blocking = f", blocking pid {', '.join(map(str, blocked))}" if blocked else ""
        what = (f"{s.state} since {utc(since)} while holding {_held(s)}{blocking}. "
                f"Last statement: `{query_line(s.query)}`")
        waits_for = f"check what it waits for — its client, silent since {utc(since)}"
    return (f"pid {s.pid} ({s.user}) has made no progress for {stuck}: {what}. Runbook Contingency 1: {waits_for}; "
            f"if it is truly stuck, terminate it (`SELECT pg_terminate_backend({s.pid})`) and roll back.")
