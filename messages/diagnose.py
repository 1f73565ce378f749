"""The `/rollback diagnose` report: one section per check, its findings, and a fix button beside
each finding that has one.

Pure builder over anything shaped like `actions.diagnosis.Diagnosis` (the Protocols below), so
this package stays free of `actions`. Findings quote SQL, so their text is escaped for mrkdwn.
A button only *asks* for its fix: the click starts a gated run that an approver must approve.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any, Protocol, Sequence

from messages.blocks import SlackMessage, button, clip, confirm_dialog, context, escape, header, section
from messages.ids import ActionId, RemedyButton
from readable import duration

ICONS = {"ok": "✅", "warn": "⚠️", "fail": "❌", "error": "❔"}
WORDS = {"ok": "OK", "warn": "warning", "fail": "failing", "error": "could not run"}
BUTTONS_PER_CHECK = 4  # Slack allows 50 blocks a message: 6 checks × (1 + 4 + 2) + 3 fits
LISTED_PER_CHECK = 15  # findings beyond this are counted, not listed
DANGEROUS = {"terminate", "quarantine"}
WHAT_IT_DOES = {
    "terminate": "cancels the backend's query and, if it is still busy 5 s later, ends its session",
    "analyze": "runs ANALYZE on the table",
    "vacuum": "runs VACUUM (ANALYZE) on the table",
    "reindex": "rebuilds the index (writes to its table wait while it runs)",
    "quarantine": "moves the orphan rows into rollback_quarantine (kept whole, and restorable)",
}


class RemedyLike(Protocol):
    kind: Any  # a StrEnum: .value is the kind's name
    target: dict[str, Any]
    label: str


class FindingLike(Protocol):
    text: str
    remedy: RemedyLike | None


class CheckLike(Protocol):
    key: str
    title: str
    status: Any
    summary: str
    findings: Sequence[FindingLike]
    hint: str | None
    seconds: float


class DiagnosisLike(Protocol):
    environment: str
    database: str
    at: datetime
    checks: Sequence[CheckLike]

    @property
    def worst(self) -> Any: ...


def _value(status: Any) -> str:
    return getattr(status, "value", status)


def remedy_button(environment: str, remedy: RemedyLike, number: int) -> dict[str, Any]:
    """`number` makes the action id unique in the message (remedy-1, remedy-2, …): one listener
    takes them all, and each click names exactly one button."""
    kind = _value(remedy.kind)
    value = RemedyButton(environment=environment, kind=kind, target=remedy.target).model_dump_json()
    dialog = confirm_dialog(
        "Ask for this fix?",
        f"*{remedy.label}* on `{environment}` {WHAT_IT_DOES.get(kind, '')}. "
        "Nothing runs until an approver approves it in the incident channel.",
        "Ask an approver", danger=kind in DANGEROUS)
    return button(remedy.label, f"{ActionId.REMEDY.value}-{number}", value, style="danger" if kind in DANGEROUS else None,
                  confirm=dialog)


def _check_blocks(environment: str, check: CheckLike, numbers) -> list[dict[str, Any]]:
    status = _value(check.status)
    blocks = [section(f"{ICONS[status]} *{check.title}* — {escape(check.summary)}")]
    fixable = [f for f in check.findings if f.remedy is not None][:BUTTONS_PER_CHECK]
    for finding in fixable:  # a section with its button beside it
        block = section(f"• {escape(finding.text)}")
        block["accessory"] = remedy_button(environment, finding.remedy, next(numbers))
        blocks.append(block)
    rest = [f for f in check.findings if f not in fixable]
    if rest:
        lines = [f"• {escape(f.text)}" for f in rest[:LISTED_PER_CHECK]]
        if len(rest) > LISTED_PER_CHECK:
            lines.append(f"… and {len(rest) - LISTED_PER_CHECK} more")
        if any(f.remedy is not None for f in rest):
            lines.append(f"_Fix buttons are shown for the first {BUTTONS_PER_CHECK}; diagnose again after fixing "
                         "them for the others._")
        blocks.append(section(clip("\n".join(lines), 3000)))
    notes = [duration(check.seconds)]
    if check.hint:
        notes.insert(0, f"💡 {escape(check.hint)}")
    blocks.append(context(*notes))
    return blocks


def diagnosis_message(diagnosis: DiagnosisLike) -> SlackMessage:
    counts: dict[str, int] = {}
    for check in diagnosis.checks:
        counts[_value(check.status)] = counts.get(_value(check.status), 0) + 1
    tally = " · ".join(f"{ICONS[s]} {counts[s]} {WORDS[s]}" for s in ("fail", "error", "warn", "ok") if counts.get(s))
    title = f"{ICONS[_value(diagnosis.worst)]} Diagnosis of {diagnosis.environment}"
    at = diagnosis.at.strftime("%Y-%m-%d %H:%M:%S UTC")
    blocks = [header(title), context(f"`{diagnosis.database}` at {at} · {tally} · read-only: nothing was changed")]
    numbers = itertools.count(1)
    for check in diagnosis.checks:
        blocks.extend(_check_blocks(diagnosis.environment, check, numbers))
    blocks.append(context("A fix button asks for the fix: an approver (not you) approves it in the incident channel, "
                          "and it is audited. Run `/rollback diagnose " + diagnosis.environment + "` again afterwards."))
    lines = [f"{title} ({diagnosis.database}, {at}): {tally}"]
    for check in diagnosis.checks:
        lines.append(f"{ICONS[_value(check.status)]} {check.title}: {check.summary}")
    return SlackMessage("\n".join(lines), blocks[:50])
