"""The `/rollback` slash command: parse, audit, authorise (in actions/), ack, delegate."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from slack_bolt.async_app import AsyncApp

import readable
from actions.backups.inspection import DiffReport
from actions.backups.take import BackupTaken
from actions.engine.runner import new_error_id
from actions.results import AlreadyRunning, Declared, InvalidArguments, Refused, Started, UnknownEnvironment
from actions.store.records import Role
from actions.verbs import PLANS
from messages import diff as diff_message
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
        # Only verbs the ack accepted: `remedy` is a plan too, but only its button starts it; typed,
        # it got "I don't know the verb" and must not then be run anyway.
        handler = (HANDLERS.get(verb) or (plan_verb(verb) if verb in PLANS else None)) if verb in replies.VERBS else None
        if handler is None:
            return
        try:
            message = await handler(deps, user, args)
        except Exception:
            error_id = new_error_id()
            log.exception("/rollback %s failed [%s]", text, error_id)
            message = replies.internal_error(error_id)
        if isinstance(message, Public):
            await respond(text=message.message.text, blocks=message.message.blocks, response_type="in_channel")
        else:
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
    return await start_plan(deps, user, "full", environment, ())


def plan_verb(name: str):
    """`/rollback <name> <env> [args…]` for a partial rollback: the plan checks its own arguments."""
    async def handler(deps: Deps, user: str, args: list[str]):
        if not args:
            return replies.usage_error(name, "Name one environment")
        return await start_plan(deps, user, name, args[0].lower(), tuple(args[1:]))
    return handler


async def start_plan(deps: Deps, user: str, name: str, environment: str, args: tuple[str, ...]):
    actor = await deps.access.actor(user)
    match await deps.service.start(actor, name, environment, args):
        case Started(incident=incident, run=run):
            return replies.started(PLANS[name].title, run.environment, incident.id, incident.channel)
        case InvalidArguments(reason=reason):
            return replies.usage_error(name, reason[0].upper() + reason[1:])
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


def inspect_verb(verb: str):
    """`/rollback diff <env>` and `/rollback backup <env>`: no incident, no approval."""
    async def handler(deps: Deps, user: str, args: list[str]):
        if len(args) != 1:
            return replies.usage_error(verb, "Name one environment")
        result = await deps.service.inspect(await deps.access.actor(user), verb, args[0].lower())
        match result:
            case str():
                return replies.problem(result)
            case Refused(reason=reason, allowed=allowed):
                return replies.refused(reason, list(allowed))
            case UnknownEnvironment(environment=environment, known=known):
                return replies.unknown_environment(environment, list(known))
            case DiffReport():
                return diff_message.schema_diff(result.environment, result.database, result.backup, result.source,
                                                result.diff)
            case BackupTaken():
                env = deps.settings.environments[args[0].lower()]
                return diff_message.backup_taken(env.name, str(result.path.relative_to(env.backup_dir.parent)),
                                                 readable.size(result.size), result.seconds, result.tables, result.rows,
                                                 [b.path.parent.name for b in result.beyond_keep], env.keep_backups)
    return handler


class Public:
    """A reply the whole channel sees (a diagnose report, whose fix buttons others may use)."""

    def __init__(self, message):
        self.message = message


async def _diagnose(deps: Deps, user: str, args: list[str]):
    from actions.diagnose.run import diagnose
    from messages.diagnose import diagnosis_message

    if len(args) != 1:
        return replies.usage_error("diagnose", "Name one environment")
    environment = args[0].lower()
    if environment not in deps.settings.environments:
        return replies.unknown_environment(environment, list(deps.settings.environments))
    actor = await deps.access.actor(user)
    if not actor.has(Role.OPERATOR):
        await deps.store.audit(user, "diagnose.refused", outcome="refused", environment=environment,
                               reason="not an operator")
        return replies.refused("only operators may run diagnostics", list(deps.settings.bot.operators))
    report = await diagnose(deps.settings.environments[environment])
    await deps.store.audit(user, "diagnose", environment=environment, worst=report.worst.value,
                           checks={c.key: c.status.value for c in report.checks})
    return Public(diagnosis_message(report))


async def _watch(deps: Deps, user: str, args: list[str]):
    from bot.watching import watch_command  # the watch registry and its posting live there

    return await watch_command(deps, user, args)


# The other scenarios' verbs (views, columns, …) are found in PLANS when a command arrives.
HANDLERS = {"full": _full, "diff": inspect_verb("diff"), "backup": inspect_verb("backup"), "status": _status,
            "declare": _declare, "assess": _assess, "report": _report, "diagnose": _diagnose,
            "watch": _watch}
ENVIRONMENT_VERBS = {"full", "declare", "assess", "diff", "backup", *replies.VERBS} - {"status", "help", "report"}
