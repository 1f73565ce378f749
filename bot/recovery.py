"""After a crash: the buttons on an interrupted run's message (start again, or abandon and clean
up), the retry of an application that did not come back after a swap, and the start-up post of
restored copies that interrupted runs left behind.

Nothing is undone or restarted automatically: a person who has read where things stand decides,
and every path goes through the same gates as any run (operator to ask, approver to approve). The
rules (was it interrupted, was the database swapped) are the service's.
"""

from __future__ import annotations

from pydantic import ValidationError
from slack_bolt.async_app import AsyncApp

import readable
from bot.answers import reply, tell
from bot.deps import Deps
from messages import replies
from messages.ids import ActionId, EnvironmentButton, RunButton
from messages.lifecycle import leftover_copies


def register(app: AsyncApp, deps: Deps) -> None:
    async def run_button(body, action, respond, what: str) -> RunButton | None:
        """The run a recovery button names, or None after answering (and auditing) a tampered value."""
        try:
            return RunButton.model_validate_json(action.get("value") or "")
        except ValidationError:
            await deps.service.audit(body["user"]["id"], "button.tampered", outcome="refused", action_id=what,
                                     value=(action.get("value") or "")[:200])
            await tell(respond, replies.not_possible("this button's value is not one the bot made"))
            return None

    @app.action(ActionId.RUN_AGAIN.value)
    async def run_again(ack, body, action, respond) -> None:
        await ack()
        if (button := await run_button(body, action, respond, "run-again")) is not None:
            actor = await deps.access.actor(body["user"]["id"])
            await tell(respond, reply(await deps.service.run_again(actor, button.incident, button.run), deps.settings))

    @app.action(ActionId.RETRY_APP.value)
    async def retry_app(ack, body, action, respond) -> None:
        await ack()
        if (button := await run_button(body, action, respond, "retry-app")) is not None:
            actor = await deps.access.actor(body["user"]["id"])
            await tell(respond, reply(await deps.service.retry_app(actor, button.incident, button.run), deps.settings))

    @app.action(ActionId.CLEAN_UP.value)
    async def clean_up(ack, body, action, respond) -> None:
        await ack()
        actor = await deps.access.actor(body["user"]["id"])
        try:  # from the start-up message: an environment
            environment = EnvironmentButton.model_validate_json(action.get("value") or "").environment
        except ValidationError:  # from an interrupted run's message: that run
            if (button := await run_button(body, action, respond, "clean-up")) is not None:
                await tell(respond, reply(await deps.service.abandon(actor, button.incident, button.run),
                                          deps.settings))
            return
        await tell(respond, reply(await deps.service.start(actor, "cleanup", environment), deps.settings))


async def offer_cleanup(deps: Deps) -> None:
    """At start-up, after interrupted runs were reported: post each environment's leftover copies."""
    for environment, copies in (await deps.service.leftover_copies()).items():
        message = leftover_copies(environment, [(copy, readable.size(size)) for copy, size in copies])
        deps.notifier.poster.post(deps.settings.bot.incident_channel, message)
