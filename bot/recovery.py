"""After a crash: the buttons on an interrupted run's message (start again, or abandon and clean
up), and the start-up search for restored copies that interrupted runs left behind.

Nothing is undone or restarted automatically: a person who has read where things stand decides,
and both paths go through the same gates as any run (operator to ask, approver to approve).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import ValidationError
from slack_bolt.async_app import AsyncApp

import readable
from actions.plans.cleanup import leftovers
from bot.commands import start_plan
from messages import replies
from messages.ids import ActionId, EnvironmentButton, RunButton
from messages.lifecycle import leftover_copies

if TYPE_CHECKING:
    from bot.app import Deps

log = logging.getLogger(__name__)


def register(app: AsyncApp, deps: Deps) -> None:
    @app.action(ActionId.RUN_AGAIN.value)
    async def run_again(ack, body, action, respond) -> None:
        await ack()
        user = body["user"]["id"]
        run = await _interrupted_run(deps, user, action, "run-again")
        if isinstance(run, str):
            return await _tell(respond, replies.not_possible(run))
        await _tell(respond, await start_plan(deps, user, run.plan, run.environment,
                                              tuple(run.facts.get("args", []))))

    @app.action(ActionId.RETRY_APP.value)
    async def retry_app(ack, body, action, respond) -> None:
        """The swap is done but the application is not back: start it and check it again (no approval:
        the database is not touched)."""
        await ack()
        user = body["user"]["id"]
        run = await _run_of(deps, user, action, "retry-app")
        if isinstance(run, str):
            return await _tell(respond, replies.not_possible(run))
        if run.ended_at is None or not (run.plan == "restart" or run.facts.get("swapped")):
            return await _tell(respond, replies.not_possible(f"run {run.id} did not leave a swapped database behind"))
        await _tell(respond, await start_plan(deps, user, "restart", run.environment, ()))

    @app.action(ActionId.CLEAN_UP.value)
    async def clean_up(ack, body, action, respond) -> None:
        await ack()
        user = body["user"]["id"]
        value = action.get("value") or ""
        try:  # from the start-up message: an environment
            environment = EnvironmentButton.model_validate_json(value).environment
        except ValidationError:  # from an interrupted run's message: that run's environment
            run = await _interrupted_run(deps, user, action, "clean-up")
            if isinstance(run, str):
                return await _tell(respond, replies.not_possible(run))
            environment = run.environment
            await deps.store.audit(user, "run.abandoned", environment=environment, incident_id=run.incident_id,
                                   run_id=run.id)
        await _tell(respond, await start_plan(deps, user, "cleanup", environment, ()))


async def _interrupted_run(deps: Deps, user: str, action: dict, what: str):
    """The run a recovery button names, if it is an ended, interrupted run of that incident; else why not."""
    run = await _run_of(deps, user, action, what)
    if isinstance(run, str):
        return run
    if run.ended_at is None or not (run.outcome or "").startswith("interrupted"):
        return f"run {run.id} was not interrupted"
    return run


async def _run_of(deps: Deps, user: str, action: dict, what: str):
    """The run a button names, if it belongs to the incident the button names; else why not."""
    try:
        button = RunButton.model_validate_json(action.get("value") or "")
    except ValidationError:
        await deps.store.audit(user, "button.tampered", outcome="refused", action_id=what,
                               value=(action.get("value") or "")[:200])
        return "this button's value is not one the bot made"
    run = await deps.store.run(button.run)
    if run is None or run.incident_id != button.incident:
        await deps.store.audit(user, "button.tampered", outcome="refused", action_id=what, run=button.run)
        return f"there is no run {button.run} in {button.incident}"
    return run


async def offer_cleanup(deps: Deps) -> None:
    """At start-up, after interrupted runs were reported: post each environment's leftover copies."""
    busy = {run.incident_id for run in await deps.store.runs(active=True)}
    for name, env in deps.settings.environments.items():
        try:
            found = await leftovers(env, busy)
        except Exception as exc:  # an unreachable server must not stop the bot from starting
            log.warning("could not look for leftover copies of %s: %s", name, deps.redact(str(exc).splitlines()[0]))
            continue
        if found:
            message = leftover_copies(name, [(copy, readable.size(size)) for copy, size in found])
            await deps.notifier.poster.post(deps.settings.bot.incident_channel, message)
            await deps.store.audit("bot", "leftovers.found", environment=name, copies=[copy for copy, _ in found])


async def _tell(respond, message) -> None:
    await respond(text=message.text, blocks=message.blocks, response_type="ephemeral", replace_original=False)
