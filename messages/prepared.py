"""A prepared rollback (`/rollback prepare`) in the incident channel: its progress, updated in place, then
"Rollback ready" with what a full rollback now costs, or why it failed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from messages.blocks import SlackMessage, context, fields, header, section
from readable import duration

PHASES = ("preflight", "backup", "restore", "verify")
PHASE_TITLES = {"preflight": "Preflight: server, rights, disk (2× the database)", "backup": "Backup with its manifest",
                "restore": "Restore into the prepared copy", "verify": "Verify against the manifest"}


@dataclass(frozen=True)
class PrepareView:
    environment: str
    target: str
    database: str  # the prepared copy
    phase: str  # a PHASES entry, or ready / failed
    detail: str
    requested_by: str
    started_at: datetime
    backup: str | None = None  # the backup's file and folder, once taken
    backup_seconds: float | None = None
    restore_seconds: float | None = None
    ready_at: datetime | None = None
    percent: int | None = None  # the restore's progress
    replaced: tuple[str, ...] = ()


def prepare_progress(view: PrepareView) -> SlackMessage:
    """Posted when the prepare starts, then updated in place at each phase and as the restore goes."""
    lines = []
    done = PHASES.index(view.phase) if view.phase in PHASES else len(PHASES)
    for number, phase in enumerate(PHASES):
        mark = "✅" if number < done else ("⏳" if number == done and view.phase in PHASES else "▫️")
        if view.phase == "failed" and number == done:
            mark = "❌"
        extra = f" — {view.percent}%" if phase == "restore" and number == done and view.percent is not None else ""
        lines.append(f"{mark} {PHASE_TITLES[phase]}{extra}")
    title = f"🛟 Preparing a rollback of {view.environment}"
    note = f"Requested by <@{view.requested_by}> at {view.started_at:%H:%M:%S} UTC · copy `{view.database}`"
    text = f"{title}\n" + "\n".join(lines) + (f"\n{view.detail}" if view.detail else "")
    return SlackMessage(f"{text}\n{note}", [section(f"*{title}*"), section("\n".join(lines)),
                                            *([context(view.detail)] if view.detail else []), context(note)])


def rollback_ready(view: PrepareView) -> SlackMessage:
    """"Rollback ready": the backup, the copy, what they took, and what a full rollback now costs."""
    costs = ("After the approval, `/rollback full` only swaps this copy in (renames in one transaction: well under "
             "a second with nobody connected) and restarts the application: nothing is restored")
    if view.restore_seconds is not None:
        costs += f" (the restore it saves took {duration(view.restore_seconds)} now)"
    replaced = f" It replaces {', '.join(f'`{name}`' for name in view.replaced)}, dropped." if view.replaced else ""
    text = (f"✅ Rollback ready for {view.environment}: backup {view.backup} taken in "
            f"{duration(view.backup_seconds or 0)}, restored into `{view.database}` in "
            f"{duration(view.restore_seconds or 0)} and verified ({view.detail}). {costs}.{replaced} "
            f"The migration window starts now ({view.ready_at:%H:%M:%S} UTC).")
    blocks = [
        header(f"✅ Rollback ready for {view.environment}"),
        fields([("Backup", view.backup or "?"), ("Taken in", duration(view.backup_seconds or 0)),
                ("Prepared copy", f"`{view.database}`"), ("Restored in", duration(view.restore_seconds or 0)),
                ("Verified", view.detail), ("Migration window from", f"{view.ready_at:%Y-%m-%d %H:%M:%S} UTC")]),
        section(f"*A full rollback now:* {costs}." + replaced),
        context(f"Target {view.target}. The copy stays closed to connections; a full rollback uses it only if it is "
                "proven unchanged and holds the newest backup. `/rollback unprepare "
                f"{view.environment}` removes it."),
    ]
    return SlackMessage(text, blocks)


def prepare_failed(view: PrepareView) -> SlackMessage:
    text = (f"❌ The prepare of {view.environment} failed: {view.detail}. Live is untouched, and a full rollback "
            "restores the newest backup as usual.")
    return SlackMessage(text, [section(text), context(f"Requested by <@{view.requested_by}> · copy `{view.database}`")])
