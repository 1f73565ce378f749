"""One poll of `/rollback watch`: the target database's client sessions, their waits and locks.

One query per poll, on a connection that carries a short `statement_timeout` and `lock_timeout`
(set at connect time), so a slow or hung server costs one failed poll, never a stuck watcher.
The watcher's own sessions (this backend, and other watchers by `application_name`) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from actions.config import Environment
from actions.postgres import server as pg

APPLICATION_NAME = "rollback-bot watch"
CONNECT_TIMEOUT_SECONDS = 3  # libpq's minimum is 2
STATEMENT_TIMEOUT_MS = 3000
LOCK_TIMEOUT_MS = 1000

# Locks every transaction holds on itself: they block nobody's DDL, so they do not make an idle
# transaction "stuck while holding locks".
SELF_LOCK_TYPES = ("virtualxid", "transactionid")

POLL_SQL = """
WITH locks AS MATERIALIZED (
    SELECT l.pid, l.granted, l.locktype, l.mode, l.waitstart,
           CASE WHEN l.relation IS NOT NULL AND l.database IN (0, d.oid) THEN l.relation::regclass::text
                WHEN l.relation IS NOT NULL THEN 'relation ' || l.relation
                WHEN l.transactionid IS NOT NULL THEN 'transaction ' || l.transactionid
                WHEN l.virtualxid IS NOT NULL THEN 'virtual transaction ' || l.virtualxid
                WHEN l.locktype = 'advisory' THEN 'advisory lock ' || l.classid || '/' || l.objid
                ELSE l.locktype END AS target
      FROM pg_locks l, (SELECT oid FROM pg_database WHERE datname = current_database()) d
     WHERE l.pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())
)
SELECT a.pid, a.backend_start, a.xact_start, a.query_start, a.state_change, a.usename, a.state,
       a.wait_event_type, a.wait_event, left(a.query, 1000) AS query, now() AS server_now,
       w.locktype, w.mode, w.target, w.waitstart,
       CASE WHEN w.pid IS NOT NULL THEN pg_blocking_pids(a.pid) END AS blockers,
       ARRAY(SELECT h.mode || ' on ' || h.target FROM locks h
              WHERE h.pid = a.pid AND h.granted AND h.locktype <> ALL (%(self_lock_types)s)
              ORDER BY h.target, h.mode) AS held
  FROM pg_stat_activity a
  LEFT JOIN LATERAL (SELECT * FROM locks l WHERE l.pid = a.pid AND NOT l.granted LIMIT 1) w ON true
 WHERE a.datname = current_database() AND a.backend_type = 'client backend'
   AND a.pid <> pg_backend_pid() AND a.application_name IS DISTINCT FROM %(application_name)s
 ORDER BY a.pid
"""


@dataclass(frozen=True)
class Session:
    """One client backend of the watched database, as one poll saw it."""

    pid: int
    backend_start: datetime
    xact_start: datetime | None
    query_start: datetime | None
    state_change: datetime | None
    user: str | None
    state: str | None  # None when the watcher's role may not see other roles' sessions
    wait_event_type: str | None
    wait_event: str | None
    query: str
    server_now: datetime
    lock_type: str | None = None  # the lock it waits for, if any
    lock_mode: str | None = None
    lock_target: str | None = None
    wait_start: datetime | None = None
    blockers: tuple[int, ...] = ()
    held: tuple[str, ...] = ()  # "AccessExclusiveLock on public.sales", granted, not its own xid locks

    @property
    def waiting_on_lock(self) -> bool:
        return self.wait_event_type == "Lock" and self.lock_mode is not None

    @property
    def idle_in_transaction(self) -> bool:
        return (self.state or "").startswith("idle in transaction")

    @property
    def query_age(self) -> float | None:
        """Seconds the current statement has been running (active sessions only)."""
        if self.state != "active" or self.query_start is None:
            return None
        return max(0.0, (self.server_now - self.query_start).total_seconds())

    @property
    def running_since(self) -> datetime | None:
        """When its current work began: the transaction's start, else the statement's."""
        return self.xact_start or self.query_start

    @property
    def waited_lock(self) -> str:
        return f"{self.lock_mode} on {self.lock_target}"


async def watch_connection(env: Environment) -> psycopg.AsyncConnection:
    """A connection to the watched database with short time limits, named so watchers skip it."""
    return await pg.connect(env, timeout=CONNECT_TIMEOUT_SECONDS, name=APPLICATION_NAME,
                            statement_timeout_ms=STATEMENT_TIMEOUT_MS, lock_timeout_ms=LOCK_TIMEOUT_MS)


async def fetch_sessions(conn: psycopg.AsyncConnection) -> list[Session]:
    cursor = await conn.execute(POLL_SQL, {"self_lock_types": list(SELF_LOCK_TYPES),
                                           "application_name": APPLICATION_NAME})
    return [Session(pid, backend_start, xact_start, query_start, state_change, user, state, wait_type, wait_event,
                    query or "", server_now, lock_type, lock_mode, lock_target, wait_start,
                    tuple(blockers or ()), tuple(held or ()))
            for (pid, backend_start, xact_start, query_start, state_change, user, state, wait_type, wait_event,
                 query, server_now, lock_type, lock_mode, lock_target, wait_start, blockers, held)
            in await cursor.fetchall()]
