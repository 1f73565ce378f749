"""The incident report (runbook Step 10), filled from the store: real times, real steps, real actors.

It can be written at any point of an incident's life: by a rollback's last step, again after
somebody fills in root cause / what failed / prevention, on `/rollback report`, and a final time
when the sign-offs are in. It tells every run of the incident — its plan, the preview that was
approved, who asked and who approved, and how it ended — and uses the full rollback's words
(restored, swapped, failed database kept) only when a full rollback swapped.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from actions.config import SIGNOFF_ROLES, Settings
from actions.incidents.report_markdown import ReportView, RunView, StepLine, report_markdown
from actions.plans.facts import RunFacts
from actions.store.records import (
    Approval,
    ApprovalState,
    AuditEvent,
    Incident,
    Run,
    RunState,
    StepRecord,
    StepState,
    utcnow,
)
from actions.store.sqlite import AsyncStore

FULL_RESOLUTION = ("Full database rollback performed. The backup was restored into a separate database, verified "
                   "against the backup's table of contents, and swapped in by renaming; the database that failed "
                   "was kept under a new name.")
NO_ROLLBACK = "Resolved without a rollback."
WRITES_REPORT = ("report", "finish")  # the steps that write this report at the end of a run


def _ended(steps: list[StepRecord], key: str):
    return next((s.ended_at for s in steps if s.key == key and s.state == "succeeded"), None)


def _backup_line(run: Run) -> str:
    backup = RunFacts.of(run.facts).backup
    return backup.describe() if backup else "none recorded"


def _audit_action(event: AuditEvent) -> str:
    """The action with the one detail that says what it was about (a step, a reason, an item)."""
    about = event.detail.get("step") or event.detail.get("reason") or event.detail.get("item") or event.detail.get("role")
    return f"{event.action} ({about})" if about else event.action


def _swapped_full(runs: list[Run]) -> Run | None:
    """The full rollback that swapped the restored copy in, if one did (the latest)."""
    return next((r for r in reversed(runs) if r.plan == "full" and RunFacts.of(r.facts).swapped), None)


def _resolution(runs: list[RunView], full: Run | None) -> str:
    if full is not None:
        return FULL_RESOLUTION
    done = [r for r in runs if r.state == RunState.SUCCEEDED.value]
    if done:
        return ("No database was swapped. Partial rollback(s) changed the live database in place, each exactly as its "
                "approved preview below says: " + ", ".join(f"{r.title} ({r.run_id})" for r in done) + ".")
    if runs:
        return "No rollback completed: the runs below say where each stopped and what it left."
    return NO_ROLLBACK


def _title(run: Run) -> str:
    from actions.verbs import PLANS  # here, not at the top: the plans' own steps write this report

    spec = PLANS.get(run.plan)
    return spec.title if spec else run.plan


def _run_view(run: Run, steps: list[StepRecord], approvals: list[Approval], events: list[AuditEvent]) -> RunView:
    approved = [a for a in approvals if a.state is ApprovalState.APPROVED]
    shown = approved[-1] if approved else (approvals[-1] if approvals else None)
    ended = next((e for e in reversed(events) if e.run_id == run.id and e.action.startswith("run.")), None)
    result, state = (ended.detail.get("live_state", ""), run.state.value) if ended else ("still running", run.state.value)
    if ended is None and steps and all(s.state is StepState.SUCCEEDED for s in steps if s.key not in WRITES_REPORT):
        # The run's own last step is writing this report: everything it changes is done.
        result, state = "every step succeeded; writing this report is its last step", RunState.SUCCEEDED.value
    return RunView(
        run_id=run.id, title=_title(run), command=" ".join([run.plan, run.environment, *run.facts.get("args", [])]),
        requested_by=run.requested_by, approved_by=tuple(dict.fromkeys(a.decided_by for a in approved)),
        decision=shown.state.value if shown else None, started_at=run.started_at, ended_at=run.ended_at,
        state=state, reason=run.outcome or "", result=result,
        preview_title=shown.preview.get("title") if shown else None,
        preview_actions=tuple(shown.preview.get("actions", ())) if shown else (),
        steps=tuple(StepLine(s.title, s.state.value, s.seconds, s.detail) for s in steps if s.key != "report"))


async def build_report(settings: Settings, store: AsyncStore, incident_id: str) -> ReportView:
    incident: Incident = await store.incident(incident_id)
    runs = await store.runs(incident_id=incident_id)
    events = await store.audit_events(incident_id)
    signoffs = await store.signoffs(incident_id)
    audit_head = await store.audit_head()
    views = [_run_view(r, await store.steps(r.id), await store.approvals_of(r.id), events) for r in runs]
    full = _swapped_full(runs)
    full_steps = await store.steps(full.id) if full else []
    env = settings.environments.get(incident.environment)
    timeline = (
        ("Migration start", await _migration_start(store, incident)),
        ("Migration issue detected", incident.declared_at),
        ("Rollback initiated", runs[0].started_at if runs else None),
        ("Restore completed", _ended(full_steps, "restore_aside")),
        ("Application restarted", _ended(full_steps, "start_app")),
        ("Incident resolved", incident.resolved_at),
        ("Incident closed", incident.closed_at),
    )
    return ReportView(
        incident_id=incident.id, environment=incident.environment, target=env.target if env else "?",
        level=f"{'CRITICAL' if incident.level >= 3 else 'MAJOR' if incident.level == 2 else 'MINOR'} (level {incident.level})",
        status={"open": "OPEN", "resolved": "ROLLED BACK" if full else "RESOLVED", "closed": "CLOSED"}[incident.status.value],
        generated_at=utcnow(), timeline=timeline,
        requested_by=runs[0].requested_by if runs else incident.declared_by,
        approved_by=", ".join(dict.fromkeys(a for v in views for a in v.approved_by)) or None,
        backup=_backup_line(full) if full else "",
        kept_as=RunFacts.of(full.facts).databases.keep_as if full and RunFacts.of(full.facts).databases else "",
        resolution=_resolution(views, full), runs=tuple(views),
        row_counts=tuple(sorted(full.facts.get("row_counts", {}).items())) if full else (),
        writes_line=RunFacts.of(full.facts).writes_line if full else None,
        writes=tuple(tuple(t) for t in ((RunFacts.of(full.facts).writes_after or {}).get("tables", []) if full else [])),
        writes_not_compared=tuple(tuple(n) for n in (
            (RunFacts.of(full.facts).writes_after or {}).get("not_compared", []) if full else [])),
        audit=tuple((e.at, e.actor, _audit_action(e), e.outcome) for e in events),
        summary=incident.summary, root_cause=incident.root_cause, what_failed=incident.what_failed,
        prevention=incident.prevention,
        signoffs=tuple((title, signoffs.get(role, {}).get("user"), signoffs.get(role, {}).get("at"))
                       for role, title in SIGNOFF_ROLES.items()),
        audit_head=audit_head,
    )


async def _migration_start(store: AsyncStore, incident) -> datetime | None:
    """The migration window's start: when the environment's latest prepared rollback before the incident
    was ready (`/rollback prepare` marks it); unknown without one."""
    copies = [c for c in await store.prepared_copies(environment=incident.environment)
              if c.ready_at is not None and c.ready_at <= incident.declared_at]
    return copies[-1].ready_at if copies else None


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
