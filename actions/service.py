"""The one entry point `bot/` uses: start a scenario, decide an approval, report status.

Who may do what is decided here (and in the runner for approvals), from the roles `bot/`
resolved; every refusal is written to the audit trail before it is answered.
"""

from __future__ import annotations

from actions import full_rollback
from actions.config import Settings
from actions.events import Emit, IncidentDeclared
from actions.incidents import IncidentDesk
from actions.plan import Plan
from actions.records import Actor, Incident, Role
from actions.snapshot import Snapshot, take_snapshot
from actions.redact import Redactor
from actions.results import AlreadyRunning, DecideResult, Refused, StartResult, Started, UnknownEnvironment
from actions.runner import Runner
from actions.store import AsyncStore, Busy

PLANS = {"full": full_rollback.build_plan}


class RollbackService:
    def __init__(self, settings: Settings, store: AsyncStore, emit: Emit, redactor: Redactor):
        self.settings = settings
        self.store = store
        self.emit = emit
        self.runner = Runner(settings, store, emit, redactor)
        self.desk = IncidentDesk(settings, store, emit)

    def plan(self, name: str, environment: str) -> Plan:
        return PLANS[name](self.settings.environments[environment].stop_app)

    async def start(self, actor: Actor, plan_name: str, environment: str) -> StartResult:
        """Open a run of `plan_name` on `environment` and launch it, or say why not."""
        audit = {"environment": environment, "plan": plan_name}
        if environment not in self.settings.environments:
            await self.store.audit(actor.user_id, f"{plan_name}.unknown_environment", outcome="refused", **audit)
            return UnknownEnvironment(environment, tuple(self.settings.environments))
        if not actor.has(Role.OPERATOR):
            await self.store.audit(actor.user_id, f"{plan_name}.refused", outcome="refused",
                                   reason="not an operator", **audit)
            return Refused("only operators may start a rollback", Role.OPERATOR, tuple(self.settings.bot.operators))
        plan = self.plan(plan_name, environment)
        try:
            incident, run, created = await self.store.open_run(
                environment=environment, plan=plan_name, requested_by=actor.user_id,
                channel=self.settings.bot.incident_channel,
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

    async def report_interrupted(self) -> None:
        """At start-up: runs left "running" by a stopped bot are ended and reported, not resumed."""
        await self.runner.report_interrupted(lambda run: self.plan(run.plan, run.environment))

    async def decide(self, approval_id: str, actor: Actor, approve: bool, *, incident_id: str) -> DecideResult:
        return await self.runner.decide(approval_id, actor, approve, incident_id=incident_id)
