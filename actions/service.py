"""The front door: everything `bot/` asks of `actions/` goes through `RollbackService`.

- `command(actor, verb, args)` answers every typed `/rollback` verb with a typed result. The verb's
  declaration (`actions/verbs.py`) says who may use it; the check is made here, once, and every
  refusal is written to the audit trail before it is answered.
- The buttons: approve and deny, the incident's lifecycle (`desk`), start the proposed full
  rollback, a diagnose finding's fix, and the recovery buttons of an interrupted run.
- `reads` and `sent`: what `bot/` may read of incidents and runs (with the states decided here),
  and where it records the Slack messages it posted; `audit` for what only `bot/` sees (a command
  arriving, a tampered button).

`Ledger` serves the command line the same way, without a running bot.
"""

from __future__ import annotations

import json
import logging
from typing import Callable

from prometheus_client import CollectorRegistry

from actions.backups.inspection import backup_now, schema_diff
from actions.config import Settings
from actions.diagnose.run import diagnose
from actions.engine.events import Emit, IncidentDeclared, PrepareChanged
from actions.engine.metrics import EngineMetrics
from actions.engine.plan import Plan
from actions.engine.runner import Runner
from actions.engine.snapshot import Snapshot, take_snapshot
from actions.incidents.desk import IncidentDesk
from actions.incidents.reads import Reads, SentMessages, StatusRow, run_status, status_rows
from actions.outreach.courier import Courier
from actions.permissions import Permissions
from actions.plans.cleanup import leftovers_at_start
from actions.prepared.desk import PrepareDesk
from actions.redact import Redactor
from actions.results import (
    AlreadyRunning,
    DecideResult,
    Help,
    IncidentNotFound,
    InvalidArguments,
    NotPossible,
    Problem,
    Refused,
    ReportRegenerated,
    Started,
    StartResult,
    StatusReport,
    UnknownEnvironment,
    UnknownVerb,
)
from actions.store.audit_chain import ChainCheck
from actions.store.records import Actor, AuditEvent, Incident, Run, RunState
from actions.store.sqlite import AsyncStore, Busy, Store
from actions.verbs import PLANS, VERBS, WHAT_IT_STARTS, Starts, Verb
from actions.watch.desk import WatchDesk
from actions.watch.watcher import WatchEvent

log = logging.getLogger(__name__)


