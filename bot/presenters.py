"""Records from `actions/` turned into the view models `messages/` builds from."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from actions.config import Settings
from actions.plan import ApprovalPreview, Outcome
from actions.records import AlertStatus, Approval, Incident, Run, StepRecord, StepState
from messages.views import AlertView, ApprovalView, ResolvedView, RunEndView, StepView

ACTIONS = {
    AlertStatus.INVESTIGATING: "We are assessing the situation; no rollback is running",
    AlertStatus.ROLLING_BACK: "We are executing rollback procedures",
    AlertStatus.RESOLVED: "Rollback completed",
}


def alert_view(incident: Incident, app_stopped: bool) -> AlertView:
    status = AlertStatus(incident.alert_status)
    if status is AlertStatus.RESOLVED:
        impact, eta = "WORKING", f"recovered at {incident.resolved_at:%H:%M:%S} UTC"
    else:
        impact = "OFFLINE" if app_stopped else "DEGRADED"
        eta = ("after the approval, the restore and the checks; progress in this thread"
               if status is AlertStatus.ROLLING_BACK else "not set: no rollback is running")
    return AlertView(
        incident_id=incident.id, environment=incident.environment, declared_at=incident.declared_at,
        status=status.value, impact=impact, action=ACTIONS[status], eta=eta,
        progress_note=f"Progress is posted in this thread as each step ends. Incident {incident.id}.")


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


def run_end_view(incident: Incident, run: Run, steps: tuple[StepRecord, ...], outcome: Outcome,
                 plan_title: str) -> RunEndView:
    failed = next((s.title for s in steps if s.state is StepState.FAILED), None)
    seconds = (run.ended_at - run.started_at).total_seconds() if run.ended_at else None
    skipped = tuple(s.title for s in steps if s.state is StepState.SKIPPED)
    return RunEndView(
        incident_id=incident.id, environment=run.environment, plan_title=plan_title, state=run.state.value,
        reason=run.outcome or "", failed_step=failed, live_state=outcome.live_state,
        next_steps=outcome.next_steps, seconds=seconds, skipped=skipped)


def resolved_view(incident: Incident, run: Run, steps: list[StepRecord], settings: Settings) -> ResolvedView:
    env = settings.environments[run.environment]
    facts = run.facts
    app_lines = []
    if env.start:
        app_lines.append("Application restarted" + (" and healthy" if env.health_url else " (no health check configured)"))
    else:
        app_lines.append("No application start command is configured: start the application yourself")
    if env.smoke:
        app_lines.append(f"Verified working: {len(env.smoke)} smoke check(s) passed")
    backup = Path(facts.get("backup_path", "?"))
    return ResolvedView(
        incident_id=incident.id, environment=run.environment,
        completed_at=incident.resolved_at or datetime.now().astimezone(),
        restored_from=f"backup {backup.parent.name}/{backup.name}",
        app_lines=tuple(app_lines), kept_as=facts.get("keep_as", "?"),
        backup_taken_at=datetime.fromisoformat(facts["backup_created"]) if facts.get("backup_created") else incident.declared_at)
