"""The one entry point `bot/` uses: start a scenario, decide an approval, report status.

Who may do what is decided here (and in the runner for approvals), from the roles `bot/`
resolved; every refusal is written to the audit trail before it is answered.
"""

from __future__ import annotations

from actions.backups.inspection import backup_now, schema_diff
from actions.config import Settings
from actions.engine.events import Emit, IncidentDeclared
from actions.engine.plan import Plan
from actions.engine.runner import Runner
from actions.engine.snapshot import Snapshot, take_snapshot
from actions.incidents.desk import IncidentDesk
from actions.redact import Redactor
from actions.results import (
    AlreadyRunning,
    DecideResult,
    InvalidArguments,
    Refused,
    Started,
    StartResult,
    UnknownEnvironment,
)
from actions.store.records import Actor, Incident, Role
from actions.store.sqlite import AsyncStore, Busy
from actions.verbs import PLANS


class RollbackService:
    def __init__(self, settings: Settings, store: AsyncStore, emit: Emit, redactor: Redactor):
        self.settings = settings
        self.store = store
        self.emit = emit
        self.runner = Runner(settings, store, emit, redactor)
        self.desk = IncidentDesk(settings, store, emit)

    def plan(self, name: str, environment: str, args: tuple[str, ...] = ()) -> Plan:
        return PLANS[name].build(self.settings.environments[environment], tuple(args))

    async def start(self, actor: Actor, plan_name: str, environment: str, args: tuple[str, ...] = ()) -> StartResult:
        """Open a run of `plan_name` on `environment` and launch it, or say why not."""
        audit = {"environment": environment, "plan": plan_name}
        if environment not in self.settings.environments:
            await self.store.audit(actor.user_id, f"{plan_name}.unknown_environment", outcome="refused", **audit)
            return UnknownEnvironment(environment, tuple(self.settings.environments))
        if not actor.has(Role.OPERATOR):
            await self.store.audit(actor.user_id, f"{plan_name}.refused", outcome="refused",
                                   reason="not an operator", **audit)
            return Refused("only operators may start a rollback", Role.OPERATOR, tuple(self.settings.bot.operators))
        spec = PLANS[plan_name]
        problem = await spec.check_args(self.settings.environments[environment], tuple(args))
        if problem:
            await self.store.audit(actor.user_id, f"{plan_name}.invalid", outcome="refused", reason=problem,
                                   args=list(args), **audit)
            return InvalidArguments(problem)
        plan = self.plan(plan_name, environment, args)
        try:
            incident, run, created = await self.store.open_run(
                environment=environment, plan=plan_name, requested_by=actor.user_id,
                channel=self.settings.bot.incident_channel, level=spec.level, facts={"args": list(args)},
                steps=[(s.key, s.title, s.destructive) for s in plan.steps])
        except Busy as busy:
            await self.store.audit(actor.user_id, f"{plan_name}.busy", outcome="refused",
                                   incident_id=busy.run.incident_id, reason="a rollback is already running", **audit)
            step = busy.run.current_step and (await self.store.step(busy.run.id, busy.run.current_step)).title
            return AlreadyRunning(await self.store.incident(busy.run.incident_id), busy.run, step)
        await self.store.audit(actor.user_id, f"{plan_name}.started", incident_id=incident.id, run_id=run.id, **audit)
        if created:
            self.emit(IncidentDeclared(incident, plan_name))
        self.runner.launch(plan, incident, run)
        return Started(incident, run)

    async def snapshot(self, incident_id: str) -> Snapshot:
        return await take_snapshot(self.store, self.runner, incident_id)

    async def regenerate_report(self, actor: Actor, incident_id: str) -> Incident | None:
        """`/rollback report <incident>`: write the report again from the audit trail and post it."""
        incident = await self.store.incident(incident_id)
        if incident is None:
            await self.store.audit(actor.user_id, "report.unknown_incident", outcome="refused", incident_id=incident_id)
            return None
        await self.store.audit(actor.user_id, "report.regenerated", incident_id=incident.id, environment=incident.environment)
        await self.desk.write_report(incident.id)
        return incident

    async def inspect(self, actor: Actor, verb: str, environment: str):
        """`diff` and `backup`: responders only, audited; returns the result, a problem text, or a refusal."""
        if environment not in self.settings.environments:
            await self.store.audit(actor.user_id, f"{verb}.unknown_environment", outcome="refused", environment=environment)
            return UnknownEnvironment(environment, tuple(self.settings.environments))
        if not actor.responder:
            await self.store.audit(actor.user_id, f"{verb}.refused", outcome="refused", environment=environment,
                                   reason="not an operator or approver")
            return Refused("only operators and approvers may do this", Role.OPERATOR,
                           tuple(dict.fromkeys([*self.settings.bot.operators, *self.settings.bot.approvers])))
        env = self.settings.environments[environment]
        result = await (schema_diff(env) if verb == "diff" else backup_now(env))
        detail = {"problem": result} if isinstance(result, str) else (
            {"backup": str(result.path), "bytes": result.size} if verb == "backup"
            else {"changes": sum(len(v) for k, v in result.diff.items() if k != "notes")})
        await self.store.audit(actor.user_id, verb, outcome="error" if isinstance(result, str) else "ok",
                               environment=environment, **detail)
        return result

    async def report_interrupted(self) -> None:
        """At start-up: runs left "running" by a stopped bot are ended and reported, not resumed."""
        await self.runner.report_interrupted(lambda run: self.plan(run.plan, run.environment,
                                                                   tuple(run.facts.get("args", []))))

    async def decide(self, approval_id: str, actor: Actor, approve: bool, *, incident_id: str) -> DecideResult:
        return await self.runner.approvals.decide(approval_id, actor, approve, incident_id=incident_id)
