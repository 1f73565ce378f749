"""What `bot/` may read about incidents and runs, and what it keeps of its own messages.

`Reads` answers the notifier, the poster and the schedule with records and with states decided
here — whether a run swapped a database, was interrupted, may retry the application start;
whether an incident's application is stopped — so that `bot/` never derives a domain rule from a
run's facts or from a text. `SentMessages` is where `bot/` records the Slack messages it posted
(the alert, the approval requests, the checklist …) to update them in place later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from actions.incidents.checklist import CHECKLIST
from actions.incidents.desk import LEVELS
from actions.plans.facts import BackupRef, RunFacts
from actions.store.records import (
    Approval,
    DeliveryState,
    Incident,
    IncidentStatus,
    PreparedState,
    Run,
    RunState,
    StepRecord,
    StepState,
    utcnow,
)
from actions.store.sqlite import AsyncStore


@dataclass(frozen=True)
class RunStatus:
    """A run as the channel is told about it."""

    run: Run
    swapped: bool  # a full rollback's swap (or a table rollback's) is done
    interrupted: bool  # the bot stopped while it ran: offer to start again or to clean up
    retry_app: bool  # the database was swapped but the application did not come back: offer to start it again
    app_stopped: bool  # this run stopped the application and has not started it again
    backup: BackupRef | None
    kept_as: str | None  # the failed database a full rollback kept
    writes_line: str | None = None  # rows written after the backup, counted after the swap (None: not yet)
    writes: tuple[tuple[str, int, int, int], ...] = ()  # (table, inserted, updated, deleted)


@dataclass(frozen=True)
class IncidentState:
    """What the INCIDENT ALERT shows of an incident besides its record."""

    incident: Incident
    level_name: str  # runbook Part 2
    app_stopped: bool
    running: bool  # a run is under way: it resolves the incident itself when it succeeds
    rolled_back: bool  # a full rollback swapped the restored copy in


@dataclass(frozen=True)
class StatusRow:
    """One line of `/rollback status`."""

    incident_id: str
    environment: str
    alert_status: str
    declared_at: datetime
    run_id: str | None
    run_state: str | None
    current_step: str | None
    requested_by: str | None


@dataclass(frozen=True)
class Undelivered:
    """A page or a mail that was given up, or is still being tried after a failed attempt."""

    incident_id: str
    transport: str  # pagerduty / email
    kind: str
    given_up: bool
    reason: str
    attempts: int


@dataclass(frozen=True)
class PreparedRow:
    """A prepared copy, as `/rollback status` lists it."""

    environment: str
    database: str
    state: str  # preparing / ready
    since: datetime  # ready: when it was verified; preparing: when it started
    backup: str | None  # the backup's folder and file
    size: int | None
    stale: bool  # older than prepared_ttl_hours: offered for removal


@dataclass(frozen=True)
class ChecklistItem:
    key: str
    text: str
    checked: bool
    by: str | None


@dataclass(frozen=True)
class ChecklistGroupState:
    key: str
    title: str
    items: tuple[ChecklistItem, ...]


def run_status(run: Run, steps: list[StepRecord] | tuple[StepRecord, ...]) -> RunStatus:
    facts = RunFacts.of(run.facts)
    app_failed = any(s.state is StepState.FAILED and s.key in ("start_app", "smoke") for s in steps)
    return RunStatus(
        run=run, swapped=facts.swapped, interrupted=run.state is RunState.INTERRUPTED,
        retry_app=run.state.failed and (run.plan == "restart" or facts.swapped) and app_failed,
        app_stopped=facts.app_stopped, backup=facts.backup,
        kept_as=facts.databases.keep_as if facts.databases else None, writes_line=facts.writes_line,
        writes=tuple(tuple(t) for t in (facts.writes_after or {}).get("tables", [])))


def status_rows(overview: list[tuple[Incident, Run | None, str | None]]) -> list[StatusRow]:
    return [StatusRow(incident.id, incident.environment, incident.alert_status.value, incident.declared_at,
                      run and run.id, run and run.state.value, step, run and run.requested_by)
            for incident, run, step in overview]


class Reads:
    def __init__(self, store: AsyncStore):
        self._store = store

    async def incident(self, incident_id: str) -> Incident | None:
        return await self._store.incident(incident_id)

    async def open_incidents(self) -> list[Incident]:
        return await self._store.open_incidents()

    async def incidents(self, status: IncidentStatus) -> list[Incident]:
        return await self._store.incidents(status)

    async def run(self, run_id: str) -> Run | None:
        return await self._store.run(run_id)

    async def steps(self, run_id: str) -> list[StepRecord]:
        return await self._store.steps(run_id)

    async def approval(self, approval_id: str) -> Approval | None:
        return await self._store.approval(approval_id)

    async def run_status(self, run_id: str) -> RunStatus:
        return run_status(await self._store.run(run_id), await self._store.steps(run_id))

    async def swapped_run(self, incident_id: str) -> RunStatus | None:
        """The latest run of the incident that swapped a restored copy in (a full rollback), if any."""
        for run in reversed(await self._store.runs(incident_id=incident_id)):
            if RunFacts.of(run.facts).swapped:
                return run_status(run, await self._store.steps(run.id))
        return None

    async def incident_state(self, incident_id: str) -> IncidentState:
        incident = await self._store.incident(incident_id)
        runs = await self._store.runs(incident_id=incident_id)
        latest = RunFacts.of(runs[-1].facts) if runs else None
        return IncidentState(incident, LEVELS[incident.level], app_stopped=bool(latest and latest.app_stopped),
                             running=bool(runs and runs[-1].state is RunState.RUNNING),
                             rolled_back=any(RunFacts.of(run.facts).swapped for run in runs))

    async def status(self) -> list[StatusRow]:
        return status_rows(await self._store.overview())

    async def prepared(self, ttl_hours: float) -> list[PreparedRow]:
        """Every prepared copy ready or under way, with whether it is older than `ttl_hours`."""
        rows = []
        for copy in await self._store.prepared_copies(states=(PreparedState.READY, PreparedState.PREPARING)):
            since = copy.ready_at or copy.started_at
            backup = "/".join(Path(copy.backup_path).parts[-2:]) if copy.backup_path else None
            rows.append(PreparedRow(copy.environment, copy.database, copy.state.value, since, backup, copy.size,
                                    copy.state is PreparedState.READY and utcnow() - since > timedelta(hours=ttl_hours)))
        return rows

    async def undelivered(self) -> list[Undelivered]:
        """Failed pages and mails of incidents not closed yet, and those still being tried after an error."""
        closed = {i.id for i in await self._store.incidents(IncidentStatus.CLOSED)}
        found = []
        for d in await self._store.deliveries():
            troubled = d.state is DeliveryState.FAILED or (d.state is DeliveryState.PENDING and d.last_error)
            if troubled and d.incident_id not in closed:
                found.append(Undelivered(d.incident_id, d.transport, d.kind, d.state is DeliveryState.FAILED,
                                         d.last_error or "", d.attempts))
        return found

    async def checklist(self, incident_id: str) -> tuple[ChecklistGroupState, ...]:
        ticks = await self._store.checklist(incident_id)
        return tuple(ChecklistGroupState(group.key, group.title, tuple(
            ChecklistItem(key, text, bool(ticks.get(key, {}).get("checked")), ticks.get(key, {}).get("by"))
            for key, text in group.items)) for group in CHECKLIST)

    async def signoffs(self, incident_id: str) -> dict[str, dict]:
        """role -> {"user", "at"} for the roles signed off so far."""
        return await self._store.signoffs(incident_id)


class SentMessages:
    """The Slack messages `bot/` posted for an incident, so that it updates them instead of posting again."""

    def __init__(self, store: AsyncStore):
        self._store = store

    async def get(self, incident_id: str, kind: str) -> dict | None:
        """{"channel", "ts"} of the incident's message of this kind, if one was posted."""
        return await self._store.message(incident_id, kind)

    async def put(self, incident_id: str, kind: str, channel: str, ts: str) -> None:
        await self._store.set_message(incident_id, kind, channel, ts)

    async def first_time(self, incident_id: str, kind: str) -> bool:
        """True once per (incident, kind): the caller may post; False ever after (also across restarts)."""
        return await self._store.remember_message(incident_id, kind)

    async def alert(self, incident_id: str, ts: str) -> None:
        await self._store.update_incident(incident_id, alert_ts=ts)

    async def approval(self, approval_id: str, channel: str, ts: str) -> None:
        await self._store.set_approval_message(approval_id, channel, ts)

    async def incident_channel(self, incident_id: str, channel: str) -> Incident:
        """The incident got a channel of its own: everything about it goes there from now on."""
        incident = await self._store.update_incident(incident_id, channel=channel)
        await self._store.audit("bot", "channel.created", incident_id=incident.id, environment=incident.environment,
                                channel=channel)
        return incident
