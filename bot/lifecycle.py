"""Incident buttons and the report modal: parse, ack, resolve roles, hand to the service (actions/)."""

from __future__ import annotations

import logging
import re

from pydantic import ValidationError
from slack_bolt.async_app import AsyncApp

from actions.results import Recorded
from actions.store.records import Incident
from bot.answers import reply, tell
from bot.deps import Deps
from messages import replies
from messages.ids import ActionId, CallbackId, IncidentButton, RemedyButton
from messages.postincident import report_modal

log = logging.getLogger(__name__)
REMEDY_IDS = re.compile(f"^{ActionId.REMEDY}(-\\d+)?$")
SEVERITY = {ActionId.SEVERITY_CRITICAL: "critical", ActionId.SEVERITY_MINOR: "minor", ActionId.SEVERITY_UNSURE: "unsure"}


def register(app: AsyncApp, deps: Deps) -> None:
    async def button_incident(body, action, respond) -> str | None:
        """The incident a button names, or None after telling the clicker (and the audit) it was not valid.
        Callers test `is not None`: an empty id is still an answer to give ("no incident ``"), not silence."""
        try:
            return IncidentButton.model_validate_json(action.get("value") or "").incident
        except ValidationError:
            # `action_id=`, not `action=`: that is audit()'s own second parameter (a TypeError here
            # left a tampered click unanswered and unaudited).
            await deps.service.audit(body["user"]["id"], "button.tampered", outcome="refused",
                                     action_id=action.get("action_id"), value=(action.get("value") or "")[:200])
            await tell(respond, replies.approval_not_found())
            return None

    def desk_button(decide):
        """A listener for a button whose click is one call on the desk: `decide(desk, actor, incident)`.
        (Bolt fills listener arguments by name, so per-button data is bound here, not as a parameter.)"""
        async def listener(ack, body, action, respond) -> None:
            await ack()
            if (incident := await button_incident(body, action, respond)) is not None:
                actor = await deps.access.actor(body["user"]["id"])
                await tell(respond, reply(await decide(deps.service.desk, actor, incident), deps.settings))
        return listener

    for action_id, choice in SEVERITY.items():
        app.action(action_id.value)(desk_button(
            lambda desk, actor, incident, choice=choice: desk.choose_severity(actor, incident, choice)))
    app.action(ActionId.ESCALATE.value)(desk_button(lambda desk, actor, incident: desk.escalate(actor, incident)))
    app.action(ActionId.RESOLVE.value)(desk_button(lambda desk, actor, incident: desk.resolve(actor, incident)))

    @app.action(ActionId.START_FULL.value)
    async def start(ack, body, action, respond) -> None:
        await ack()
        if (incident_id := await button_incident(body, action, respond)) is not None:
            actor = await deps.access.actor(body["user"]["id"])
            await tell(respond, reply(await deps.service.start_full_for(actor, incident_id), deps.settings))

    @app.action(ActionId.CARRY_OVER.value)
    async def carry_over(ack, body, action, respond) -> None:
        await ack()
        if (incident_id := await button_incident(body, action, respond)) is not None:
            actor = await deps.access.actor(body["user"]["id"])
            await tell(respond, reply(await deps.service.carry_over_for(actor, incident_id), deps.settings))

    @app.action(REMEDY_IDS)
    async def remedy(ack, body, action, respond) -> None:
        """A diagnose finding's fix: the clicker asks for it (operators only); an approver decides."""
        await ack()
        try:
            button = RemedyButton.model_validate_json(action.get("value") or "")
        except ValidationError:
            await deps.service.audit(body["user"]["id"], "button.tampered", outcome="refused", action_id="remedy",
                                     value=(action.get("value") or "")[:200])
            return await tell(respond, replies.approval_not_found())
        actor = await deps.access.actor(body["user"]["id"])
        answer = await deps.service.start_remedy(actor, button.environment, button.kind, button.target)
        await tell(respond, reply(answer, deps.settings))

    @app.action(re.compile(f"^{ActionId.SIGN_OFF_PREFIX}"))
    async def sign_off(ack, body, action, respond) -> None:
        await ack()
        if (incident := await button_incident(body, action, respond)) is not None:
            role = action["action_id"].removeprefix(ActionId.SIGN_OFF_PREFIX)
            actor = await deps.access.actor(body["user"]["id"])
            await tell(respond, reply(await deps.service.desk.sign_off(actor, incident, role), deps.settings))

    @app.action(re.compile(f"^{ActionId.CHECKLIST_PREFIX}"))
    async def checklist(ack, body, action, respond) -> None:
        await ack()
        # The block id is "checklist|<incident>|<group>"; anything else names no incident (and must
        # not crash the listener, which would leave the click unanswered).
        block_id = action.get("block_id") or ""
        parts = block_id.split("|", 2)
        incident, group = parts[1:] if len(parts) == 3 else (block_id, "")
        selected = {option.get("value") for option in action.get("selected_options") or [] if isinstance(option, dict)}
        actor = await deps.access.actor(body["user"]["id"])
        result = await deps.service.desk.tick(actor, incident, group, selected)
        if not isinstance(result, Recorded):
            await tell(respond, reply(result, deps.settings))

    @app.action(ActionId.EDIT_REPORT.value)
    async def edit_report(ack, body, action, respond, client) -> None:
        await ack()
        if (incident_id := await button_incident(body, action, respond)) is not None:
            actor = await deps.access.actor(body["user"]["id"])
            incident = await deps.service.report_form(actor, incident_id)
            if not isinstance(incident, Incident):
                return await tell(respond, reply(incident, deps.settings))
            await client.views_open(trigger_id=body["trigger_id"], view=report_modal(
                incident.id, incident.root_cause, incident.what_failed, incident.prevention))

    async def not_ours(body) -> bool:
        return not _handled_elsewhere(((body.get("actions") or [{}])[0]).get("action_id") or "")

    # Without this, Bolt answers 404 to a button no listener takes (one from an older version of
    # the bot, or made up), and Slack shows the clicker only a warning sign.
    @app.action(re.compile(""), matchers=[not_ours])
    async def unknown_button(ack, body, action, respond) -> None:
        await ack()
        await deps.service.audit(body["user"]["id"], "button.unknown", outcome="refused",
                                 action_id=str(action.get("action_id"))[:200], value=str(action.get("value") or "")[:200])
        await tell(respond, replies.unknown_button())

    @app.view(CallbackId.REPORT_MODAL.value)
    async def save_report(ack, body, view) -> None:
        # Saving takes milliseconds, so the modal's answer can carry a refusal back into the form.
        incident = IncidentButton.model_validate_json(view["private_metadata"]).incident
        values = {block: fields["value"].get("value") or "" for block, fields in view["state"]["values"].items()}
        actor = await deps.access.actor(body["user"]["id"])
        result = await deps.service.desk.save_notes(
            actor, incident, root_cause=values.get("root_cause", ""), what_failed=values.get("what_failed", ""),
            prevention=values.get("prevention", ""))
        if isinstance(result, Recorded):
            return await ack()
        reason = getattr(result, "reason", None) or f"unknown incident {incident}"
        await ack(response_action="errors", errors={"root_cause": f"Not saved: {reason}."})


def _handled_elsewhere(action_id: str) -> bool:
    """Whether a listener of its own takes this id: every id is an ActionId (two of them prefixes,
    and remedy ids carry a number). Order-independent, so recovery's buttons, registered after
    this module's, still reach their listeners."""
    prefixes = (ActionId.CHECKLIST_PREFIX.value, ActionId.SIGN_OFF_PREFIX.value)
    return action_id in set(ActionId) or action_id.startswith(prefixes) or REMEDY_IDS.search(action_id) is not None
