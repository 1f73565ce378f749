"""The `/rollback` slash command: parse, audit, authorise (in actions/), ack, delegate."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from slack_bolt.async_app import AsyncApp

from actions.results import AlreadyRunning, Declared, Refused, Started, UnknownEnvironment
from actions.runner import new_error_id
from messages import replies
from messages.views import StatusLine

if TYPE_CHECKING:
    from bot.app import Deps

log = logging.getLogger(__name__)


def register(app: AsyncApp, deps: Deps) -> None:
    @app.command("/rollback")
    async def rollback(ack, command, respond) -> None:
        text = " ".join(command.get("text", "").split())
        user, verb, args = command["user_id"], *_split(text)
        # Ack first (Slack wants an answer within 3 s): instant answers go in the ack itself.
        if verb == "help":
            await ack(**_reply(replies.help_message(list(deps.settings.environments))))
        elif verb not in replies.VERBS:
            await ack(**_reply(replies.unknown_verb(verb)))
        else:
            await ack()
        environment = args[0].lower() if verb in ENVIRONMENT_VERBS and args else None
        await deps.store.audit(user, "command", environment=environment, text=text, channel=command.get("channel_id"))
        if verb not in HANDLERS:
            return
        try:
            message = await HANDLERS[verb](deps, user, args)
        except Exception:
            error_id = new_error_id()
            log.exception("/rollback %s failed [%s]", text, error_id)
            message = replies.internal_error(error_id)
        await respond(**_reply(message))


def _split(text: str) -> tuple[str, list[str]]:
    words = text.split(" ") if text else []
    return (words[0].lower(), words[1:]) if words else ("help", [])


def _reply(message) -> dict:
    return {"text": message.text, "blocks": message.blocks, "response_type": "ephemeral"}


async def _full(deps: Deps, user: str, args: list[str]):
    if len(args) != 1:
        problem = "Name one environment" if not args else f"Unexpected words after the environment: {' '.join(args[1:])}"
        return replies.usage_error("full", problem)
    return await start_full(deps, user, args[0].lower())


async def start_full(deps: Deps, user: str, environment: str):
    """Start a full rollback (the slash command and the CRITICAL proposal's button share this)."""
    actor = await deps.access.actor(user)
    match await deps.service.start(actor, "full", environment):
        case Started(incident=incident, run=run):
            return replies.started("Full rollback", run.environment, incident.id, incident.channel)
        case AlreadyRunning(incident=incident, run=run, current_step=step):
            return replies.already_running(run.environment, incident.id, run.requested_by, step, incident.channel)
        case Refused(reason=reason, allowed=allowed):
            return replies.refused(reason, list(allowed))
        case UnknownEnvironment(environment=environment, known=known):
            return replies.unknown_environment(environment, list(known))


async def _status(deps: Deps, user: str, args: list[str]):
    if args:
        return replies.usage_error("status", f"Unexpected words: {' '.join(args)}")
    lines = [StatusLine(incident_id=incident.id, environment=incident.environment,
                        alert_status=incident.alert_status.value, declared_at=incident.declared_at,
                        run_id=run and run.id, run_state=run and run.state.value, current_step=step,
                        requested_by=run and run.requested_by)
             for incident, run, step in await deps.store.overview()]
    return replies.status_message(lines)


async def _declare(deps: Deps, user: str, args: list[str], *, assess: bool = False):
    verb = "assess" if assess else "declare"
    if not args or (assess and len(args) > 1):
        return replies.usage_error(verb, "Name one environment" if not args else f"Unexpected words: {' '.join(args[1:])}")
    actor = await deps.access.actor(user)
    summary = " ".join(args[1:]) or None
    match await deps.service.desk.declare(actor, args[0].lower(), summary, assess=assess):
        case Declared(incident=incident, new=new):
            channel = (await deps.store.incident(incident.id)).channel
            return replies.declared(incident.id, incident.environment, channel, new)
        case Refused(reason=reason, allowed=allowed):
            return replies.refused(reason, list(allowed))
        case UnknownEnvironment(environment=environment, known=known):
            return replies.unknown_environment(environment, list(known))


async def _assess(deps: Deps, user: str, args: list[str]):
    return await _declare(deps, user, args, assess=True)


async def _report(deps: Deps, user: str, args: list[str]):
    if len(args) != 1:
        return replies.usage_error("report", "Name one incident, like INC-20261124-0001")
    incident = await deps.service.regenerate_report(await deps.access.actor(user), args[0].upper())
    if incident is None:
        return replies.unknown_incident(args[0])
    return replies.report_posted(incident.id, incident.channel)


HANDLERS = {"full": _full, "status": _status, "declare": _declare, "assess": _assess, "report": _report}
ENVIRONMENT_VERBS = {"full", "declare", "assess"}  # verbs whose first argument is an environment
