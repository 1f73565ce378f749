"""`/rollback watch <env> [minutes]`: watch a database for a bounded time and raise alerts.

The watcher polls the environment's database every `watch_poll_seconds` (one query, see
`actions/watch_poll.py`) and emits events: `WatchStarted`, a `WatchAlert` per new occurrence
(`actions/watch_rules.py` decides), and `WatchEnded` with its figures when the time is up, when
`stop()` is called, or when it fails. A poll never takes longer than `poll_limit_seconds`
(default: the connect timeout plus the statement timeout plus a second): a poll that does not
answer in time is abandoned (psycopg cancels it in the background) and counts as a lost
connection (runbook Contingency 2). Every text passes the redactor built from the environment's
DSN, so a password never reaches an event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

import readable
from actions.config import Environment
from actions.redact import Redactor, dsn_secrets
from actions.results import new_error_id
from actions.watch.poll import (
    CONNECT_TIMEOUT_SECONDS,
    STATEMENT_TIMEOUT_MS,
    Session,
    fetch_sessions,
    watch_connection,
)
from actions.watch.rules import AlertKind, Rules, query_line, utc

log = logging.getLogger(__name__)

DEFAULT_POLL_LIMIT_SECONDS = CONNECT_TIMEOUT_SECONDS + STATEMENT_TIMEOUT_MS / 1000 + 1
CONNECTION_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, OSError, TimeoutError)

__all__ = ["AlertKind", "WatchAlert", "WatchEnded", "WatchStarted", "WatchSummary", "Watcher"]


@dataclass(frozen=True)
class WatchStarted:
    environment: str
    target: str  # host:port/dbname, never the DSN
    minutes: float
    started_by: str  # Slack user id
    poll_seconds: float
    long_query_seconds: float
    hung_minutes: float


@dataclass(frozen=True)
class WatchAlert:
    environment: str
    kind: AlertKind  # long_query / lock_wait / hung / connection_lost / connection_back
    text: str  # one paragraph with its figures (mrkdwn-safe apart from &, <, >)
    pid: int | None = None  # the session it is about


@dataclass(frozen=True)
class WatchSummary:
    seconds: float  # how long the watch ran
    polls: int  # polls made, answered or not
    failed_polls: int
    alerts: int
    alerts_by_kind: tuple[tuple[str, int], ...]  # (kind, count), in AlertKind order, zero counts left out
    longest_query_seconds: float | None = None  # the longest-running statement any poll saw
    longest_query_pid: int | None = None
    longest_query: str | None = None  # its first line, trimmed


@dataclass(frozen=True)
class WatchEnded:
    environment: str
    reason: str
    summary: WatchSummary


WatchEvent = WatchStarted | WatchAlert | WatchEnded
WatchEmit = Callable[[WatchEvent], None]


class Watcher:
    """Watches one environment's database for `minutes`; `start()`, then `wait()` or `stop()`."""

    def __init__(self, env: Environment, emit: WatchEmit, *, minutes: float, started_by: str,
                 clock: Callable[[], float] = time.monotonic,
                 poll_limit_seconds: float = DEFAULT_POLL_LIMIT_SECONDS):
        if minutes <= 0:
            raise ValueError(f"expected a positive number of minutes, got {minutes}")
        if poll_limit_seconds <= 0:
            raise ValueError(f"expected a positive poll limit, got {poll_limit_seconds} s")
        self.env = env
        self.minutes = minutes
        self.started_by = started_by
        self.poll_limit_seconds = poll_limit_seconds
        self._emit_to = emit
        self._clock = clock
        self._redact = Redactor(dsn_secrets(env.resolved_dsn.get_secret_value()))
        self._rules = Rules(env.long_query_seconds, env.hung_minutes)
        self._stopping = asyncio.Event()
        self._stop_reason: str | None = None
        self._task: asyncio.Task[WatchEnded] | None = None
        self._conn: psycopg.AsyncConnection | None = None
        self._abandoned: set[asyncio.Task] = set()
        self._lost_at: float | None = None
        self.polls = 0
        self.failed_polls = 0
        self.alerts: list[AlertKind] = []

    def start(self) -> Watcher:
        """Launch the watch as a task of the running loop; returns self."""
        if self._task is not None:
            raise RuntimeError(f"the watch of {self.env.name} was already started")
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"watch-{self.env.name}")
        return self

    def stop(self, reason: str = "stopped") -> None:
        """End the watch early (idempotent); `WatchEnded` carries the first reason given."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._stopping.set()

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def wait(self) -> WatchEnded:
        """Wait until the watch has ended; returns the `WatchEnded` it emitted."""
        if self._task is None:
            raise RuntimeError(f"the watch of {self.env.name} was not started")
        return await asyncio.shield(self._task)

    async def _run(self) -> WatchEnded:
        started = self._clock()
        deadline = started + self.minutes * 60
        self._emit(WatchStarted(self.env.name, self.env.target, self.minutes, self.started_by,
                                self.env.watch_poll_seconds, self.env.long_query_seconds, self.env.hung_minutes))
        reason = f"its {self.minutes:g} min are up"
        try:
            while self._stop_reason is None and self._clock() < deadline:
                poll_started = self._clock()
                await self._poll(poll_started, deadline)
                pause = min(poll_started + self.env.watch_poll_seconds, deadline) - self._clock()
                if pause > 0 and self._stop_reason is None:
                    try:
                        await asyncio.wait_for(self._stopping.wait(), pause)
                    except TimeoutError:
                        pass  # time for the next poll
            reason = self._stop_reason or reason
        except asyncio.CancelledError:
            reason = "the bot is shutting down"
            self._emit(self._ended(reason, started))
            raise
        except Exception as exc:
            error_id = new_error_id()
            log.exception("the watch of %s failed [%s]", self.env.name, error_id)
            reason = f"the watcher failed: {readable.first_line(str(exc) or type(exc).__name__, 200)} (error {error_id})"
        finally:
            await self._close()
        ended = self._ended(reason, started)
        self._emit(ended)
        return ended

    async def _poll(self, poll_started: float, deadline: float) -> None:
        """One poll, bounded in time; its answer or its failure is turned into alerts."""
        self.polls += 1
        remaining = deadline - poll_started
        limit = min(self.poll_limit_seconds, remaining)
        attempt = asyncio.create_task(self._attempt())
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait({attempt, stopping}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._abandon(attempt)
            raise
        finally:
            stopping.cancel()
        if attempt not in done:
            self._abandon(attempt)
            if self._stop_reason is None and remaining > self.poll_limit_seconds:
                self._failed(f"no answer within {readable.duration(limit)}", poll_started)
            return
        error = attempt.exception()
        if error is None:
            self._answered(attempt.result())
        elif isinstance(error, CONNECTION_ERRORS):
            self._failed(readable.first_line(str(error) or type(error).__name__, 300), poll_started)
        else:
            raise error

    async def _attempt(self) -> list[Session]:
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._conn = await watch_connection(self.env)
        try:
            return await fetch_sessions(conn)
        except BaseException:
            if self._conn is conn:
                self._conn = None
            await _close_quietly(conn)  # its state is unknown: the next poll connects afresh
            raise

    def _abandon(self, attempt: asyncio.Task) -> None:
        """Let a poll that ran out of time end in the background (psycopg cancels its query)."""
        self._conn = None
        attempt.cancel()
        self._abandoned.add(attempt)
        attempt.add_done_callback(self._abandoned.discard)
        attempt.add_done_callback(lambda task: task.cancelled() or task.exception())

    def _failed(self, error: str, at: float) -> None:
        self.failed_polls += 1
        if self._lost_at is not None:
            return  # the same loss: alerted once
        self._lost_at = at
        m = self._rules.migration
        before = (f" Before the loss the migration's backend looked like pid {m.pid} ({m.user}), busy since "
                  f"{utc(m.running_since)}: `{query_line(m.query)}`." if m else
                  " No busy session was seen before the loss.")
        self._alert(AlertKind.CONNECTION_LOST,
                    f"Cannot reach {self.env.target}: {error}.{before} Still trying every "
                    f"{readable.duration(self.env.watch_poll_seconds)}.", m.pid if m else None)

    def _answered(self, sessions: list[Session]) -> None:
        if self._lost_at is not None:
            after = readable.duration(max(0.0, self._clock() - self._lost_at))
            m = self._rules.migration
            self._alert(AlertKind.CONNECTION_BACK,
                        f"{self.env.target} answers again after {after}. The migration's backend: "
                        f"{self._rules.fate(sessions)}.", m.pid if m else None)
            self._lost_at = None
        for finding in self._rules.examine(sessions):
            self._alert(finding.kind, finding.text, finding.pid)

    def _alert(self, kind: AlertKind, text: str, pid: int | None) -> None:
        self.alerts.append(kind)
        self._emit(WatchAlert(self.env.name, kind, self._redact(text), pid))

    def _ended(self, reason: str, started: float) -> WatchEnded:
        longest = self._rules.longest
        by_kind = tuple((kind.value, self.alerts.count(kind)) for kind in AlertKind if kind in self.alerts)
        summary = WatchSummary(
            seconds=max(0.0, self._clock() - started), polls=self.polls, failed_polls=self.failed_polls,
            alerts=len(self.alerts), alerts_by_kind=by_kind,
            longest_query_seconds=longest.seconds if longest else None,
            longest_query_pid=longest.pid if longest else None,
            longest_query=self._redact(longest.query) if longest else None)
        return WatchEnded(self.env.name, self._redact(reason), summary)

    def _emit(self, event: WatchEvent) -> None:
        try:
            self._emit_to(event)
        except Exception:  # the callback must not stop the watch; the failure is logged, not hidden
            log.exception("could not hand %s of the watch of %s to the bot", type(event).__name__, self.env.name)

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close_quietly(conn)
        # Polls still cancelling their query on an unreachable server: a second cancellation makes
        # psycopg drop the connection at once, so nothing outlives the watch for long.
        for _ in range(20):  # a cancellation requested but not yet delivered does not count twice: repeat
            if not self._abandoned:
                break
            for attempt in list(self._abandoned):
                attempt.cancel()
            await asyncio.wait(list(self._abandoned), timeout=0.05)


async def _close_quietly(conn: psycopg.AsyncConnection) -> None:
    try:
        await conn.close()
    except (psycopg.Error, OSError) as exc:  # closing a broken connection may fail; nothing is left to release
        log.debug("closing the watch connection failed: %s", exc)
