"""Part 10 of the runbook after the resolution: the checklist, sign-offs, reminders, the report modal."""

from __future__ import annotations

from messages.blocks import ACTIONS_LIMIT, SlackMessage, actions, button, clip, context, header, mention, plain, section
from messages.ids import ActionId, CallbackId, IncidentButton
from messages.views import ChecklistView, SignoffView


def checklist_message(view: ChecklistView) -> SlackMessage:
    """One checkboxes element per group; ticks are recorded (who, when) in the audit trail."""
    blocks = [header(f"Post-incident checklist · {view.incident_id}")]
    lines = [f"Post-incident checklist for {view.incident_id}"]
    for key, title, items in view.groups:
        options = [{"text": plain(text, 75), "value": item} for item, text, _, _ in items]
        checked = [option for option, (_, _, done, _) in zip(options, items, strict=True) if done]
        element = {"type": "checkboxes", "action_id": ActionId.CHECKLIST_PREFIX + key, "options": options}
        if checked:
            element["initial_options"] = checked
        done = sum(1 for item in items if item[2])
        # The block id carries the incident: a checkboxes element has no value of its own.
        blocks += [section(f"*{title}* · {done}/{len(items)}"), actions(f"checklist|{view.incident_id}|{key}", element)]
        lines += [f"{title}:"] + [f"  [{'x' if d else ' '}] {text}" for _, text, d, _ in items]
    blocks.append(context("Ticking a box is recorded with your name in the audit trail."))
    return SlackMessage("\n".join(lines), blocks)


def signoff_message(view: SignoffView) -> SlackMessage:
    rows, buttons = [], []
    value = IncidentButton(incident=view.incident_id).model_dump_json()
    for key, title, required, by, at in view.roles:
        if by:
            rows.append(f"✅ *{title}*: {mention(by)} · {at:%Y-%m-%d %H:%M} UTC")
        else:
            rows.append(f"⏳ *{title}*: not signed{'' if required else ' (optional)'}")
            buttons.append(button(f"Sign off as {title}", ActionId.SIGN_OFF_PREFIX + key, value))
    status = (f"Closed {view.closed_at:%Y-%m-%d %H:%M} UTC: every required sign-off is in." if view.closed_at
              else "The incident closes when every required sign-off is in.")
    blocks = [header(f"Sign-offs · {view.incident_id}"), section("\n".join(rows)), context(status)]
    if buttons and not view.closed_at:  # an actions block holds 25 elements: more roles, more rows of buttons
        blocks[2:2] = [actions("signoffs" if i == 0 else f"signoffs-{i // ACTIONS_LIMIT + 1}",
                               *buttons[i:i + ACTIONS_LIMIT]) for i in range(0, len(buttons), ACTIONS_LIMIT)]
    return SlackMessage(f"Sign-offs for {view.incident_id}\n" + "\n".join(rows).replace("*", "") + f"\n{status}", blocks)


def reminder(incident_id: str, title: str, open_items: list[str], people: tuple[str, ...]) -> SlackMessage:
    who = " ".join(mention(p) for p in people)
    text = (f"⏰ {incident_id}: {len(open_items)} item(s) of *{title}* are still open: "
            + "; ".join(open_items) + f". {who}")
    return SlackMessage(text.replace("*", ""), [section(text)])


def report_prompt(incident_id: str, missing: list[str]) -> SlackMessage:
    value = IncidentButton(incident=incident_id).model_dump_json()
    text = (f"📄 The incident report of {incident_id} is attached above. "
            + (f"Still to write: {', '.join(missing)}." if missing else "Every section is filled in."))
    return SlackMessage(text, [section(text), actions("report", button("Fill in the report", ActionId.EDIT_REPORT, value))])


def report_modal(incident_id: str, root_cause: str | None, what_failed: str | None, prevention: str | None) -> dict:
    """The modal a person fills in; its private_metadata names the incident."""

    def field(block_id: str, label: str, value: str | None, hint: str) -> dict:
        element = {"type": "plain_text_input", "action_id": "value", "multiline": True, "max_length": 3000,
                   "placeholder": plain(hint, 150)}
        if value:  # within the input's own limit, or the answer could not be saved unchanged
            element["initial_value"] = clip(value, element["max_length"])
        return {"type": "input", "block_id": block_id, "label": plain(label, 2000), "element": element, "optional": True}

    return {
        "type": "modal", "callback_id": CallbackId.REPORT_MODAL,
        "private_metadata": IncidentButton(incident=incident_id).model_dump_json(),
        "title": plain("Incident report", 24), "submit": plain("Save", 24), "close": plain("Cancel", 24),
        "blocks": [
            field("root_cause", "Root cause", root_cause, "What caused the failure?"),
            field("what_failed", "What failed", what_failed, "Which step of the migration failed, and how?"),
            field("prevention", "Prevention", prevention, "What will be done so it does not happen again?"),
        ],
    }
