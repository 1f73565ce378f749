"""The approval request that replaces the runbook's typed "YES", and its decided form."""

from __future__ import annotations

from messages.blocks import (
    SlackMessage,
    actions,
    button,
    confirm_dialog,
    context,
    fields,
    header,
    mention,
    section,
)
from messages.ids import ActionId, ApprovalButton
from messages.views import ApprovalView

DECIDED = {"approved": "✅ Approved", "denied": "🛑 Denied", "void": "⌛ No longer needed", "expired": "⌛ Expired",
           "superseded": "♻️ Superseded"}
BY_BOT = {  # decided by the bot, not a person: why, instead of by whom
    "void": ": the rollback ended before anybody decided",
    "expired": ": nobody decided in time, so nothing it covers will run",
    "superseded": ": the plan changed after it was approved; a new approval was asked",
}


def approval_message(view: ApprovalView) -> SlackMessage:
    """Exactly what will happen, and — while pending — Approve (with a confirm dialog) and Deny."""
    steps = "\n".join(f"{n}. {line}" for n, line in enumerate(view.actions, start=1))
    who = ", ".join(mention(a) for a in view.approvers)
    rule = " The person who asked cannot approve (two-person rule)." if view.two_person_rule else ""
    pending = view.state == "pending"
    blocks = [
        header(f"⚠️ Approval needed: {view.title}" if pending else f"Approval: {view.title}"),
        section(f"{mention(view.requested_by)} asks for a *{view.title.lower()}* · `{view.incident_id}`"),
        section(f"*If approved, the bot will:*\n{steps}"),
        fields(list(view.facts)),
    ]
    text = (f"{'Approval needed' if pending else 'Approval'}: {view.title} ({view.incident_id}), "
            f"requested by {mention(view.requested_by)}")
    if pending:
        value = ApprovalButton(incident=view.incident_id, approval=view.approval_id).model_dump_json()
        blocks += [
            context(f"Approvers: {who}.{rule} Nothing live changes before a decision."),
            actions("decision",
                    button("Approve", ActionId.APPROVE, value, style="danger",
                           confirm=confirm_dialog(view.title + "?", view.confirm, "Approve", danger=True)),
                    button("Deny", ActionId.DENY, value)),
        ]
    else:
        by = f" by {mention(view.decided_by)}" if view.decided_by and view.state not in BY_BOT else ""
        when = f" at {view.decided_at:%H:%M:%S} UTC" if view.decided_at else ""
        outcome = f"{DECIDED.get(view.state, view.state)}{by}{when}{BY_BOT.get(view.state, '')}"
        blocks.append(section(f"*{outcome}*"))
        text += f" — {outcome}"
    return SlackMessage(text, blocks)
