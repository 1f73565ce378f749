"""The incident report (runbook Step 10), filled from the store: real times, real steps, real actors.

It can be written at any point of an incident's life: by a rollback's last step, again after
somebody fills in root cause / what failed / prevention, on `/rollback report`, and a final time
when the sign-offs are in.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from actions.backups import human_size
from actions.config import SIGNOFF_ROLES, Settings
from actions.records import ApprovalState, AuditEvent, Incident, Run, RunState, StepRecord, utcnow
from actions.store import AsyncStore
from messages.report import report_markdown
from messages.views import ReportView, StepView

RESOLUTIONS = {
    "full": ("Full database rollback performed. The backup was restored into a separate database, verified "
             "against the backup's table of contents, and swapped in by renaming; the database that failed "
             "was kept under a new name."),
    None: "Resolved without a rollback.",
}


def _ended(steps: list[StepRecord], key: str):
    return next((s.ended_at for s in steps if s.key == key and s.state == "succeeded"), None)


def _approver(events: list[AuditEvent]) -> str | None:
    return next((e.actor for e in reversed(events) if e.action == ApprovalState.APPROVED.value), None)


def _backup_line(facts: dict) -> str:
    if not facts.get("backup_path"):
        return "none (no rollback got past preflight)"
    created = datetime.fromisoformat(facts["backup_created"])
    return f"{facts['backup_path']} (created {created:%Y-%m-%d %H:%M:%S} UTC, {human_size(facts['backup_size'])})"


def _audit_action(event: AuditEvent) -> str:
    """The action with the one detail that says what it was about (a step, a reason, an item)."""
    about = event.detail.get("step") or event.detail.get("reason") or event.detail.get("item") or event.detail.get("role")
    return f"{event.action} ({about})" if about else event.action


def _main_run(runs: list[Run]) -> Run | None:
    """The run the report is about: the successful one, else the latest."""
    return next((r for r in reversed(runs) if r.state is RunState.SUCCEEDED), runs[-1] if runs else None)


async def build_report(settings: Settings, store: AsyncStore, incident_id: str) -> ReportView:
    incident: Incident = await store.incident(incident_id)
    run = _main_run(await store.runs(incident_id=incident_id))
    steps = await store.steps(run.id) if run else []
    events = await store.audit_events(incident_id)
    signoffs = await store.signoffs(incident_id)
    audit_head = await store.audit_head()
    facts = run.facts if run else {}
    env = settings.environments.get(incident.environment)
    timeline = (
        ("Migration start", None),
        ("Migration issue detected", incident.declared_at),
        ("Rollback initiated", run.started_at if run else None),
        ("Restore completed", _ended(steps, "restore_aside")),
        ("Application restarted", _ended(steps, "start_app")),
        ("Incident resolved", incident.resolved_at),
        ("Incident closed", incident.closed_at),
    )
    return ReportView(
        incident_id=incident.id, environment=incident.environment, target=env.target if env else "?",
        level=f"{'CRITICAL' if incident.level >= 3 else 'MAJOR' if incident.level == 2 else 'MINOR'} (level {incident.level})",
        status={"open": "OPEN", "resolved": "ROLLED BACK" if run and run.state is RunState.SUCCEEDED else "RESOLVED",
                "closed": "CLOSED"}[incident.status.value],
        generated_at=utcnow(), timeline=timeline,
        requested_by=run.requested_by if run else incident.declared_by, approved_by=_approver(events),
        backup=_backup_line(facts), kept_as=facts.get("keep_as", ""),
        resolution=RESOLUTIONS["full" if run and run.state is RunState.SUCCEEDED else None],
        steps=tuple(StepView(s.title, s.state.value, s.seconds, s.detail) for s in steps if s.key != "report"),
        row_counts=tuple(sorted(facts.get("row_counts", {}).items())),
        audit=tuple((e.at, e.actor, _audit_action(e), e.outcome) for e in events),
        summary=incident.summary, root_cause=incident.root_cause, what_failed=incident.what_failed,
        prevention=incident.prevention,
        signoffs=tuple((title, signoffs.get(role, {}).get("user"), signoffs.get(role, {}).get("at"))
                       for role, title in SIGNOFF_ROLES.items()),
        audit_head=audit_head,
    )


async def write_report(settings: Settings, store: AsyncStore, incident_id: str) -> Path:
    """Write INCIDENT_REPORT-<incident>.md into the reports folder (beside the audit database)."""
    markdown = report_markdown(await build_report(settings, store, incident_id))
    folder = settings.reports_dir
    path = folder / f"INCIDENT_REPORT-{incident_id}.md"

    def write() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown, encoding="utf-8")

    await asyncio.to_thread(write)
    return path
