"""The incident report (runbook Step 10) as a Markdown file, with the runbook's headings.

A document the bot writes to disk and uploads, not a Slack message: it is built here, from the
report's own small view models, with nothing of Slack in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from readable import duration, mark


@dataclass(frozen=True)
class StepLine:
    title: str
    state: str  # a StepState value
    seconds: float | None = None
    detail: str | None = None


@dataclass(frozen=True)
class RunView:
    """One run of an incident, as the report tells it."""

    run_id: str
    title: str  # the plan's title: "Column rollback"
    command: str  # "columns staging", "tables staging payment"
    requested_by: str
    approved_by: tuple[str, ...]
    decision: str | None  # the approval's state, or None when the plan asks none
    started_at: datetime
    ended_at: datetime | None
    state: str  # a RunState value
    reason: str  # completed, or why it stopped
    result: str  # where the live database stood when it ended
    preview_title: str | None
    preview_actions: tuple[str, ...]
    steps: tuple[StepLine, ...]


@dataclass(frozen=True)
class ReportView:
    """The incident report (runbook Step 10), filled from the audit trail."""

    incident_id: str
    environment: str
    target: str
    level: str
    status: str
    generated_at: datetime
    timeline: tuple[tuple[str, datetime | None], ...]
    requested_by: str
    approved_by: str | None
    backup: str  # the backup a full rollback restored and swapped in ("" when none did)
    kept_as: str  # the failed database it kept ("" when none did)
    resolution: str
    runs: tuple[RunView, ...]
    row_counts: tuple[tuple[str, int], ...] = ()
    writes_line: str | None = None  # rows written after the backup, as RESOLVED says it
    writes: tuple[tuple[str, int, int, int], ...] = ()  # (table, inserted, updated, deleted)
    writes_not_compared: tuple[tuple[str, str], ...] = ()  # (table, why)
    audit: tuple[tuple[datetime, str, str, str], ...] = field(default_factory=tuple)  # at, actor, action, outcome
    summary: str | None = None
    root_cause: str | None = None
    what_failed: str | None = None
    prevention: str | None = None
    signoffs: tuple[tuple[str, str | None, str | None], ...] = ()  # role title, user, ISO time
    audit_head: tuple[int, str] | None = None  # (seq, hash) of the audit chain when the report was written


TO_FILL = "_To be filled in by the incident owner._"


def _when(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment else "not recorded by the bot (fill in)"


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def _run(number: int, run: RunView) -> list[str]:
    """One run: what was asked, what was approved (the preview), by whom, how it ended, its steps."""
    approval = ("no approval asked (nothing destructive ran)" if run.decision is None
                else f"approved by {', '.join(run.approved_by)}" if run.approved_by else f"approval {run.decision}")
    lines = [
        f"#### {number}. {run.title} — {mark(run.state, '')} {run.state}",
        "",
        f"- Run: {run.run_id}, `/rollback {run.command}`",
        f"- Requested by {run.requested_by}; {approval}",
        f"- Started {_when(run.started_at)}" + (f", ended {_when(run.ended_at)}" if run.ended_at else ""),
    ]
    if run.preview_title:
        lines.append(f"- Preview: {run.preview_title}")
        lines += [f"  - {_cell(action)}" for action in run.preview_actions]
    lines += [f"- Result: {_cell(run.result)}" + (f" ({_cell(run.reason)})" if run.reason not in ("", "completed") else ""),
              "",
              "| Step | Result | Duration | Detail |",
              "|---|---|---|---|",
              *[f"| {_cell(s.title)} | {mark(s.state, '')} {s.state} | {duration(s.seconds)} | {_cell(s.detail)} |"
                for s in run.steps],
              ""]
    return lines


def report_markdown(view: ReportView) -> str:
    lines = [
        f"# Incident Report - {view.incident_id}: {view.environment} migration rollback",
        "",
        f"**Date**: {_when(view.generated_at)}  ",
        f"**Incident Level**: {view.level}  ",
        f"**Status**: {view.status}  ",
        f"**Environment**: {view.environment} ({view.target})  ",
        f"**Requested by**: {view.requested_by}  ",
        f"**Approved by**: {view.approved_by or 'nobody'}",
        "",
        "## Timeline",
        "",
        *[f"- {label}: {_when(moment) if moment or label == 'Migration start' else '—'}"
          for label, moment in view.timeline],
        "",
        "## Root Cause",
        "",
        view.root_cause or TO_FILL,
        "",
        "## What Failed",
        "",
        view.what_failed or TO_FILL,
        "",
        "## Resolution",
        "",
        view.resolution,
        "",
        *([f"- Backup restored: {view.backup}",
           f"- Failed database kept as: `{view.kept_as}` (never dropped by the bot)", ""] if view.kept_as else []),
        "### Runs",
        "",
        *([line for number, run in enumerate(view.runs, 1) for line in _run(number, run)] or ["No rollback was run.", ""]),
    ]
    if view.row_counts:
        lines += ["", "### Rows restored", "", "| Table | Rows |", "|---|---:|",
                  *[f"| {_cell(table)} | {rows:,} |" for table, rows in view.row_counts],
                  f"| **total** | **{sum(r for _, r in view.row_counts):,}** |"]
    if view.writes_line:
        lines += ["", "### Rows written after the backup", "", view.writes_line + ".", "",
                  "The migration's own changes are counted too: the bot cannot tell them from the application's."]
        if view.writes:
            lines += ["", "| Table | Inserted | Updated | Deleted |", "|---|---:|---:|---:|",
                      *[f"| {_cell(t)} | {i:,} | {u:,} | {d:,} |" for t, i, u, d in view.writes]]
        if view.writes_not_compared:
            lines += ["", "Not compared: " + "; ".join(f"{_cell(t)} ({why})" for t, why in view.writes_not_compared) + "."]
    lines += [
        "",
        "## Prevention",
        "",
        view.prevention or TO_FILL,
        "",
        "## Audit trail",
        "",
        "| Time (UTC) | Actor | Action | Outcome |",
        "|---|---|---|---|",
        *[f"| {at:%H:%M:%S} | {_cell(actor)} | {_cell(action)} | {_cell(outcome)} |" for at, actor, action, outcome in view.audit],
        "",
        *([f"Audit chain head when this report was written: row {view.audit_head[0]}, `{view.audit_head[1]}`. "
           "`rollback-bot audit verify` checks the chain up to it.", ""] if view.audit_head else []),
        "## Sign-offs",
        "",
        *[f"- {title}: {user or '_________________'} Date: {at[:10] if at else '_______'}"
          for title, user, at in view.signoffs],
        "",
    ]
    if view.summary:
        lines[lines.index("## Timeline"):lines.index("## Timeline")] = ["## Summary", "", view.summary, ""]
    return "\n".join(lines)
