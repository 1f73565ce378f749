"""The small view models the builders take. `bot/` fills them from the runner's records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class AlertView:
    """The runbook's INCIDENT ALERT (Part 9)."""

    incident_id: str
    environment: str
    declared_at: datetime
    status: str  # INVESTIGATING / ROLLING BACK / RESOLVED
    impact: str  # OFFLINE / DEGRADED / WORKING
    action: str
    eta: str
    progress_note: str
    level: int = 1
    level_name: str = "Issue detection"
    summary: str | None = None
    can_escalate: bool = False
    can_resolve: bool = False
    closed_at: datetime | None = None


@dataclass(frozen=True)
class StepView:
    title: str
    state: str  # a StepState value
    seconds: float | None = None
    detail: str | None = None


@dataclass(frozen=True)
class ApprovalView:
    approval_id: str
    incident_id: str
    title: str
    requested_by: str
    actions: tuple[str, ...]
    facts: tuple[tuple[str, str], ...]
    confirm: str
    approvers: tuple[str, ...]
    two_person_rule: bool
    state: str = "pending"  # an ApprovalState value
    decided_by: str | None = None
    decided_at: datetime | None = None


@dataclass(frozen=True)
class RunEndView:
    incident_id: str
    environment: str
    plan_title: str
    state: str  # succeeded / failed / denied
    reason: str
    failed_step: str | None
    live_state: str
    next_steps: str
    seconds: float | None
    skipped: tuple[str, ...] = ()
    run_id: str = ""
    interrupted: bool = False  # the bot stopped mid-run: offer to start again or to clean up
    retry_app: bool = False  # the swap is done, the application is not back: offer to retry its start


@dataclass(frozen=True)
class ResolvedView:
    """The runbook's INCIDENT RESOLVED (Part 9), with statements that are true of this run."""

    incident_id: str
    environment: str
    completed_at: datetime
    restored_from: str
    app_lines: tuple[str, ...]
    kept_as: str
    backup_taken_at: datetime
    writes_line: str | None = None  # rows written after the backup, once counted


@dataclass(frozen=True)
class StatusLine:
    incident_id: str
    environment: str
    alert_status: str
    declared_at: datetime
    run_id: str | None = None
    run_state: str | None = None
    current_step: str | None = None
    requested_by: str | None = None


@dataclass(frozen=True)
class UpdateView:
    """The five-minute status update (runbook Part 9: "Updates will be posted every 5 minutes")."""

    incident_id: str
    environment: str
    status: str
    level: int
    impact: str
    at: datetime
    elapsed_seconds: float
    current_step: str | None
    step_seconds: float | None
    waiting_for_approval: bool
    progress_done: int | None
    progress_total: int | None
    eta_at: datetime | None
    upcoming: tuple[str, ...]
    decision: str | None
    next_update_seconds: float


@dataclass(frozen=True)
class ChecklistView:
    incident_id: str
    groups: tuple[tuple[str, str, tuple[tuple[str, str, bool, str | None], ...]], ...]  # key, title, items


@dataclass(frozen=True)
class SignoffView:
    incident_id: str
    roles: tuple[tuple[str, str, bool, str | None, datetime | None], ...]  # key, title, required, by, at
    closed_at: datetime | None
