"""The runbook's communication templates (Part 9) and the step progress posted in the alert's thread."""

from __future__ import annotations

from messages.blocks import SlackMessage, actions, button, confirm_dialog, context, fields, header, section
from messages.ids import ActionId, IncidentButton, RunButton
from messages.views import AlertView, ResolvedView, RunEndView, StepView
from readable import duration, mark


def _utc(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def alert(view: AlertView) -> SlackMessage:
    """🚨 INCIDENT ALERT 🚨 — posted once, then updated in place as the status changes."""
    closed = f" · closed {_utc(view.closed_at)}" if view.closed_at else ""
    lines = [
        "🚨 INCIDENT ALERT 🚨", "", "Database Migration Issue Detected",
        f"- Time: {_utc(view.declared_at)}", f"- Status: {view.status}{closed}",
        f"- Environment: {view.environment.capitalize()}",
        f"- Escalation: level {view.level} ({view.level_name})", "",
        f"Application Impact: {view.impact}", "",
        f"Action: {view.action}", f"ETA for recovery: {view.eta}", "", view.progress_note,
    ]
    blocks = [
        header("🚨 INCIDENT ALERT 🚨"),
        section(f"*Database Migration Issue Detected* · `{view.incident_id}`"
                + (f"\n{view.summary}" if view.summary else "")),
        fields([("Time", _utc(view.declared_at)), ("Status", f"*{view.status}*{closed}"),
                ("Environment", view.environment.capitalize()), ("Application Impact", view.impact),
                ("Escalation", f"Level {view.level} — {view.level_name}")]),
        section(f"*Action:* {view.action}\n*ETA for recovery:* {view.eta}"),
        context(view.progress_note),
    ]
    buttons = []
    value = IncidentButton(incident=view.incident_id).model_dump_json()
    if view.can_escalate:
        buttons.append(button(f"Raise to level {view.level + 1}", ActionId.ESCALATE, value,
                              confirm=confirm_dialog(f"Raise to level {view.level + 1}?",
                                                     "The approvers will be notified.", "Raise")))
    if view.can_resolve:
        buttons.append(button("Mark resolved", ActionId.RESOLVE, value,
                              confirm=confirm_dialog("Mark the incident resolved?",
                                                     "Use this when the issue was fixed without (or after) a rollback. "
                                                     "The post-incident checklist and sign-offs follow.", "Resolve")))
    if buttons:
        blocks.append(actions("incident", *buttons))
    if view.summary:
        lines.insert(3, view.summary)
    return SlackMessage("\n".join(lines), blocks)


def run_started(plan_title: str, environment: str, requested_by: str, run_id: str) -> SlackMessage:
    """The first line of a run in the alert's thread (an incident may see several runs)."""
    text = f"▶️ *{plan_title}* of `{environment}` requested by <@{requested_by}> · run `{run_id}`"
    return SlackMessage(text.replace("*", "").replace("`", ""), [section(text)])


def decision_line(state: str, decided_by: str) -> SlackMessage:
    """The approval decision, repeated in the alert's thread so the progress reads in order."""
    text = {"approved": f"✅ Approved by <@{decided_by}>", "denied": f"🛑 Denied by <@{decided_by}>",
            "expired": "⌛ The approval expired: nobody decided in time",
            "superseded": "♻️ The approved plan changed before it ran: the approval is void and a new one was asked",
            }.get(state, f"Approval {state}")
    return SlackMessage(text, [section(text)])


def step_line(view: StepView) -> SlackMessage:
    """One line per finished step, in the alert's thread: icon, title, duration, detail."""
    icon = mark(view.state)
    took = f" — {duration(view.seconds)}" if view.seconds is not None else ""
    state = "" if view.state in ("succeeded", "failed") else f" ({view.state})"
    detail = f"\n{view.detail}" if view.detail else ""
    return SlackMessage(f"{icon} {view.title}{state}{took}{detail}",
                        [section(f"{icon} *{view.title}*{state}{took}{detail}")])


def run_ended(view: RunEndView) -> SlackMessage:
    """How a run ended; for a failure or denial it says where the live database stands and what to do."""
    if view.state == "succeeded":
        text = f"🏁 {view.plan_title} of {view.environment} finished in {duration(view.seconds)}. {view.live_state}"
        return SlackMessage(text, [section(text)])
    if view.state == "denied":
        title = f"🛑 {view.plan_title} of {view.environment} was {view.reason}"
    elif view.state == "interrupted":
        title = f"⚡ {view.plan_title} of {view.environment} {view.reason}"
    else:
        where = f" at “{view.failed_step}”" if view.failed_step else ""
        title = f"❌ {view.plan_title} of {view.environment} failed{where}: {view.reason}"
    parts = [(title, ""), ("Live database:", view.live_state)]
    if view.next_steps:
        parts.append(("Next:", view.next_steps))
    notes = [f"Incident {view.incident_id} stays open."]
    if view.skipped:
        notes.append("Not run: " + ", ".join(view.skipped) + ".")
    blocks = [section(f"*{label}* {body}" if body else label) for label, body in parts]
    blocks.append(context(" ".join(notes)))
    if view.retry_app:
        value = RunButton(incident=view.incident_id, run=view.run_id).model_dump_json()
        blocks.append(actions("retry", button("🔁 Retry the application start", ActionId.RETRY_APP, value,
                                              style="primary")))
    if view.interrupted:
        value = RunButton(incident=view.incident_id, run=view.run_id).model_dump_json()
        blocks.append(actions(
            "recovery",
            button("▶️ Start again", ActionId.RUN_AGAIN, value, style="primary", confirm=confirm_dialog(
                "Start again?", f"A new {view.plan_title.lower()} of `{view.environment}` in {view.incident_id}, from "
                "its first step, with the same approval before anything live changes.", "Start again")),
            button("🧹 Abandon and clean up", ActionId.CLEAN_UP, value, confirm=confirm_dialog(
                "Abandon this run?", "Nothing is started again. Leftover restored copies are listed and dropped "
                "after an approval; live and the kept failed copy are never touched.", "Abandon"))))
    text = "\n".join(f"{label} {body}".strip() for label, body in parts)
    return SlackMessage(f"{text}\n{' '.join(notes)}", blocks)


def resolved(view: ResolvedView) -> SlackMessage:
    """✅ INCIDENT RESOLVED ✅ — every statement in it is true of this run."""
    facts = [
        f"- Rollback completed: {_utc(view.completed_at)}",
        f"- Database restored to pre-migration state ({view.restored_from})",
        *[f"- {line}" for line in view.app_lines],
        f"- {view.writes_line}" if view.writes_line else
        f"- Writes made after the backup of {_utc(view.backup_taken_at)} are not in the restored database; they are "
        f"kept in `{view.kept_as}` (being counted: this line will say how many)",
    ]
    next_steps = ["- Root cause analysis in progress", "- Full incident report will be published (attached below)",
                  "- Remediation plan to follow"]
    lines = ["✅ INCIDENT RESOLVED ✅", "", "Database migration issue has been resolved.", *facts, "",
             "Next Steps:", *next_steps, "", "We appreciate your patience."]
    blocks = [
        header("✅ INCIDENT RESOLVED ✅"),
        section(f"Database migration issue has been resolved. · `{view.incident_id}` · {view.environment}"),
        section("\n".join(facts)),
        section("*Next Steps:*\n" + "\n".join(next_steps)),
        context("We appreciate your patience."),
    ]
    return SlackMessage("\n".join(lines), blocks)


def resolved_by_hand(incident_id: str, environment: str, by: str | None, at) -> SlackMessage:
    """INCIDENT RESOLVED without a rollback: it says only what is true (nothing was restored)."""
    who = f" by <@{by}>" if by else ""
    lines = ["✅ INCIDENT RESOLVED ✅", "", f"The migration issue in {environment} was marked resolved{who} "
             f"at {_utc(at)}.", "- Resolved by hand: this incident's thread shows what the bot did before", "",
             "Next Steps:", "- Root cause analysis in progress", "- Full incident report will be published (attached below)",
             "- Remediation plan to follow", "", "We appreciate your patience."]
    blocks = [header("✅ INCIDENT RESOLVED ✅"),
              section(f"`{incident_id}` · {environment}: marked resolved{who} at {_utc(at)}. Resolved by hand: "
                      "this incident's thread shows what the bot did before."),
              section("*Next Steps:*\n- Root cause analysis in progress\n- Full incident report will be published "
                      "(attached below)\n- Remediation plan to follow"),
              context("We appreciate your patience.")]
    return SlackMessage("\n".join(lines), blocks)
