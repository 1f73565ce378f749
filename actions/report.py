"""The incident report (runbook Step 10), filled from the store: real times, real steps, real actors."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from actions.backups import human_size
from actions.plan import RunContext
from actions.records import ApprovalState, AuditEvent, StepRecord, utcnow
from messages.report import report_markdown
from messages.views import ReportView, StepView


def _ended(steps: list[StepRecord], key: str):
    return next((s.ended_at for s in steps if s.key == key and s.state == "succeeded"), None)


def _approver(events: list[AuditEvent]) -> str | None:
    return next((e.actor for e in reversed(events) if e.action == ApprovalState.APPROVED.value), None)


def _backup_line(facts: dict) -> str:
    if not facts.get("backup_path"):
        return "none (the rollback did not get past preflight)"
    created = datetime.fromisoformat(facts["backup_created"])
    return f"{facts['backup_path']} (created {created:%Y-%m-%d %H:%M:%S} UTC, {human_size(facts['backup_size'])})"


def _audit_action(event: AuditEvent) -> str:
    """The action with the one detail that says what it was about (a step, a reason)."""
    about = event.detail.get("step") or event.detail.get("reason")
    return f"{event.action} ({about})" if about else event.action


async def build_report(ctx: RunContext) -> ReportView:
    """The report's content for the run in `ctx` (called by the run's own `report` step)."""
    incident = await ctx.store.incident(ctx.incident.id)
    steps = await ctx.store.steps(ctx.run.id)
    events = await ctx.store.audit_events(ctx.incident.id)
    facts = ctx.facts
    timeline = (
        ("Migration start", None),
        ("Issue detected", incident.declared_at),
        ("Rollback initiated", ctx.run.started_at),
        ("Restore completed", _ended(steps, "restore_aside")),
        ("Application restarted", _ended(steps, "start_app")),
        ("Incident closed", incident.resolved_at),
    )
    return ReportView(
        incident_id=incident.id, environment=incident.environment, target=ctx.environment.target,
        level="CRITICAL", status="ROLLED BACK" if incident.resolved_at else "OPEN", generated_at=utcnow(),
        timeline=timeline, requested_by=ctx.run.requested_by, approved_by=_approver(events),
        backup=_backup_line(facts),
        kept_as=facts.get("keep_as", ""),
        resolution=("Full database rollback performed. The backup was restored into a separate database, "
                    "verified against the backup's table of contents, and swapped in by renaming; the "
                    "database that failed was kept under a new name."),
        steps=tuple(StepView(s.title, s.state.value, s.seconds, s.detail) for s in steps if s.key != "report"),
        row_counts=tuple(sorted(facts.get("row_counts", {}).items())),
        audit=tuple((e.at, e.actor, _audit_action(e), e.outcome) for e in events),
    )


async def write_report(ctx: RunContext) -> Path:
    """Write INCIDENT_REPORT-<incident>.md into the reports folder (beside the audit database)."""
    markdown = report_markdown(await build_report(ctx))
    folder = ctx.settings.reports_dir
    path = folder / f"INCIDENT_REPORT-{ctx.incident.id}.md"

    def write() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown, encoding="utf-8")

    await asyncio.to_thread(write)
    return path
