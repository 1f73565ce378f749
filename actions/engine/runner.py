"""The runbook engine: executes a plan step by step, durably, behind approval gates.

Every transition is written to the store first and announced second. At a destructive step the
runner waits until an approval is recorded; a denial, even one that arrives while a harmless
step is still running, cancels that step and undoes the preparations (`Plan.abort`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from actions.config import Settings
from actions.engine.approvals import Approvals, Denied
from actions.engine.boundaries import boundary
from actions.engine.events import (
    ApprovalDecided,
    Emit,
    IncidentChanged,
    RunEnded,
    RunStarted,
    StepChanged,
)
from actions.engine.metrics import EngineMetrics, RestoreRate
from actions.engine.plan import Plan, RunContext, RunOutcome, Step, StepFailed
from actions.engine.progress import ProgressView, RestoreProgress
from actions.redact import Redactor
from actions.results import new_error_id
from actions.store.records import (
    AlertStatus,
    Approval,
    ApprovalState,
    Incident,
    IncidentStatus,
    Run,
    RunState,
    StepState,
)
from actions.store.sqlite import AsyncStore

log = logging.getLogger(__name__)


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class Runner:
    """Runs plans as asyncio tasks, one per run, behind the approval gates of `approvals`."""

    def __init__(self, settings: Settings, store: AsyncStore, emit: Emit, redactor: Redactor,
                 metrics: EngineMetrics | None = None):
        self.settings = settings
        self.store = store
        self.emit = emit
        self.redact = redactor
        self.metrics = metrics or EngineMetrics()
        self.approvals = Approvals(settings, store, emit, redactor, self._step_transition)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._progress: dict[str, tuple[str, RestoreProgress]] = {}  # run id -> (environment, its running step's progress)

    # -- starting and stopping -----------------------------------------------------------------

    def launch(self, plan: Plan, incident: Incident, run: Run) -> asyncio.Task[None]:
        """Start executing `plan` for a run the store has just opened."""
        task = asyncio.create_task(self._execute(plan, incident, run), name=f"run {run.id}")
        self._tasks[run.id] = task
        self.metrics.runs_active.inc()

        def ended(_: asyncio.Task) -> None:
            self._tasks.pop(run.id, None)
            self.metrics.runs_active.dec()
        task.add_done_callback(ended)
        return task

    async def wait_idle(self) -> None:
        """Wait until every run launched so far has ended (tests and graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def shutdown(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    # -- execution -----------------------------------------------------------------------------

    def _context(self, incident: Incident, run: Run) -> RunContext:
        ctx = RunContext(
            settings=self.settings, environment=self.settings.environments[run.environment],
            store=self.store, incident=incident, run=run, facts=dict(run.facts),
            remember=lambda facts: self._remember(ctx, facts),
            announce=lambda **values: self._announce(ctx, **values),
            track=lambda progress: self._progress.__setitem__(run.id, (run.environment, progress)),
            emit=self.emit,
        )
        return ctx

    def progress_of(self, run_id: str, step_title: str) -> ProgressView | None:
        """The progress of the step now running in `run_id`, if that step reports any."""
        _, progress = self._progress.get(run_id, (None, None))
        return progress.view(step_title) if progress else None

    def restore_rates(self) -> list[RestoreRate]:
        """The restores under way, for the metrics."""
        return [progress.rate(environment) for environment, progress in self._progress.values()]

    async def report_interrupted(self, plan_for: Callable[[Run], Plan]) -> None:
        """End the runs a previous process left running, saying where each stopped and what is live.

        Nothing is undone automatically: after a crash a person should look before anything is
        dropped or restarted.
        """
        for run in await self.store.runs(active=True):
            if run.id in self._tasks:
                continue
            ctx = self._context(await self.store.incident(run.incident_id), run)
            steps = await self.store.steps(run.id)
            under_way = [s for s in steps if s.state in (StepState.RUNNING, StepState.WAITING)]
            for record in under_way:
                await self.store.set_step(run.id, record.key, StepState.FAILED,
                                          "interrupted: the bot stopped while this step was under way")
            if under_way:
                where = f"during “{under_way[0].title}”"
            else:
                done = [s for s in steps if s.state is StepState.SUCCEEDED]
                where = f"after “{done[-1].title}”" if done else "before its first step"
            plan = plan_for(run)
            await self._safely(plan.reconcile(ctx), "checking where the databases stand")
            outcome = plan.outcome(ctx, RunState.INTERRUPTED, under_way[0].key if under_way else None)
            await self._end(ctx, RunState.INTERRUPTED, f"interrupted: the bot stopped {where}", outcome, title=plan.title)

    async def _execute(self, plan: Plan, incident: Incident, run: Run) -> None:
        ctx = self._context(incident, run)
        groups = plan.approval_groups()
        ask_after = {group[0].ask_approval_after: index for index, group in groups.items()}
        asked: dict[int, Approval] = {}
        current: Step | None = None
        error_id: str | None = None
        try:
            self.emit(RunStarted(incident, run, plan.title, tuple(await self.store.steps(run.id))))
            for index, step in enumerate(plan.steps):
                current = step
                if index in groups:
                    if index not in asked:  # not asked early: ask now
                        asked[index] = await self.approvals.ask(ctx, plan, groups[index])
                    asked[index] = await self.approvals.wait(ctx, plan, asked[index], groups[index])
                await self._run_step(ctx, step, pending=list(asked.values()))
                await self.approvals.raise_if_denied(asked.values())
                if step.key in ask_after and ask_after[step.key] not in asked:
                    group_index = ask_after[step.key]
                    asked[group_index] = await self.approvals.ask(ctx, plan, groups[group_index])
        except Denied as denied:
            state, reason, failed_step = RunState.DENIED, self.approvals.why_not(denied.approval), None
        except asyncio.CancelledError:
            raise  # the bot is stopping: the run stays open in the store for a restart to report
        except Exception as exc:
            state, failed_step = RunState.FAILED, current.key if current else None
            if isinstance(exc, StepFailed):
                reason = self.redact(str(exc))
            else:
                error_id = new_error_id()
                log.exception("%s: step %s failed unexpectedly [%s]", run.id, failed_step, error_id)
                reason = self.redact(f"unexpected {type(exc).__name__}: {exc}".splitlines()[0]) + f" (error id {error_id})"
            if current is not None:
                await self._step_transition(ctx, current, StepState.FAILED, reason)
        else:
            await self._end(ctx, RunState.SUCCEEDED, "completed", plan.outcome(ctx, RunState.SUCCEEDED, None),
                            title=plan.title)
            return
        finally:
            self.approvals.forget(asked.values())
        await self._safely(plan.reconcile(ctx), "checking where the databases stand")
        cleanup = await self._safely(plan.abort(ctx), "cleaning up after the rollback")
        outcome = plan.outcome(ctx, state, failed_step)
        outcome = RunOutcome(f"{outcome.live_state} {cleanup}".strip(), outcome.next_steps)
        await self._end(ctx, state, reason, outcome, error_id, title=plan.title)

    async def _run_step(self, ctx: RunContext, step: Step, pending: list[Approval]) -> None:
        await self._step_transition(ctx, step, StepState.RUNNING)
        boundary(ctx.run.plan, step.key, "started")
        work = asyncio.create_task(step.run(ctx), name=f"{ctx.run.id} {step.key}")
        watched = {self.approvals.decision(a.id): a for a in pending
                   if step.interruptible and a.state is ApprovalState.PENDING}
        try:
            while True:
                done, _ = await asyncio.wait({work, *watched}, return_when=asyncio.FIRST_COMPLETED)
                for future in done - {work}:
                    watched.pop(future)
                    if future.result().state is ApprovalState.DENIED:
                        raise Denied(future.result())
                if work in done:
                    break
        except Denied:
            await _cancel(work)
            await self._step_transition(ctx, step, StepState.CANCELLED, "stopped: the rollback was denied")
            raise
        except asyncio.CancelledError:
            await _cancel(work)  # the bot is stopping; the step stays "running" for a restart to report
            raise
        finally:
            _, progress = self._progress.pop(ctx.run.id, (None, None))
        if progress is not None and not work.cancelled() and work.exception() is None:
            self.metrics.restore_rate(progress.rate(ctx.run.environment))  # the last restore's figures stay
        outcome = work.result()  # raises the step's own exception
        boundary(ctx.run.plan, step.key, "acted")
        if outcome.facts:
            await self._remember(ctx, outcome.facts)
        await self._step_transition(ctx, step, StepState.SUCCEEDED, outcome.detail)

    async def _step_transition(self, ctx: RunContext, step: Step, state: StepState, detail: str | None = None) -> None:
        detail = None if detail is None else self.redact(detail)
        record = await self.store.set_step(ctx.run.id, step.key, state, detail)
        if state in (StepState.SUCCEEDED, StepState.FAILED, StepState.CANCELLED):
            self.metrics.step_ended(ctx.run.plan, step.key, state.value, record.seconds)
        if state is not StepState.WAITING:
            await self.store.audit("bot", f"step.{state.value.replace(' ', '_')}", environment=ctx.run.environment,
                                   incident_id=ctx.incident.id, run_id=ctx.run.id, step=step.key, detail=detail)
        self.emit(StepChanged(ctx.incident, await self.store.run(ctx.run.id), record))

    async def _remember(self, ctx: RunContext, facts: dict[str, Any]) -> None:
        ctx.facts.update(facts)
        await self.store.merge_facts(ctx.run.id, facts)

    async def _announce(self, ctx: RunContext, **values: Any) -> None:
        """A step changed the incident (status, app stopped): persist it, then tell the channel."""
        app_stopped = values.pop("app_stopped", None)
        if app_stopped is not None:
            await self._remember(ctx, {"app_stopped": app_stopped})
        if values:
            ctx.incident = await self.store.update_incident(ctx.incident.id, **values)
        self.emit(IncidentChanged(ctx.incident, await self.store.run(ctx.run.id), bool(ctx.facts.get("app_stopped"))))

    async def _end(self, ctx: RunContext, state: RunState, reason: str, outcome: RunOutcome,
                   error_id: str | None = None, *, title: str = "") -> None:
        for record in await self.store.steps(ctx.run.id):
            if record.state in (StepState.PENDING, StepState.WAITING):
                await self.store.set_step(ctx.run.id, record.key, StepState.SKIPPED, f"not run: the rollback {state.value}")
        for approval in await self.store.pending_approvals(ctx.run.id):
            await self.store.claim_approval(approval.id, ApprovalState.VOID, "bot")
            self.emit(ApprovalDecided(ctx.incident, await self.store.run(ctx.run.id), await self.store.approval(approval.id)))
        run = await self.store.end_run(ctx.run.id, state, reason)
        self.metrics.run_ended(run.plan, run.environment, state.value)
        await self.store.audit("bot", f"run.{state.value}", environment=run.environment, incident_id=ctx.incident.id,
                               run_id=run.id, reason=reason, live_state=outcome.live_state)
        current = await self.store.incident(ctx.incident.id)
        if current.status is IncidentStatus.OPEN and current.alert_status is AlertStatus.ROLLING_BACK:
            # Failed, denied, or a partial rollback done: people take it from here.
            ctx.incident = await self.store.update_incident(ctx.incident.id, alert_status=AlertStatus.INVESTIGATING)
            self.emit(IncidentChanged(ctx.incident, run, bool(ctx.facts.get("app_stopped"))))
        incident = await self.store.incident(ctx.incident.id)
        self.emit(RunEnded(incident, run, tuple(await self.store.steps(run.id)), outcome, error_id, title))

    async def _safely(self, work, what: str) -> str:
        """Run clean-up that must not hide the original failure; report its own failure in words."""
        try:
            return await work
        except Exception as exc:
            error_id = new_error_id()
            log.exception("failed while %s [%s]", what, error_id)
            return f"⚠️ Failed while {what}: {self.redact(str(exc))} (error id {error_id})."
