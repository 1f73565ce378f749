"""Durable state in SQLite (through sqlite-utils): incidents, runs, steps, approvals, audit.

Every transition of a run is written here before it is announced, so a restarted bot can tell
what happened. The audit table is append-only: nothing in this module updates or deletes it.
`Store` is synchronous (the CLI uses it directly); `AsyncStore` runs the same calls on one worker
thread so the event loop never waits on the disk and all writes are serialised.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import sqlite_utils

from actions.store import audit_chain
from actions.store.deliveries import DELIVERY_SCHEMA, DeliveryStore
from actions.store.postincident import PostIncidentStore
from actions.store.prepared import PREPARED_SCHEMA, PreparedStore
from actions.store.records import (
    AlertStatus,
    Approval,
    ApprovalState,
    AuditEvent,
    Incident,
    IncidentStatus,
    Run,
    RunState,
    StepRecord,
    StepState,
    iso,
    utcnow,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY, environment TEXT NOT NULL, status TEXT NOT NULL, alert_status TEXT NOT NULL,
    declared_by TEXT NOT NULL, declared_at TEXT NOT NULL, channel TEXT NOT NULL,
    alert_ts TEXT, resolved_at TEXT
);
-- At most one open incident per environment: a new rollback joins it.
CREATE UNIQUE INDEX IF NOT EXISTS one_open_incident ON incidents(environment) WHERE status = 'open';
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, incident_id TEXT NOT NULL REFERENCES incidents(id), environment TEXT NOT NULL,
    plan TEXT NOT NULL, requested_by TEXT NOT NULL, state TEXT NOT NULL, started_at TEXT NOT NULL,
    ended_at TEXT, current_step TEXT, outcome TEXT, facts TEXT NOT NULL DEFAULT '{}'
);
-- At most one running rollback per environment, enforced by the database, not by a check.
CREATE UNIQUE INDEX IF NOT EXISTS one_active_run ON runs(environment) WHERE state = 'running';
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs(id), key TEXT NOT NULL, position INTEGER NOT NULL,
    title TEXT NOT NULL, destructive INTEGER NOT NULL, state TEXT NOT NULL,
    started_at TEXT, ended_at TEXT, detail TEXT, PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(id), incident_id TEXT NOT NULL,
    environment TEXT NOT NULL, step_keys TEXT NOT NULL, preview TEXT NOT NULL, state TEXT NOT NULL,
    requested_by TEXT NOT NULL, requested_at TEXT NOT NULL, decided_by TEXT, decided_at TEXT,
    channel TEXT, message_ts TEXT, binding TEXT, expires_at TEXT
);
CREATE TABLE IF NOT EXISTS checklist (
    incident_id TEXT NOT NULL REFERENCES incidents(id), item TEXT NOT NULL, checked INTEGER NOT NULL,
    by TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (incident_id, item)
);
CREATE TABLE IF NOT EXISTS signoffs (
    incident_id TEXT NOT NULL REFERENCES incidents(id), role TEXT NOT NULL, user TEXT NOT NULL,
    at TEXT NOT NULL, PRIMARY KEY (incident_id, role)
);
-- Messages the bot must find again (to update them) or must not send twice, per incident.
CREATE TABLE IF NOT EXISTS incident_messages (
    incident_id TEXT NOT NULL REFERENCES incidents(id), kind TEXT NOT NULL, channel TEXT,
    ts TEXT, PRIMARY KEY (incident_id, kind)
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    outcome TEXT NOT NULL, environment TEXT, incident_id TEXT, run_id TEXT, detail TEXT NOT NULL,
    prev_hash TEXT, hash TEXT  -- the hash chain (actions/audit_chain.py)
);
CREATE INDEX IF NOT EXISTS audit_by_incident ON audit(incident_id, seq);
CREATE TRIGGER IF NOT EXISTS audit_is_append_only_u BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_is_append_only_d BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""


# Columns added to `incidents` after its first version, with their SQL types and defaults.
APPROVAL_COLUMNS = {"binding": "TEXT", "expires_at": "TEXT"}
INCIDENT_COLUMNS = {
    "level": "INTEGER NOT NULL DEFAULT 1", "severity": "TEXT", "summary": "TEXT", "closed_at": "TEXT",
    "root_cause": "TEXT", "what_failed": "TEXT", "prevention": "TEXT",
}


class Busy(Exception):
    """Another rollback is already running for the environment."""

    def __init__(self, run: Run):
        super().__init__(f"{run.environment} already has a running rollback ({run.incident_id})")
        self.run = run


class Store(PostIncidentStore, DeliveryStore, PreparedStore):
    """Synchronous access to the state database."""

    def __init__(self, path: str | Path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: AsyncStore hands the connection to its single worker thread.
        conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self.db.enable_wal()
        self.db.execute("PRAGMA synchronous = FULL")  # a committed transition survives power loss
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.executescript(SCHEMA + DELIVERY_SCHEMA + PREPARED_SCHEMA)
        self._add_missing_columns()
        self._name_interrupted_runs()
        audit_chain.upgrade(self.db.conn)
        self.path = path

    def _add_missing_columns(self) -> None:
        """Bring a state database written by an older version up to date (columns only get added)."""
        incidents = self.db["incidents"]
        for name, kind in INCIDENT_COLUMNS.items():
            if name not in incidents.columns_dict:
                self.db.execute(f"ALTER TABLE incidents ADD COLUMN {name} {kind}")  # names from INCIDENT_COLUMNS
        for name, kind in APPROVAL_COLUMNS.items():
            if name not in self.db["approvals"].columns_dict:
                self.db.execute(f"ALTER TABLE approvals ADD COLUMN {name} {kind}")  # names from APPROVAL_COLUMNS

    def _name_interrupted_runs(self) -> None:
        """Older versions ended an interrupted run as failed, saying so only in its outcome text."""
        with self.db.conn:
            self.db.execute("UPDATE runs SET state = ? WHERE state = ? AND outcome LIKE 'interrupted:%'",
                            [RunState.INTERRUPTED.value, RunState.FAILED.value])

    def close(self) -> None:
        self.db.conn.close()

    def check_writable(self) -> None:
        """Raises unless a write could be made now: takes the write lock and gives it back."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("ROLLBACK")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock at once, so check-then-insert cannot interleave with
        # another process (the CLI) or another request.
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _one(self, sql: str, params: tuple | dict = ()) -> dict[str, Any] | None:
        return next(iter(self.db.query(sql, params)), None)

    # -- incidents and runs -------------------------------------------------------------------

    def open_run(self, *, environment: str, plan: str, requested_by: str, channel: str,
                 steps: list[tuple[str, str, bool]], level: int = 3,
                 facts: dict[str, Any] | None = None) -> tuple[Incident, Run, bool]:
        """Start a run, joining the environment's open incident or declaring a new one.

        Returns (incident, run, whether the incident is new). The incident's escalation level is
        raised to `level` (a full rollback is the runbook's answer to a critical failure).
        Raises Busy when a run is already active for the environment.
        """
        now = utcnow()
        with self._transaction():
            active = self._one("SELECT * FROM runs WHERE environment = ? AND state = ?",
                               (environment, RunState.RUNNING))
            if active:
                raise Busy(Run.from_row(active))
            incident_row = self._open_incident_row(environment)
            created = incident_row is None
            if created:
                incident_row = self._new_incident(environment, requested_by, channel, now, level=level)
            elif incident_row["level"] < level:
                self.db["incidents"].update(incident_row["id"], {"level": level})
            number = self._one("SELECT count(*) AS n FROM runs WHERE incident_id = ?", (incident_row["id"],))["n"] + 1
            run_id = f"{incident_row['id']}-R{number}"
            self.db["runs"].insert({
                "id": run_id, "incident_id": incident_row["id"], "environment": environment, "plan": plan,
                "requested_by": requested_by, "state": RunState.RUNNING, "started_at": iso(now),
                "facts": json.dumps(facts or {}, default=str),
            })
            self.db["steps"].insert_all(
                {"run_id": run_id, "key": key, "position": position, "title": title,
                 "destructive": int(destructive), "state": StepState.PENDING}
                for position, (key, title, destructive) in enumerate(steps, start=1))
        return self.incident(incident_row["id"]), self.run(run_id), created

    def declare_incident(self, *, environment: str, declared_by: str, channel: str, summary: str | None,
                         level: int = 1) -> tuple[Incident, bool]:
        """Open an incident without a run; (the open incident, False) if the environment has one."""
        with self._transaction():
            row = self._open_incident_row(environment)
            if row is not None:
                return Incident.from_row(row), False
            row = self._new_incident(environment, declared_by, channel, utcnow(), level=level, summary=summary)
        return self.incident(row["id"]), True

    def _open_incident_row(self, environment: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM incidents WHERE environment = ? AND status = ?",
                         (environment, IncidentStatus.OPEN))

    def _new_incident(self, environment: str, declared_by: str, channel: str, now, *, level: int,
                      summary: str | None = None) -> dict[str, Any]:
        day = now.strftime("%Y%m%d")
        count = self._one("SELECT count(*) AS n FROM incidents WHERE id LIKE ?", (f"INC-{day}-%",))["n"]
        row = {
            "id": f"INC-{day}-{count + 1:04d}", "environment": environment, "status": IncidentStatus.OPEN,
            "alert_status": AlertStatus.INVESTIGATING, "declared_by": declared_by, "declared_at": iso(now),
            "channel": channel, "level": level, "summary": summary,
        }
        self.db["incidents"].insert(row)
        return row

    def update_incident(self, incident_id: str, **values: Any) -> Incident:
        if values.get("status") == IncidentStatus.RESOLVED:
            values.setdefault("resolved_at", iso(utcnow()))
        if values.get("status") == IncidentStatus.CLOSED:
            values.setdefault("closed_at", iso(utcnow()))
        self.db["incidents"].update(incident_id, values)
        return self.incident(incident_id)

    def incident(self, incident_id: str) -> Incident | None:
        row = self._one("SELECT * FROM incidents WHERE id = ?", (incident_id,))
        return row and Incident.from_row(row)

    def open_incidents(self) -> list[Incident]:
        return self.incidents(IncidentStatus.OPEN)

    def incidents(self, status: IncidentStatus) -> list[Incident]:
        rows = self.db.query("SELECT * FROM incidents WHERE status = ? ORDER BY declared_at", (status,))
        return [Incident.from_row(row) for row in rows]

    def run(self, run_id: str) -> Run | None:
        row = self._one("SELECT * FROM runs WHERE id = ?", (run_id,))
        return row and Run.from_row(row)

    def runs(self, *, incident_id: str | None = None, active: bool = False) -> list[Run]:
        sql, params = "SELECT * FROM runs WHERE 1 = 1", []
        if incident_id:
            sql, params = sql + " AND incident_id = ?", params + [incident_id]
        if active:
            sql, params = sql + " AND state = ?", params + [RunState.RUNNING]
        return [Run.from_row(row) for row in self.db.query(sql + " ORDER BY started_at", params)]

    def overview(self) -> list[tuple[Incident, Run | None, str | None]]:
        """Open incidents and incidents with a running run: (incident, newest run, current step title)."""
        ids = [row["id"] for row in self.db.query(
            "SELECT id FROM incidents WHERE status = ? OR id IN (SELECT incident_id FROM runs WHERE state = ?) "
            "ORDER BY declared_at", (IncidentStatus.OPEN, RunState.RUNNING))]
        result = []
        for incident_id in ids:
            runs = self.runs(incident_id=incident_id)
            run = runs[-1] if runs else None
            title = None
            if run and run.current_step and run.state is RunState.RUNNING:
                step = self.step(run.id, run.current_step)
                title = step.title + (" (waiting for approval)" if step.state is StepState.WAITING else "")
            result.append((self.incident(incident_id), run, title))
        return result

    def merge_facts(self, run_id: str, facts: dict[str, Any]) -> None:
        with self._transaction():
            current = json.loads(self._one("SELECT facts FROM runs WHERE id = ?", (run_id,))["facts"])
            self.db["runs"].update(run_id, {"facts": json.dumps({**current, **facts}, default=str)})

    def end_run(self, run_id: str, state: RunState, outcome: str) -> Run:
        self.db["runs"].update(run_id, {"state": state, "outcome": outcome, "ended_at": iso(utcnow())})
        return self.run(run_id)

    # -- steps --------------------------------------------------------------------------------

    def set_step(self, run_id: str, key: str, state: StepState, detail: str | None = None) -> StepRecord:
        values: dict[str, Any] = {"state": state}
        if state in (StepState.RUNNING, StepState.WAITING):
            self.db["runs"].update(run_id, {"current_step": key})
        if state is StepState.RUNNING:
            values["started_at"] = iso(utcnow())
        elif state in (StepState.SUCCEEDED, StepState.FAILED, StepState.CANCELLED, StepState.SKIPPED):
            values["ended_at"] = iso(utcnow())
        if detail is not None:
            values["detail"] = detail
        self.db["steps"].update((run_id, key), values)
        return self.step(run_id, key)

    def step(self, run_id: str, key: str) -> StepRecord:
        return StepRecord.from_row(self._one("SELECT * FROM steps WHERE run_id = ? AND key = ?", (run_id, key)))

    def steps(self, run_id: str) -> list[StepRecord]:
        rows = self.db.query("SELECT * FROM steps WHERE run_id = ? ORDER BY position", (run_id,))
        return [StepRecord.from_row(row) for row in rows]

    # -- approvals ----------------------------------------------------------------------------

    def create_approval(self, *, approval_id: str, run: Run, step_keys: list[str],
                        preview: dict[str, Any], binding: str | None = None) -> Approval:
        self.db["approvals"].insert({
            "id": approval_id, "run_id": run.id, "incident_id": run.incident_id,
            "environment": run.environment, "step_keys": ",".join(step_keys),
            "preview": json.dumps(preview, default=str), "state": ApprovalState.PENDING,
            "requested_by": run.requested_by, "requested_at": iso(utcnow()), "binding": binding,
        })
        return self.approval(approval_id)

    def approval(self, approval_id: str) -> Approval | None:
        row = self._one("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        return row and Approval.from_row(row)

    def approvals_of(self, run_id: str) -> list[Approval]:
        rows = self.db.query("SELECT * FROM approvals WHERE run_id = ? ORDER BY requested_at, rowid", (run_id,))
        return [Approval.from_row(row) for row in rows]

    def pending_approval_count(self) -> int:
        return self._one("SELECT count(*) AS n FROM approvals WHERE state = ?", (ApprovalState.PENDING,))["n"]

    def pending_approvals(self, run_id: str) -> list[Approval]:
        rows = self.db.query("SELECT * FROM approvals WHERE run_id = ? AND state = ?", (run_id, ApprovalState.PENDING))
        return [Approval.from_row(row) for row in rows]

    def claim_approval(self, approval_id: str, state: ApprovalState, decided_by: str, *,
                       expected: ApprovalState = ApprovalState.PENDING) -> bool:
        """Record a decision if nobody decided first; True only for the one caller that won.

        A pending approval past its expiry can only become EXPIRED (or VOID): a click that
        arrives late loses, even if the runner has not yet noticed the time.
        """
        late = "" if state in (ApprovalState.EXPIRED, ApprovalState.VOID) else \
            " AND (expires_at IS NULL OR expires_at > ?)"
        now = iso(utcnow())
        cursor = self.db.execute(
            "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ? WHERE id = ? AND state = ?" + late,
            (state, decided_by, now, approval_id, expected, *((now,) if late else ())))
        return cursor.rowcount == 1

    def set_approval_expiry(self, approval_id: str, expires_at: str) -> None:
        self.db.execute("UPDATE approvals SET expires_at = ? WHERE id = ? AND expires_at IS NULL",
                        (expires_at, approval_id))

    def set_approval_message(self, approval_id: str, channel: str, ts: str) -> None:
        self.db["approvals"].update(approval_id, {"channel": channel, "message_ts": ts})

    # -- audit --------------------------------------------------------------------------------

    def audit(self, actor: str, action: str, *, outcome: str = "ok", environment: str | None = None,
              incident_id: str | None = None, run_id: str | None = None, **detail: Any) -> None:
        """Append one event to the audit trail, chained to the one before it."""
        audit_chain.append(self.db.conn, {
            "at": iso(utcnow()), "actor": actor, "action": action, "outcome": outcome,
            "environment": environment, "incident_id": incident_id, "run_id": run_id,
            "detail": json.dumps(detail, default=str, ensure_ascii=False),
        })

    def verify_audit(self) -> audit_chain.ChainCheck:
        return audit_chain.verify(self.db.conn)

    def audit_head(self) -> tuple[int, str] | None:
        row = audit_chain.head(self.db.conn)
        return tuple(row) if row else None

    def audit_events(self, incident_id: str | None = None) -> list[AuditEvent]:
        if incident_id:
            rows = self.db.query("SELECT * FROM audit WHERE incident_id = ? ORDER BY seq", (incident_id,))
        else:
            rows = self.db.query("SELECT * FROM audit ORDER BY seq")
        return [AuditEvent.from_row(row) for row in rows]


class AsyncStore:
    """The Store's methods as coroutines, executed one at a time on a dedicated thread."""

    def __init__(self, store: Store):
        self.sync = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")

    def __getattr__(self, name: str):
        method = getattr(self.sync, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, partial(method, *args, **kwargs))

        return call

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.sync.close()