class RollbackService:
    def __init__(self, settings: Settings, emit: Emit, redactor: Redactor,
                 watch_emit: Callable[[WatchEvent], None] = lambda event: None,
                 registry: CollectorRegistry | None = None):
        self.settings = settings
        self._store = store = AsyncStore(Store(settings.bot.audit_db))
        self.emit = emit
        self.metrics = EngineMetrics(registry)
        self.runner = Runner(settings, store, emit, redactor, self.metrics)
        self.permissions = Permissions(settings, store)  # who may: every verb and button, checked here
        self.desk = IncidentDesk(settings, store, emit, self.permissions)
        self.watches = WatchDesk(settings, store, watch_emit)
        self.reads = Reads(store)
        self.sent = SentMessages(store)
        self.outreach = Courier(settings, store, emit, redactor, self.metrics.registry)  # pages and mails
        self.prepared = PrepareDesk(settings, store, emit, redactor)  # /rollback prepare, before a migration

    async def stop_runs(self) -> None:
        """Stop the running steps and prepares: they stay open in the store, and the next start reports them."""
        await self.prepared.stop_all()
        await self.runner.shutdown()

    async def wait_idle(self) -> None:
        """Wait until every run launched so far has ended."""
        await self.runner.wait_idle()

    def close(self) -> None:
        self._store.close()

    async def store_writable(self) -> str | None:
        """None when the store takes a write now; else why not (for /readyz)."""
        try:
            await self._store.check_writable()
        except Exception as exc:
            return f"the state database {self.settings.bot.audit_db} cannot be written: {exc}"
        return None

    async def refresh_metrics(self) -> None:
        """Read what the metrics show from the store and the runs under way (when Prometheus scrapes)."""
        self.metrics.approvals_waiting.set(await self._store.pending_approval_count())
        for rate in self.runner.restore_rates():
            self.metrics.restore_rate(rate)
        await self.outreach.refresh_metrics()

    # -- the audit trail -------------------------------------------------------------------------

    async def audit(self, actor: str, action: str, *, outcome: str = "ok", **detail) -> None:
        """Record what only `bot/` sees: a command arriving, a tampered or unknown button, a page sent."""
        await self._store.audit(actor, action, outcome=outcome, **detail)

    # -- commands -------------------------------------------------------------------------------

    async def command(self, actor: Actor, name: str, args: list[str], *, text: str = "", channel: str | None = None):
        """One typed `/rollback` command: audited as it arrives, then checked against the verb's
        declaration (environment, who may, arguments) and carried out. Returns a typed answer."""
        verb = VERBS.get(name)
        environment = args[0].lower() if verb and verb.names_environment and args else None
        await self._store.audit(actor.user_id, "command", environment=environment, text=text, channel=channel)
        if verb is None or not verb.typed:
            return UnknownVerb(name, tuple(v.name for v in VERBS.values() if v.typed))
        if verb.starts is Starts.HELP:
            return self.help()
        if verb.names_environment:
            if not args:
                return InvalidArguments("Name one environment", verb.usage)
            if environment not in self.settings.environments:
                return await self._unknown_environment(actor, verb.name, environment)
        stopping = verb.starts is Starts.WATCH and len(args) == 2 and args[1].lower() == "stop"
        refused = await self._authorize(actor, verb, environment, **({"stop": stopping}
                                                                    if verb.starts is Starts.WATCH else {}))
        if refused:
            return refused
        answer = await self._carry_out(actor, verb, environment, args[1:] if verb.names_environment else args)
        if isinstance(answer, InvalidArguments) and answer.usage is None:
            answer = InvalidArguments(answer.reason, verb.usage)
        return answer

    def help(self) -> Help:
        return Help(tuple((v.usage, v.summary, v.who.value) for v in VERBS.values() if v.typed),
                    tuple(self.settings.environments), self._outreach_lines())

    def _outreach_lines(self) -> tuple[str, ...]:
        paging, email = self.settings.paging, self.settings.email
        return (
            f"PagerDuty: incidents at level {paging.page_at_level} and above are paged, and resolved with them"
            if paging else "PagerDuty: not configured (add a [paging] table to page the on-call)",
            f"Email: incidents at level {email.email_at_level} and above are mailed to {', '.join(email.recipients)}"
            + (", with the status updates" if email.email_updates else "")
            if email else "Email: not configured (add an [email] table to mail the DBA team)",
        )

    async def _carry_out(self, actor: Actor, verb: Verb, environment: str | None, rest: list[str]):
        match verb.starts:
            case Starts.PLAN:
                return await self._launch(actor, verb.name, environment, tuple(rest))
            case Starts.DIFF | Starts.BACKUP:
                return _extra_words(rest) or await self._inspect(actor, verb.name, environment)
            case Starts.DIAGNOSE:
                return _extra_words(rest) or await self._diagnose(actor, environment)
            case Starts.PREPARE:
                return _extra_words(rest) or await self.prepared.start(actor, environment)
            case Starts.WATCH:
                if len(rest) > 1:
                    return InvalidArguments(f"Unexpected words after `{rest[0]}`: {' '.join(rest[1:])}")
                return await self.watches.command(actor.user_id, environment, rest[0] if rest else None)
            case Starts.DECLARE | Starts.ASSESS:
                assess = verb.starts is Starts.ASSESS
                if assess and rest:
                    return _extra_words(rest)
                return await self.desk.declare(actor, environment, " ".join(rest) or None, assess=assess)
            case Starts.REPORT:
                if len(rest) != 1:
                    return InvalidArguments("Name one incident, like INC-20261124-0001")
                return await self.regenerate_report(actor, rest[0].upper())
            case Starts.STATUS:
                if rest:
                    return InvalidArguments(f"Unexpected words: {' '.join(rest)}")
                return StatusReport(tuple(await self.reads.status()), tuple(await self.reads.undelivered()),
                                    tuple(await self.reads.prepared(self.settings.bot.prepared_ttl_hours)))
        raise AssertionError(f"verb {verb.name} starts nothing known")

    async def _authorize(self, actor: Actor, verb: Verb, environment: str | None, **detail) -> Refused | None:
        """A verb's declared `who`, checked by the one role check (refused and audited unless it allows the actor)."""
        return await self.permissions.check(actor, verb.who, verb.name, WHAT_IT_STARTS[verb.starts], environment=environment,
                                            **detail)

    async def _unknown_environment(self, actor: Actor, verb: str, environment: str) -> UnknownEnvironment:
        await self._store.audit(actor.user_id, f"{verb}.unknown_environment", outcome="refused", environment=environment)
        return UnknownEnvironment(environment, tuple(self.settings.environments))

    # -- runs -----------------------------------------------------------------------------------

    def plan(self, name: str, environment: str, args: tuple[str, ...] = ()) -> Plan:
        return PLANS[name].build(self.settings.environments[environment], tuple(args))

    async def start(self, actor: Actor, plan_name: str, environment: str, args: tuple[str, ...] = ()) -> StartResult:
        """Start a run of `plan_name` (a button's way in: the same checks as the typed verb)."""
        if environment not in self.settings.environments:
            return await self._unknown_environment(actor, plan_name, environment)
        refused = await self._authorize(actor, VERBS[plan_name], environment)
        return refused or await self._launch(actor, plan_name, environment, args)

    async def _launch(self, actor: Actor, plan_name: str, environment: str, args: tuple[str, ...]) -> StartResult:
        audit = {"environment": environment, "plan": plan_name}
        spec = PLANS[plan_name]
        problem = await spec.check_args(self.settings.environments[environment], tuple(args))
        if problem:
            await self._store.audit(actor.user_id, f"{plan_name}.invalid", outcome="refused", reason=problem,
                                    args=list(args), **audit)
            return InvalidArguments(problem[0].upper() + problem[1:], VERBS[plan_name].usage if VERBS[plan_name].typed
                                    else None)
        plan = self.plan(plan_name, environment, args)
        try:
            incident, run, created = await self._store.open_run(
                environment=environment, plan=plan_name, requested_by=actor.user_id,
                channel=self.settings.bot.incident_channel, level=spec.level, facts={"args": list(args)},
                steps=[(s.key, s.title, s.destructive) for s in plan.steps])
        except Busy as busy:
            await self._store.audit(actor.user_id, f"{plan_name}.busy", outcome="refused",
                                    incident_id=busy.run.incident_id, reason="a rollback is already running", **audit)
            step = busy.run.current_step and (await self._store.step(busy.run.id, busy.run.current_step)).title
            return AlreadyRunning(await self._store.incident(busy.run.incident_id), busy.run, step)
        await self._store.audit(actor.user_id, f"{plan_name}.started", incident_id=incident.id, run_id=run.id, **audit)
        if created:
            self.emit(IncidentDeclared(incident, plan_name))
        self.runner.launch(plan, incident, run)
        return Started(incident, run, spec.title)

    async def decide(self, approval_id: str, actor: Actor, approve: bool, *, incident_id: str) -> DecideResult:
        return await self.runner.approvals.decide(approval_id, actor, approve, incident_id=incident_id)

    async def snapshot(self, incident_id: str) -> Snapshot:
        return await take_snapshot(self._store, self.runner, incident_id)

    async def report_interrupted(self) -> None:
        """At start-up: runs left "running" by a stopped bot are ended and reported, not resumed."""
        await self.runner.report_interrupted(lambda run: self.plan(run.plan, run.environment,
                                                                   tuple(run.facts.get("args", []))))
        for copy in await self._store.end_interrupted_prepares():  # their copies are offered for clean-up
            await self._store.audit("bot", "prepare.interrupted", outcome="failed", environment=copy.environment,
                                    copy=copy.database)
            self.emit(PrepareChanged(await self._store.prepared_copy(copy.id), "failed",
                                     "the bot stopped while it prepared; the copy was never verified and is never "
                                     "used (the start-up scan offers to drop it)"))
        for older, newest in await self._store.end_unreplaced_copies():
            await self._store.audit("bot", "prepare.replaced", environment=older.environment, copy=older.database,
                                    by=newest.database, reason="the bot stopped before it dropped the older copy")

    # -- buttons --------------------------------------------------------------------------------

    async def start_full_for(self, actor: Actor, incident_id: str) -> StartResult | IncidentNotFound:
        """The CRITICAL answer's proposal: a full rollback of the incident's environment."""
        incident = await self._store.incident(incident_id)
        if incident is None:
            return IncidentNotFound(incident_id)
        return await self.start(actor, "full", incident.environment)

    async def carry_over_for(self, actor: Actor, incident_id: str) -> StartResult | IncidentNotFound:
        """The button beside the count of rows written after the backup: the gated carry-over of that incident."""
        incident = await self._store.incident(incident_id)
        if incident is None:
            return IncidentNotFound(incident_id)
        return await self.start(actor, "carry-over", incident.environment, (incident_id,))

    async def start_remedy(self, actor: Actor, environment: str, kind: str, target: dict) -> StartResult:
        return await self.start(actor, "remedy", environment, (kind, json.dumps(target)))

    async def run_of_button(self, actor: Actor, incident_id: str, run_id: str, what: str
                            ) -> Run | NotPossible | Refused:
        """The run a button names, if the actor holds the button's role and the run belongs to the incident the
        button names (else audited as tampered)."""
        if refused := await self.permissions.button(actor, what, what, incident_id=incident_id, run_id=run_id):
            return refused
        run = await self._store.run(run_id)
        if run is None or run.incident_id != incident_id:
            await self._store.audit(actor.user_id, "button.tampered", outcome="refused", action_id=what, run=run_id)
            return NotPossible(f"there is no run {run_id} in {incident_id}")
        return run

    async def run_again(self, actor: Actor, incident_id: str, run_id: str) -> StartResult | NotPossible | Refused:
        """▶️ Start again, on an interrupted run: the same plan, from its first step, the same gates."""
        run = await self._interrupted(actor, incident_id, run_id, "run-again")
        if not isinstance(run, Run):
            return run
        return await self.start(actor, run.plan, run.environment, tuple(run.facts.get("args", [])))

    async def retry_app(self, actor: Actor, incident_id: str, run_id: str) -> StartResult | NotPossible | Refused:
        """🔁 Retry the application start: only after a run that left a swapped database behind
        (no approval is asked: the database is not touched)."""
        run = await self.run_of_button(actor, incident_id, run_id, "retry-app")
        if not isinstance(run, Run):
            return run
        if run.ended_at is None or not (run.plan == "restart" or run_status(run, []).swapped):
            return NotPossible(f"run {run.id} did not leave a swapped database behind")
        return await self.start(actor, "restart", run.environment)

    async def abandon(self, actor: Actor, incident_id: str, run_id: str) -> StartResult | NotPossible | Refused:
        """🧹 Abandon and clean up, on an interrupted run: its leftovers are dropped after an approval."""
        run = await self._interrupted(actor, incident_id, run_id, "clean-up")
        if not isinstance(run, Run):
            return run  # refused before "abandoned" is written: a refused click changes nothing
        await self._store.audit(actor.user_id, "run.abandoned", environment=run.environment,
                                incident_id=run.incident_id, run_id=run.id)
        return await self.start(actor, "cleanup", run.environment)

    async def _interrupted(self, actor: Actor, incident_id: str, run_id: str, what: str
                           ) -> Run | NotPossible | Refused:
        run = await self.run_of_button(actor, incident_id, run_id, what)
        if not isinstance(run, Run):
            return run
        if run.state is not RunState.INTERRUPTED:
            return NotPossible(f"run {run.id} was not interrupted")
        return run

    async def leftover_copies(self) -> dict[str, list[tuple[str, int]]]:
        """At start-up: per environment, what interrupted runs left behind (audited; `plans/cleanup.py`)."""
        return await leftovers_at_start(self.settings, self._store)

    # -- the read-only and one-off verbs --------------------------------------------------------

    async def report_form(self, actor: Actor, incident_id: str) -> Incident | IncidentNotFound | Refused:
        """✏️ Edit report: the incident whose notes the form opens with, if the actor may edit them (audited)."""
        incident = await self._store.incident(incident_id)
        if incident is None:
            return IncidentNotFound(incident_id)
        if refused := await self.permissions.button(actor, "report-edit", "report_edit", incident_id=incident.id,
                                                    environment=incident.environment):
            return refused
        await self._store.audit(actor.user_id, "report.edit_opened", incident_id=incident.id,
                                environment=incident.environment)
        return incident

    async def regenerate_report(self, actor: Actor, incident_id: str) -> ReportRegenerated | IncidentNotFound:
        """`/rollback report <incident>`: write the report again from the audit trail and post it."""
        incident = await self._store.incident(incident_id)
        if incident is None:
            await self._store.audit(actor.user_id, "report.unknown_incident", outcome="refused", incident_id=incident_id)
            return IncidentNotFound(incident_id)
        await self._store.audit(actor.user_id, "report.regenerated", incident_id=incident.id,
                                environment=incident.environment)
        await self.desk.write_report(incident.id)
        return ReportRegenerated(incident)

    async def _inspect(self, actor: Actor, verb: str, environment: str):
        """`diff` and `backup`: audited; returns the result or a Problem."""
        env = self.settings.environments[environment]
        result = await (schema_diff(env) if verb == "diff" else backup_now(env))
        if isinstance(result, str):
            await self._store.audit(actor.user_id, verb, outcome="error", environment=environment, problem=result)
            return Problem(result)
        detail = ({"backup": str(result.path), "bytes": result.size} if verb == "backup"
                  else {"changes": sum(len(v) for k, v in result.diff.items() if k != "notes")})
        await self._store.audit(actor.user_id, verb, environment=environment, **detail)
        return result

    async def _diagnose(self, actor: Actor, environment: str):
        report = await diagnose(self.settings.environments[environment])
        await self._store.audit(actor.user_id, "diagnose", environment=environment, worst=report.worst.value,
                                checks={c.key: c.status.value for c in report.checks})
        return report


# How a refusal names what the actor may not do, by what the verb starts.

def _extra_words(rest: list[str]) -> InvalidArguments | None:
    return InvalidArguments(f"Unexpected words after the environment: {' '.join(rest)}") if rest else None


class Ledger:
    """The state database for the command line: the audit trail, its check, the status, a backup."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._store = Store(settings.bot.audit_db)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def audit_events(self, incident_id: str | None = None) -> list[AuditEvent]:
        return self._store.audit_events(incident_id)

    def verify_audit(self) -> ChainCheck:
        return self._store.verify_audit()

    def status(self) -> list[StatusRow]:
        return status_rows(self._store.overview())

    def audit(self, actor: str, action: str, **detail) -> None:
        self._store.audit(actor, action, **detail)
