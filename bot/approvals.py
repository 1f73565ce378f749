"""The Approve and Deny buttons. The decision and its authorisation live in actions/ (the runner)."""

from __future__ import annotations

from pydantic import ValidationError
from slack_bolt.async_app import AsyncApp

from bot.answers import reply, tell
from bot.deps import Deps
from messages import replies
from messages.ids import ActionId, ApprovalButton


def register(app: AsyncApp, deps: Deps) -> None:
    async def decide(ack, body, action, respond, approve: bool) -> None:
        await ack()
        user = body["user"]["id"]
        try:
            button = ApprovalButton.model_validate_json(action.get("value") or "")
        except ValidationError:
            await deps.service.audit(user, "approval.tampered", outcome="refused",
                                     value=(action.get("value") or "")[:200])
            return await tell(respond, replies.approval_not_found())
        actor = await deps.access.actor(user)
        answer = await deps.service.decide(button.approval, actor, approve, incident_id=button.incident)
        await tell(respond, reply(answer, deps.settings))  # a decision itself updates the approval message

    @app.action(ActionId.APPROVE.value)
    async def approve(ack, body, action, respond) -> None:
        await decide(ack, body, action, respond, approve=True)

    @app.action(ActionId.DENY.value)
    async def deny(ack, body, action, respond) -> None:
        await decide(ack, body, action, respond, approve=False)
