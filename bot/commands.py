"""The `/rollback` slash command: ack within Slack's 3 seconds, resolve the user's roles, hand the
words to the service (which audits, checks and carries them out), reply with its answer."""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncApp

from actions.results import new_error_id
from actions.verbs import typed_verbs
from bot.answers import Public, reply
from bot.deps import Deps
from messages import replies

log = logging.getLogger(__name__)


def register(app: AsyncApp, deps: Deps) -> None:
    known = [verb.name for verb in typed_verbs()]

    @app.command("/rollback")
    async def rollback(ack, command, respond) -> None:
        text = " ".join(command.get("text", "").split())
        user, verb, args = command["user_id"], *_split(text)
        # Ack first: instant answers (help, an unknown verb) go in the ack itself.
        instant = verb == "help" or verb not in known
        if verb == "help":
            await ack(**_ephemeral(reply(deps.service.help(), deps.settings)))
        elif instant:
            await ack(**_ephemeral(replies.unknown_verb(verb, known)))
        else:
            await ack()
        try:
            actor = await deps.access.actor(user)
            answer = await deps.service.command(actor, verb, args, text=text, channel=command.get("channel_id"))
            if instant:
                return  # answered in the ack; the command is audited all the same
            message = reply(answer, deps.settings)
        except Exception:
            error_id = new_error_id()
            log.exception("/rollback %s failed [%s]", text, error_id)
            message = replies.internal_error(error_id)
        if isinstance(message, Public):
            await respond(text=message.message.text, blocks=message.message.blocks, response_type="in_channel")
        else:
            await respond(**_ephemeral(message))


def _split(text: str) -> tuple[str, list[str]]:
    words = text.split(" ") if text else []
    return (words[0].lower(), words[1:]) if words else ("help", [])


def _ephemeral(message) -> dict:
    return {"text": message.text, "blocks": message.blocks, "response_type": "ephemeral"}
