"""The Approve and Deny buttons. The decision and its authorisation live in actions/ (the runner)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import ValidationError
from slack_bolt.async_app import AsyncApp

from actions.results import AlreadyDecided, ApprovalNotFound, Decided, Refused
from messages import replies
from messages.ids import ActionId, ApprovalButton

if TYPE_CHECKING:
    from bot.app import Deps

log = logging.getLogger(__name__)


def register(app: AsyncApp, deps: Deps) -> None:
    async def decide(ack, body, action, respond, approve: bool) -> None:
        await ack()
        user = body["user"]["id"]
        try:
            button = ApprovalButton.model_validate_json(action.get("value") or "")
        except ValidationError:
            await deps.store.audit(user, "approval.tampered", outcome="refused", value=(action.get("value") or "")[:200])
            return await _tell(respond, replies.approval_not_found())
        actor = await deps.access.actor(user)
        match await deps.service.decide(button.approval, actor, approve, incident_id=button.incident):
            case Decided():
                pass  # the approval message is updated for everyone by the notifier
            case AlreadyDecided(approval=approval):
                await _tell(respond, replies.decision_too_late(approval.state.value, approval.decided_by))
            case Refused(reason=reason, allowed=allowed):
                await _tell(respond, replies.refused(reason, list(allowed)))
            case ApprovalNotFound():
                await _tell(respond, replies.approval_not_found())

    @app.action(ActionId.APPROVE.value)
    async def approve(ack, body, action, respond) -> None:
        await decide(ack, body, action, respond, approve=True)

    @app.action(ActionId.DENY.value)
    async def deny(ack, body, action, respond) -> None:
        await decide(ack, body, action, respond, approve=False)


async def _tell(respond, message) -> None:
    """An ephemeral answer to the clicker; the approval message itself stays as it is."""
    await respond(text=message.text, blocks=message.blocks, response_type="ephemeral", replace_original=False)
