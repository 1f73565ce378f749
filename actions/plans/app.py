"""`/rollback app <env> [ref]` (Scenario 4): roll the application back, not the database.

Runs the environment's `deploy` commands with `{ref}` replaced by the release to go back to (the
one named, else what `previous_release` prints), then waits for health and runs the smoke checks.
Unlike the runbook, nobody's checkout is `git reset --hard`: deploying a release is the deploy
tool's job.
"""

from __future__ import annotations

import readable
from actions.application import control as appctl
from actions.config import Environment
from actions.engine.plan import (
    ApprovalPreview,
    Plan,
    PlanSpec,
    RunContext,
    RunOutcome,
    Step,
    StepFailed,
    StepOutcome,
)
from actions.engine.processes import ProcessTimeout, run_process
from actions.plans import partial
from actions.store.records import RunState

REF = "{ref}"


async def check_args(env: Environment, args: tuple[str, ...]) -> str | None:
    if not env.deploy:
        return f"no `deploy` command is configured for {env.name}"
    if len(args) > 1:
        return "name at most one release"
    if not args and not env.previous_release:
        return f"name the release to go back to (no `previous_release` command is configured for {env.name})"
    return None


async def preflight(ctx: RunContext) -> StepOutcome:
    env, args = ctx.environment, ctx.facts.get("args", [])
    if args:
        ref, how = args[0], "as named"
    else:
        try:
            result = await run_process(env.previous_release, timeout=env.command_timeout_seconds)
        except (FileNotFoundError, ProcessTimeout) as problem:
            raise StepFailed(f"`previous_release` could not run: {problem}") from None
        lines = [line.strip() for line in result.output_tail if line.strip()]
        if not result.ok or not lines:
            raise StepFailed(f"`{' '.join(env.previous_release)}` did not print a release (exit {result.returncode})")
        ref, how = lines[-1], f"from `{' '.join(env.previous_release)}`"
    commands = [[part.replace(REF, ref) for part in argv] for argv in env.deploy]
    return StepOutcome(f"release {ref} ({how}); will run: " + "; ".join(" ".join(c) for c in commands),
                       {"ref": ref, "commands": commands})


async def deploy(ctx: RunContext) -> StepOutcome:
    done = []
    for argv in ctx.facts["commands"]:
        try:
            result = await run_process(argv, timeout=ctx.environment.command_timeout_seconds)
        except (FileNotFoundError, ProcessTimeout) as problem:
            raise StepFailed(f"`{argv[0]}`: {problem}") from None
        if not result.ok:
            raise StepFailed(f"`{' '.join(argv)}` exited with {result.returncode}: {result.last_line()}")
        done.append(f"`{' '.join(argv)}` ({readable.duration(result.seconds)})")
    await ctx.remember({"deployed": True})
    return StepOutcome("ran " + ", ".join(done))


async def healthy(ctx: RunContext) -> StepOutcome:
    return StepOutcome(await appctl.wait_healthy(ctx.environment))


async def smoke(ctx: RunContext) -> StepOutcome:
    return StepOutcome(await appctl.run_smoke_checks(ctx.environment))


def preview(ctx: RunContext) -> ApprovalPreview:
    return ApprovalPreview(
        title=f"Deploy release {ctx.facts['ref']} of the {ctx.environment.name} application",
        actions=(*(f"Run `{' '.join(c)}`" for c in ctx.facts["commands"]),
                 "Wait for the health check, run the smoke checks", "The database is not touched"),
        facts=(("Release", ctx.facts["ref"]), ("Requested by", f"<@{ctx.run.requested_by}>")),
        confirm=f"Deploy {ctx.facts['ref']} to {ctx.environment.name}?")


def outcome(ctx: RunContext, state: RunState, failed_step: str | None) -> RunOutcome:
    if state is RunState.SUCCEEDED:
        return RunOutcome(f"Release {ctx.facts['ref']} is deployed and healthy; the database was not touched.")
    if ctx.facts.get("deployed"):
        return RunOutcome(f"Release {ctx.facts.get('ref')} was deployed; the database was not touched.",
                       "The application did not pass its checks: read the ❌ step and the application's logs.")
    return RunOutcome("Nothing was deployed; the database was not touched.",
                   "Fix what the ❌ step reports, then run the command again." if state.failed else "")


def build_plan(env: Environment, args: tuple[str, ...]) -> Plan:
    return partial.partial_plan(
        "app", "Application rollback",
        Step("preflight", "Preflight: the release to deploy", preflight),
        Step("deploy", "Deploy the release", deploy, destructive=True, preview=preview),
        Step("health", "Wait for the application's health", healthy),
        Step("smoke", "Run the smoke checks", smoke),
        outcome=outcome)


SPEC = PlanSpec("app", "Application rollback", build_plan, check_args)
