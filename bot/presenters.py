"""Records and states from `actions/` turned into the view models `messages/` builds from.

Nothing here decides anything about the domain: whether a run swapped, was interrupted or may
retry the application comes decided from the service (`RunStatus`, `IncidentState`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import readable
from actions.config import SIGNOFF_ROLES, Settings
from actions.status import (
    ApprovalPreview,
    ChecklistGroupState,
    IncidentState,
    PreparedRow,
    ProgressView,
    RunOutcome,
    RunStatus,
    Snapshot,
    Undelivered,
)
from actions.store.records import (
    AlertStatus,
    Approval,
    Delivery,
    DeliveryState,
    Incident,
    IncidentStatus,
    PreparedCopy,
    StepRecord,
    StepState,
    parse_time,
    utcnow,
)
from messages.outreach import MAIL_WHAT, DeliveryView, PageView
from messages.prepared import PrepareView
from messages.views import (
    AlertView,
    ApprovalView,
    ChecklistView,
    ResolvedView,
    RunEndView,
    SignoffView,
    StepView,
    UpdateView,
)

ACTIONS = {
    AlertStatus.INVESTIGATING: "We are assessing the situation; no rollback is running",
    AlertStatus.ROLLING_BACK: "We are executing rollback procedures",
    AlertStatus.RESOLVED: "Rollback completed",
}


DECISIONS = {
    "critical": "Assessed CRITICAL: immediate full rollback proposed",
    "minor": "Assessed MINOR: continuing and fixing forward",
    "unsure": "Paused: waiting for a DBA to assess",
}


def alert_view(state: IncidentState, *, progress: ProgressView | None = None) -> AlertView:
    incident, app_stopped, running, rolled_back = state.incident, state.app_stopped, state.running, state.rolled_back
    status = AlertStatus(incident.alert_status)
    if status is AlertStatus.RESOLVED:
        impact, eta = "WORKING", f"recovered at {incident.resolved_at:%H:%M:%S} UTC"
        action = ACTIONS[status] if rolled_back else "Resolved without a rollback"
    else:
        impact = "OFFLINE" if app_stopped else "DEGRADED"
        action = ACTIONS[status] if status is AlertStatus.ROLLING_BACK else DECISIONS.get(incident.severity, ACTIONS[status])
        eta = ("after the approval, the restore and the checks; progress in this thread"
               if status is AlertStatus.ROLLING_BACK else "not set: no rollback is running")
        if progress and progress.remaining_seconds is not None:
            eta = f"restore done around {utcnow() + timedelta(seconds=progress.remaining_seconds):%H:%M:%S} UTC, then the swap"
    is_open = incident.status is IncidentStatus.OPEN
    return AlertView(
        incident_id=incident.id, environment=incident.environment, declared_at=incident.declared_at,
        status=status.value, impact=impact, action=action, eta=eta,
        progress_note=f"Progress is posted in this thread as each step ends. Incident {incident.id}.",
        level=incident.level, level_name=state.level_name, summary=incident.summary,
        can_escalate=is_open and incident.level < 3, can_resolve=is_open and not running,
        closed_at=incident.closed_at)


def step_view(step: StepRecord) -> StepView:
    return StepView(step.title, StepState(step.state).value, step.seconds, step.detail)


def approval_view(approval: Approval, settings: Settings) -> ApprovalView:
    preview = ApprovalPreview.from_dict(approval.preview)
    return ApprovalView(
        approval_id=approval.id, incident_id=approval.incident_id, title=preview.title,
        requested_by=approval.requested_by, actions=preview.actions, facts=preview.facts,
        confirm=preview.confirm, approvers=tuple(settings.bot.approvers),
        two_person_rule=settings.bot.two_person_rule, state=approval.state.value,
        decided_by=approval.decided_by, decided_at=approval.decided_at)


def run_end_view(incident: Incident, steps: tuple[StepRecord, ...], outcome: RunOutcome, plan_title: str,
                 status: RunStatus) -> RunEndView:
    run = status.run
    failed = next((s.title for s in steps if s.state is StepState.FAILED), None)
    seconds = (run.ended_at - run.started_at).total_seconds() if run.ended_at else None
    skipped = tuple(s.title for s in steps if s.state is StepState.SKIPPED)
    return RunEndView(
        incident_id=incident.id, environment=run.environment, plan_title=plan_title, state=run.state.value,
        reason=run.outcome or "", failed_step=failed, live_state=outcome.live_state,
        next_steps=outcome.next_steps, seconds=seconds, skipped=skipped, run_id=run.id,
        interrupted=status.interrupted, retry_app=status.retry_app)


def resolved_view(incident: Incident, status: RunStatus, settings: Settings) -> ResolvedView:
    run = status.run
    env = settings.environments[run.environment]
    app_lines = []
    if env.start:
        app_lines.append("Application restarted" + (" and healthy" if env.health_url else " (no health check configured)"))
    else:
        app_lines.append("No application start command is configured: start the application yourself")
    if env.smoke:
        app_lines.append(f"Verified working: {len(env.smoke)} smoke check(s) passed")
    backup = Path(status.backup.path) if status.backup else Path("?")
    return ResolvedView(
        incident_id=incident.id, environment=run.environment,
        completed_at=incident.resolved_at or datetime.now().astimezone(),
        restored_from=f"backup {backup.parent.name}/{backup.name}",
        app_lines=tuple(app_lines), kept_as=status.kept_as or "?",
        backup_taken_at=status.backup.created if status.backup else incident.declared_at,
        writes_line=status.writes_line)


def update_view(snapshot: Snapshot, settings: Settings) -> UpdateView:
    incident, progress = snapshot.incident, snapshot.progress
    eta = None
    if progress and progress.remaining_seconds is not None:
        eta = snapshot.at + timedelta(seconds=progress.remaining_seconds)
    waiting = bool(snapshot.current and snapshot.current.state is StepState.WAITING)
    return UpdateView(
        incident_id=incident.id, environment=incident.environment, status=incident.alert_status.value,
        level=incident.level, impact="OFFLINE" if snapshot.app_stopped else "DEGRADED", at=snapshot.at,
        elapsed_seconds=snapshot.elapsed_seconds, current_step=snapshot.current and snapshot.current.title,
        step_seconds=snapshot.step_seconds, waiting_for_approval=waiting,
        progress_done=progress and progress.done, progress_total=progress and progress.total, eta_at=eta,
        upcoming=snapshot.upcoming, decision=DECISIONS.get(incident.severity),
        next_update_seconds=settings.bot.update_interval_seconds)


def checklist_view(incident_id: str, groups: tuple[ChecklistGroupState, ...]) -> ChecklistView:
    return ChecklistView(incident_id, tuple(
        (group.key, group.title, tuple((item.key, item.text, item.checked, item.by) for item in group.items))
        for group in groups))


def signoff_view(incident: Incident, signoffs: dict[str, dict], settings: Settings) -> SignoffView:
    required = set(settings.bot.required_signoffs)
    return SignoffView(incident.id, tuple(
        (role, title, role in required, signoffs.get(role, {}).get("user"), parse_time(signoffs.get(role, {}).get("at")))
        for role, title in SIGNOFF_ROLES.items()), incident.closed_at if incident.status is IncidentStatus.CLOSED else None)


def page_view(state: IncidentState, snapshot: Snapshot, settings: Settings, requested_by: str, link: str) -> PageView:
    incident = state.incident
    env = settings.environments.get(incident.environment)
    database = env.target if env else incident.environment
    # A rollback that has just been asked for is under way before its first step says so on the alert.
    status = AlertStatus.ROLLING_BACK if state.running and incident.status is IncidentStatus.OPEN \
        else incident.alert_status
    return PageView(
        incident_id=incident.id, environment=incident.environment, level=incident.level,
        level_name=state.level_name, status=status.value, summary=incident.summary,
        source=database.split(":", 1)[0], database=database, requested_by=requested_by,
        current_step=snapshot.current and snapshot.current.title, link=link, at=utcnow())


def delivery_view(delivery: Delivery) -> DeliveryView:
    payload = delivery.payload
    return DeliveryView(
        incident_id=delivery.incident_id, transport=delivery.transport, kind=delivery.kind,
        sent=delivery.state is DeliveryState.SENT, severity=payload.get("payload", {}).get("severity"),
        recipients=tuple(payload.get("to", ())), error=delivery.last_error)


def undelivered_line(item: Undelivered) -> str:
    """A line of `/rollback status` for a page or a mail in trouble."""
    what = (f"PagerDuty {item.kind}" if item.transport == "pagerduty"
            else f"{MAIL_WHAT.get(item.kind, item.kind)} email")
    if item.given_up:
        todo = "page by hand" if item.transport == "pagerduty" else "email it by hand"
        return f"{item.incident_id}: {what} {item.reason}: {todo}"
    return f"{item.incident_id}: {what} still being tried ({item.attempts} tries so far; last: {item.reason})"


def prepare_view(copy: PreparedCopy, phase: str, detail: str, settings: Settings, *, percent: int | None = None,
                 replaced: tuple[str, ...] = ()) -> PrepareView:
    env = settings.environments.get(copy.environment)
    backup = "/".join(Path(copy.backup_path).parts[-2:]) if copy.backup_path else None
    return PrepareView(
        environment=copy.environment, target=env.target if env else copy.environment, database=copy.database,
        phase=phase, detail=detail, requested_by=copy.requested_by, started_at=copy.started_at, backup=backup,
        backup_seconds=copy.backup_seconds, restore_seconds=copy.restore_seconds, ready_at=copy.ready_at,
        percent=percent, replaced=replaced)


def prepared_line(row: PreparedRow) -> str:
    """A line of `/rollback status` for a prepared copy."""
    age = readable.duration((utcnow() - row.since).total_seconds())
    if row.state == "preparing":
        return f"`{row.environment}`: preparing `{row.database}` (for {age})"
    line = (f"`{row.environment}`: `{row.database}`, ready for {age}, backup {row.backup}, "
            f"{readable.size(row.size or 0)}")
    if row.stale:
        line += f" ⚠️ older than the migration window should be: `/rollback unprepare {row.environment}` removes it"
    return line
