"""After a full rollback whose swap is done but whose application did not come back (start
failed, health never green, smoke checks failed): start it again and check it, from a button on
the run's message. The database needs nothing more; nothing here touches it, so no approval."""

from __future__ import annotations

from actions.config import Environment
from actions.engine.plan import Plan, PlanSpec, RunContext, RunOutcome, Step, nothing_to_reconcile, nothing_to_undo
from actions.plans import full as full_rollback
from actions.store.records import RunState


def outcome(ctx: RunContext, state: RunState, failed_step: str | None) -> RunOutcome:
    live = ctx.environment.database
    if state is RunState.SUCCEEDED:
        return RunOutcome(f"`{live}` holds the restored backup and the application is up and passes its checks.",
                       "Press *Mark resolved* on the alert when you agree.")
    return RunOutcome(f"`{live}` still holds the restored backup; only the application is left.",
                   "Fix what the ❌ step reports, then retry again.")


def build_plan(env: Environment, args: tuple[str, ...]) -> Plan:
    return Plan("restart", "Application restart", (
        Step("start_app", "Start the application", full_rollback.start_app),
        Step("smoke", "Run the smoke checks", full_rollback.smoke),
    ), abort=nothing_to_undo, outcome=outcome, reconcile=nothing_to_reconcile)


SPEC = PlanSpec("restart", "Application restart", build_plan, level=3)  # started by a button, not typed
