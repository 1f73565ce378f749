"""The decision tree (runbook Part 1), escalation (Part 2) and the incident channel's announcements."""

from __future__ import annotations

from messages.blocks import SlackMessage, actions, button, confirm_dialog, context, header, mention, section
from messages.ids import ActionId, EnvironmentButton, IncidentButton

QUESTION = ("Migration issue detected. *Is it a CRITICAL issue?*\n"
            "• *CRITICAL* — data corruption, loss of connectivity, FK violations → immediate full rollback\n"
            "• *MINOR* — a non-critical error → continue, try to fix\n"
            "• *UNSURE* — unclear severity → pause, contact a DBA, assess")


def channel_opened(incident_id: str, environment: str, channel: str, declared_by: str) -> SlackMessage:
    text = f"🚨 {incident_id} ({environment}) was declared by {mention(declared_by)}: follow it in <#{channel}>."
    return SlackMessage(text, [section(text)])


def severity_question(incident_id: str, environment: str) -> SlackMessage:
    value = IncidentButton(incident=incident_id).model_dump_json()
    blocks = [
        header(f"Assess {incident_id} · {environment}"),
        section(QUESTION),
        actions("severity",
                button("CRITICAL", ActionId.SEVERITY_CRITICAL, value, style="danger"),
                button("MINOR", ActionId.SEVERITY_MINOR, value),
                button("UNSURE", ActionId.SEVERITY_UNSURE, value)),
        context("Operators and approvers may answer. Every answer is recorded in the audit trail."),
    ]
    return SlackMessage(f"Assess {incident_id}: CRITICAL, MINOR or UNSURE?", blocks)


def severity_answered(incident_id: str, environment: str, choice: str, by: str) -> SlackMessage:
    """The question, redrawn without its buttons once answered."""
    text = f"*Assessed {choice.upper()}* by {mention(by)}"
    return SlackMessage(f"Assess {incident_id}: {choice.upper()} (by {mention(by)})",
                        [header(f"Assess {incident_id} · {environment}"), section(QUESTION), section(text)])


def carry_over_offer(incident_id: str, environment: str, inserted: int, kept_as: str) -> SlackMessage:
    """After the count: the rows inserted after the backup can be put back into live, gated like any change."""
    value = IncidentButton(incident=incident_id).model_dump_json()
    text = (f"↩️ {inserted:,} row(s) inserted after the backup are in `{kept_as}` and not in live. "
            f"`/rollback carry-over {environment} {incident_id}` (or the button) inserts them, after an approval; "
            "updated and deleted rows are never carried.")
    return SlackMessage(text, [
        section(text),
        actions("carry", button(f"Carry over {inserted:,} row(s)", ActionId.CARRY_OVER, value, confirm=confirm_dialog(
            "Carry the inserted rows over?", "A preview lists them by table; an approver decides before anything "
            "is inserted.", "Continue"))),
    ])


def critical_proposal(incident_id: str, environment: str, by: str) -> SlackMessage:
    """CRITICAL: the runbook says IMMEDIATE FULL ROLLBACK; one click starts it (operators only, same gates)."""
    value = IncidentButton(incident=incident_id).model_dump_json()
    text = (f"🔴 {mention(by)} assessed {incident_id} as *CRITICAL* (level 3). The runbook's answer is an "
            f"*immediate full rollback* of `{environment}` (Scenario 1).")
    blocks = [
        section(text),
        actions("proposal", button(f"Start full rollback of {environment}", ActionId.START_FULL, value, style="danger",
                                   confirm=confirm_dialog(f"Start the full rollback of {environment}?",
                                                          "The backup is restored aside first; an approver is asked "
                                                          "before anything live changes.", "Start"))),
        context("Same as `/rollback full " + environment + "`: operators only, one rollback per environment."),
    ]
    return SlackMessage(text.replace("*", ""), blocks)


def minor_recorded(incident_id: str, by: str) -> SlackMessage:
    text = (f"🟡 {mention(by)} assessed {incident_id} as *MINOR*: *continue and fix*. When it is fixed, "
            "press *Mark resolved* on the alert.")
    return SlackMessage(text.replace("*", ""), [section(text)])


def unsure_paged(incident_id: str, by: str, approvers: tuple[str, ...]) -> SlackMessage:
    who = ", ".join(mention(a) for a in approvers)
    text = (f"⏸️ {mention(by)} is *UNSURE* about {incident_id}: *paused*. {who}, please assess "
            "(the runbook: contact a DBA before going on).")
    return SlackMessage(text.replace("*", ""), [section(text)])


def escalated(incident_id: str, level: int, level_name: str, by: str, approvers: tuple[str, ...]) -> SlackMessage:
    who = ", ".join(mention(a) for a in approvers)
    text = f"⬆️ {mention(by)} raised {incident_id} to *level {level} — {level_name}*. {who}: you are notified."
    return SlackMessage(text.replace("*", ""), [section(text)])


def page(incident_id: str, channel: str, why: str) -> SlackMessage:
    """The direct message an approver gets when paged or notified."""
    text = f"📟 {incident_id} needs you: {why}. See <#{channel}>."
    return SlackMessage(text, [section(text)])


def leftover_copies(environment: str, copies: list[tuple[str, str]]) -> SlackMessage:
    """At start-up: restored copies that interrupted runs left behind, and a button to drop them."""
    listing = "\n".join(f"• `{name}` ({size})" for name, size in copies)
    text = (f"🧹 Found at start-up: {len(copies)} leftover restored cop{'y' if len(copies) == 1 else 'ies'} of "
            f"`{environment}`, left by interrupted or failed runs. They never became live and hold no data that "
            "is not in the backup.")
    value = EnvironmentButton(environment=environment).model_dump_json()
    blocks = [section(text), section(listing),
              actions("cleanup", button("🧹 Clean up (asks an approver)", ActionId.CLEAN_UP, value, confirm=confirm_dialog(
                  "Drop leftover copies?", "An approver is asked before anything is dropped. Live and the kept "
                  "failed copies are never touched.", "Ask an approver"))),
              context(f"Or later: `/rollback cleanup {environment}`.")]
    return SlackMessage(f"{text}\n{listing}", blocks)
