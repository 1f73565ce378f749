"""Plain records read from the store: incidents, runs, steps, approvals, audit events."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Self


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class IncidentStatus(StrEnum):
    OPEN = "open"  # being handled: updates are posted
    RESOLVED = "resolved"  # service restored: post-incident checklist and sign-offs pending
    CLOSED = "closed"  # every required sign-off is in


class AlertStatus(StrEnum):
    """The runbook's Part 9 status line."""

    INVESTIGATING = "INVESTIGATING"
    ROLLING_BACK = "ROLLING BACK"
    RESOLVED = "RESOLVED"


class RunState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DENIED = "denied"
    INTERRUPTED = "interrupted"  # the bot stopped while it ran; the next start ended it and said where it stood

    @property
    def active(self) -> bool:
        return self is RunState.RUNNING

    @property
    def failed(self) -> bool:
        """It ended without doing what it was for, and not because somebody said no."""
        return self in (RunState.FAILED, RunState.INTERRUPTED)


class StepState(StrEnum):
    PENDING = "pending"
    WAITING = "waiting for approval"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    VOID = "void"  # the run ended before anybody decided
    EXPIRED = "expired"  # nobody decided within approval_ttl_seconds of the run waiting for it
    SUPERSEDED = "superseded"  # approved, but the plan changed before it ran: a new approval was asked


class Role(StrEnum):
    OPERATOR = "operator"
    APPROVER = "approver"
    # Sign-off roles (runbook "Approval & Sign-Off"), mapped to people in `[bot.signoffs]`.
    DBA = "dba"
    LEAD_DEV = "lead_dev"
    MANAGER = "manager"


@dataclass(frozen=True)
class Actor:
    """Who is acting, with the roles the bot resolved for them (from user or usergroup ids)."""

    user_id: str
    roles: frozenset[Role] = frozenset()

    def has(self, role: Role) -> bool:
        return role in self.roles

    @property
    def responder(self) -> bool:
        """Operators and approvers run the incident: declare, assess, escalate, resolve."""
        return bool(self.roles & {Role.OPERATOR, Role.APPROVER})


class _Row:
    """Build a frozen record from a SQLite row dict, decoding JSON and time columns."""

    _json: tuple[str, ...] = ()
    _times: tuple[str, ...] = ()
    _types: dict[str, type] = {}  # enum (and bool) columns, converted back from their text

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Self:
        values = {}
        for f in fields(cls):  # type: ignore[arg-type]
            value = row.get(f.name)
            if f.name in cls._json:
                value = json.loads(value) if value else {}
            elif f.name in cls._times:
                value = parse_time(value)
            elif f.name in cls._types and value is not None:
                value = cls._types[f.name](value)
            values[f.name] = value
        return cls(**values)


@dataclass(frozen=True)
class Incident(_Row):
    id: str
    environment: str
    status: IncidentStatus
    alert_status: AlertStatus
    declared_by: str
    declared_at: datetime
    channel: str
    alert_ts: str | None = None
    resolved_at: datetime | None = None
    level: int = 1  # runbook Part 2: 1 detection, 2 partial failure, 3 critical
    severity: str | None = None  # the decision tree's answer: critical / minor / unsure
    summary: str | None = None
    closed_at: datetime | None = None
    root_cause: str | None = None
    what_failed: str | None = None
    prevention: str | None = None
    _times = ("declared_at", "resolved_at", "closed_at")
    _types = {"status": IncidentStatus, "alert_status": AlertStatus}


@dataclass(frozen=True)
class Run(_Row):
    id: str
    incident_id: str
    environment: str
    plan: str
    requested_by: str
    state: RunState
    started_at: datetime
    ended_at: datetime | None = None
    current_step: str | None = None
    outcome: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    _json = ("facts",)
    _times = ("started_at", "ended_at")
    _types = {"state": RunState}


@dataclass(frozen=True)
class StepRecord(_Row):
    run_id: str
    key: str
    position: int
    title: str
    destructive: bool
    state: StepState
    started_at: datetime | None = None
    ended_at: datetime | None = None
    detail: str | None = None
    _times = ("started_at", "ended_at")
    _types = {"state": StepState, "destructive": bool}

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class Approval(_Row):
    id: str
    run_id: str
    incident_id: str
    environment: str
    step_keys: str  # comma-separated keys of the steps this approval opens
    preview: dict[str, Any]
    state: ApprovalState
    requested_by: str
    requested_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    channel: str | None = None
    message_ts: str | None = None
    binding: str | None = None  # actions/gate.py: what exactly this approval may open
    expires_at: datetime | None = None  # set when the run starts waiting for the decision
    _json = ("preview",)
    _times = ("requested_at", "decided_at", "expires_at")
    _types = {"state": ApprovalState}


class DeliveryState(StrEnum):
    PENDING = "pending"  # queued, or being tried (also after a restart: it is tried again)
    SENT = "sent"  # the pager or the mail server took it; never sent again
    FAILED = "failed"  # refused, or not reached after every try: shown in the thread and in /rollback status


@dataclass(frozen=True)
class Delivery(_Row):
    """A page or a mail of an incident, kept until it is delivered or given up (`actions/outreach/`)."""

    seq: int
    key: str  # unique: one delivery per incident and purpose (a second enqueue of the same key is ignored)
    incident_id: str
    transport: str  # "pagerduty" or "email"
    kind: str  # trigger / resolve; alert / raised / update / resolved / report
    payload: dict[str, Any]  # what is sent, without secrets (the routing key and the login are added when sending)
    state: DeliveryState
    created_at: datetime
    attempts: int = 0
    last_error: str | None = None
    done_at: datetime | None = None
    _json = ("payload",)
    _times = ("created_at", "done_at")
    _types = {"state": DeliveryState}


class PreparedState(StrEnum):
    PREPARING = "preparing"  # backup, restore and verification under way: never used as it is
    READY = "ready"  # verified against the backup's manifest and closed to connections; `proof` recorded
    USED = "used"  # swapped in by a full rollback: it is live now
    REPLACED = "replaced"  # a newer prepared copy was verified; this one was dropped
    REMOVED = "removed"  # dropped by /rollback unprepare (or cleaned up)
    FAILED = "failed"  # the prepare failed or was interrupted; its copy was dropped or is a leftover


@dataclass(frozen=True)
class PreparedCopy(_Row):
    """A rollback prepared before a migration (`/rollback prepare`): a verified copy of a fresh backup,
    closed to connections, that a full rollback can swap in without restoring."""

    id: str
    environment: str
    database: str  # <db>__prepared_<id>
    state: PreparedState
    requested_by: str
    started_at: datetime
    backup_path: str | None = None
    backup_sha256: str | None = None
    backup_created: datetime | None = None
    backup_size: int | None = None
    backup_seconds: float | None = None
    restore_seconds: float | None = None
    size: int | None = None  # the copy's size on the server
    ready_at: datetime | None = None
    ended_at: datetime | None = None
    proof: dict[str, Any] = field(default_factory=dict)  # pg_database's oid and row version when it was closed
    row_counts: dict[str, Any] = field(default_factory=dict)
    note: str | None = None  # why it failed, was replaced or removed
    _json = ("proof", "row_counts")
    _times = ("started_at", "backup_created", "ready_at", "ended_at")
    _types = {"state": PreparedState}


@dataclass(frozen=True)
class AuditEvent(_Row):
    seq: int
    at: datetime
    actor: str
    action: str
    outcome: str
    environment: str | None = None
    incident_id: str | None = None
    run_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    _json = ("detail",)
    _times = ("at",)
