"""Turns the runner's and the desk's events into Slack messages, in order, never holding them up.

Events go on a queue and this task turns them, one by one, into letters for the poster's outbox
(`bot/outbox.py`), which sends them at Slack's pace, one lane per channel. Handling an event
never waits for Slack: what depends on an earlier post (the alert's `ts` for its thread and its
updates, an approval request's `ts` for its decision) is read when the later letter is sent,
and a channel's letters keep their order. A message that cannot be sent is logged with an error
id and skipped, because a rollback must never wait on Slack.

What people must act on goes ahead of the progress lines (`urgent`): the alert, approval requests
and the update that shows their decision, pages to approvers, RESOLVED, a page or mail given up.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError

from actions.config import Settings
from actions.engine.events import (
    ApprovalDecided,
    ApprovalRequested,
    DeliveryEnded,
    Escalated,
    Event,
    IncidentChanged,
    IncidentDeclared,
    PostIncidentChanged,
    PrepareChanged,
    ReportWritten,
    RunEnded,
    RunStarted,
    SeverityAsked,
    SeverityChosen,
    StepChanged,
)
from actions.results import new_error_id
from actions.service import RollbackService
from actions.store.records import ApprovalState, DeliveryState, IncidentStatus, RunState, StepState
from bot import presenters
from bot.access import Access
from bot.channels import open_incident_channel
from bot.poster import Poster
from bot.postincident import PostIncident
from messages import lifecycle
from messages.approval import approval_message
from messages.incident import alert, decision_line, resolved, resolved_by_hand, run_ended, run_started, step_line
from messages.outreach import delivery_line
from messages.prepared import prepare_failed, prepare_progress, rollback_ready
from messages.update import status_update

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpdateDue:
    """The schedule's clock struck for an incident's status update (bot-internal event)."""

    incident_id: str


ANNOUNCED_STEP_STATES = {StepState.SUCCEEDED, StepState.FAILED, StepState.WAITING, StepState.CANCELLED}


class Notifier:
    def __init__(self, poster: Poster, settings: Settings, service: RollbackService, access: Access):
        self.poster = poster
        self.settings = settings
        self.service = service
        self.reads = service.reads
        self.access = access
        self.post_incident = PostIncident(poster, settings, service)
        self.schedule = None  # set by the runtime: told when incidents open, resolve and close
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._alerts_queued: set[str] = set()  # incidents whose alert is posted or on its way
        self._prepares: dict[str, tuple[asyncio.Future, str]] = {}  # prepare id -> (its progress post, last detail)

    def emit(self, event: Event) -> None:
        """Called by the runner and the desk: never blocks, never fails."""
        self.queue.put_nowait(event)

    def start(self) -> None:
        self._task = asyncio.create_task(self._consume(), name="notifier")

    async def handled(self) -> None:
        """Wait until every event emitted so far has been turned into letters (not necessarily sent)."""
        await self.queue.join()

    async def drain(self) -> None:
        """Wait until every event emitted so far has been handled and its messages sent."""
        await self.queue.join()
        await self.poster.outbox.drain()

    async def stop(self, flush_seconds: float = 5.0) -> None:
        """Send what is queued, for at most `flush_seconds` (Slack may be down), then stop."""
        try:
            await asyncio.wait_for(self.drain(), flush_seconds)
        except TimeoutError:
            log.warning("%d messages were not sent to Slack before shutdown", self.poster.outbox.depth())
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.poster.outbox.close()

    async def _consume(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self._handle(event)
            except Exception as exc:
                error_id = new_error_id()
                detail = exc.response.get("error") if isinstance(exc, SlackApiError) else repr(exc)
                log.exception("could not tell Slack about %s (%s) [%s]", type(event).__name__, detail, error_id)
            finally:
                self.queue.task_done()

    async def _handle(self, event: Event) -> None:
        match event:
            case IncidentDeclared(incident=incident):
                await open_incident_channel(incident, self.settings, self.service, self.access, self.poster)
                await self._alert(incident.id)
                self._follow(await self.reads.incident(incident.id))
            case SeverityAsked(incident=incident):
                await self._alert(incident.id)
                await self.poster.post_or_update(incident.id, "severity", lifecycle.severity_question(
                    incident.id, incident.environment))
            case SeverityChosen():
                await self._severity_chosen(event)
            case Escalated(incident=incident, by=by, approvers=approvers, level_name=level_name):
                await self.poster.to_incident(incident.id, lifecycle.escalated(
                    incident.id, incident.level, level_name, by, approvers))
                await self._page(incident.id, approvers, f"it was raised to level {incident.level}", by)
            case RunStarted(incident=incident, run=run, plan_title=title):
                await self._alert(incident.id)
                await self.poster.to_incident(incident.id, run_started(title, run.environment, run.requested_by, run.id),
                                              thread=True)
            case IncidentChanged(incident=incident):
                await self._incident_changed(event)
            case StepChanged(incident=incident, step=step) if step.state in ANNOUNCED_STEP_STATES:
                await self.poster.to_incident(incident.id, step_line(presenters.step_view(step)), thread=True,
                                              progress=True)
                if step.key == "count_writes" and step.state is StepState.SUCCEEDED:
                    await self._writes_counted(event)
            case ApprovalRequested(incident=incident, approval=approval):
                async def remember(answer: dict, approval_id: str = approval.id) -> None:
                    await self.service.sent.approval(approval_id, answer["channel"], answer["ts"])
                await self.poster.to_incident(incident.id, approval_message(
                    presenters.approval_view(approval, self.settings)), urgent=True, on_sent=remember)
            case ApprovalDecided(incident=incident, approval=approval):
                await self._decided(incident, approval)
            case RunEnded():
                await self._run_ended(event)
            case ReportWritten():
                await self.post_incident.report_written(event)
            case PostIncidentChanged(incident=incident, what=what):
                await self.post_incident.redraw(incident.id, what)
            case UpdateDue(incident_id=incident_id):
                await self._status_update(incident_id)
            case PrepareChanged():
                self._prepare_changed(event)
            case DeliveryEnded(incident=incident, delivery=delivery):
                # A page or mail given up is something to do by hand: it goes ahead of progress lines.
                sent = delivery.state is DeliveryState.SENT
                await self.poster.to_incident(incident.id, delivery_line(presenters.delivery_view(delivery)),
                                              thread=True, progress=sent, urgent=not sent)

    def _prepare_changed(self, event: PrepareChanged) -> None:
        """A prepare's progress message, posted once and updated in place; then "Rollback ready" or the failure,
        in the incident channel (a prepare comes before any incident)."""
        copy, channel = event.copy, self.settings.bot.incident_channel
        progress = event.progress
        percent = round(100 * progress.done / progress.total) if progress and progress.total else None
        posted, detail = self._prepares.get(copy.id, (None, ""))
        detail = event.detail or detail  # a progress tick carries no words of its own
        view = presenters.prepare_view(copy, event.phase, detail, self.settings, percent=percent,
                                       replaced=event.replaced)
        message = prepare_progress(view)
        if posted is None:
            posted = self.poster.post(channel, message, what="a prepare's progress")
        else:
            async def progress_ts(post: asyncio.Future = posted) -> str | None:
                answer = await asyncio.shield(post)
                return answer.get("ts") if isinstance(answer, dict) else None
            self.poster.update(channel, progress_ts, message, replaces=f"prepare:{copy.id}")
        self._prepares[copy.id] = (posted, detail)
        if event.phase in ("ready", "failed"):
            ending = rollback_ready(view) if event.phase == "ready" else prepare_failed(view)
            self.poster.post(channel, ending, urgent=True, what="a prepare's end")
            self._prepares.pop(copy.id, None)

    async def _status_update(self, incident_id: str) -> None:
        """One status update from live execution state; the alert's ETA is refreshed with it."""
        snapshot = await self.service.snapshot(incident_id)
        if snapshot.incident.status is not IncidentStatus.OPEN:
            return  # resolved since the clock struck
        await self.poster.to_incident(incident_id, status_update(presenters.update_view(snapshot, self.settings)))
        if snapshot.progress:
            await self._alert(incident_id, progress=snapshot.progress)

    def _follow(self, incident) -> None:
        if self.schedule is not None:
            self.schedule.incident_changed(incident)

    async def _alert(self, incident_id: str, progress=None) -> None:
        """Post the INCIDENT ALERT once per incident; later, update it in place (the newest state
        supersedes updates still queued). Its `ts` is stored when it lands: the thread hangs on it."""
        state = await self.reads.incident_state(incident_id)
        incident = state.incident
        message = alert(presenters.alert_view(state, progress=progress))
        if incident.alert_ts is None and incident.id not in self._alerts_queued:
            self._alerts_queued.add(incident.id)

            async def remember(answer: dict) -> None:
                await self.service.sent.alert(incident_id, answer["ts"])

            def given_up(sent: asyncio.Future) -> None:  # Slack refused it: the next change posts it afresh
                if not sent.cancelled() and sent.exception() is not None:
                    self._alerts_queued.discard(incident_id)
            self.poster.post(incident.channel, message, urgent=True, on_sent=remember).add_done_callback(given_up)
            return
        self.poster.update(incident.channel, lambda: self.poster.alert_ts(incident_id), message,
                           replaces=f"alert:{incident_id}")

    async def _incident_changed(self, event: IncidentChanged) -> None:
        incident = await self.reads.incident(event.incident.id)
        await self._alert(incident.id)
        if event.incident.status is IncidentStatus.RESOLVED:  # the moment of resolution (closing comes later)
            if event.run is not None:
                status = await self.reads.run_status(event.run.id)
                message = resolved(presenters.resolved_view(incident, status, self.settings))
            else:
                message = resolved_by_hand(incident.id, incident.environment, event.by, incident.resolved_at)
            # Kept as the incident's "resolved" message: its data line is filled in once the writes are counted.
            await self.poster.post_or_update(incident.id, "resolved", message, urgent=True)
        if incident.status is IncidentStatus.CLOSED:
            await self.post_incident.redraw(incident.id, "signoffs")
        self._follow(incident)

    async def _writes_counted(self, event: StepChanged) -> None:
        """RESOLVED, updated in place with the exact count of the rows written after the backup."""
        incident = await self.reads.incident(event.incident.id)
        status = await self.reads.run_status(event.run.id)
        await self.poster.post_or_update(incident.id, "resolved", resolved(presenters.resolved_view(
            incident, status, self.settings)), urgent=True)
        inserted = sum(t[1] for t in status.writes)
        if inserted and status.kept_as:
            await self.poster.to_incident(incident.id, lifecycle.carry_over_offer(
                incident.id, incident.environment, inserted, status.kept_as), thread=True)

    async def _severity_chosen(self, event: SeverityChosen) -> None:
        incident, choice = event.incident, event.choice
        await self.poster.post_or_update(incident.id, "severity", lifecycle.severity_answered(
            incident.id, incident.environment, choice, event.by), urgent=True)
        if choice == "critical":
            await self.poster.to_incident(incident.id, lifecycle.critical_proposal(incident.id, incident.environment, event.by))
        elif choice == "minor":
            await self.poster.to_incident(incident.id, lifecycle.minor_recorded(incident.id, event.by))
        else:
            await self.poster.to_incident(incident.id, lifecycle.unsure_paged(incident.id, event.by, event.approvers))
            await self._page(incident.id, event.approvers, "its severity is unclear and it is paused until assessed",
                             event.by)

    async def _page(self, incident_id: str, approvers: tuple[str, ...], why: str, by: str) -> None:
        """A direct message to every approver (usergroups expanded) but the person who caused it."""
        channel = await self.poster.channel(incident_id)
        users = [user for user in await self.access.users(approvers) if user != by]
        for user in users:  # each DM is its own lane: a busy incident channel never holds a page up
            self.poster.post(user, lifecycle.page(incident_id, channel, why), urgent=True)
        await self.service.audit("bot", "approvers.paged", incident_id=incident_id, why=why, users=",".join(users))

    async def _decided(self, incident, approval) -> None:
        stored = await self.reads.approval(approval.id)

        async def request_ts() -> str | None:  # the request may still be on its way
            return (await self.reads.approval(approval.id)).message_ts
        self.poster.update(stored.channel or await self.poster.channel(incident.id), request_ts,
                           approval_message(presenters.approval_view(stored, self.settings)), urgent=True,
                           replaces=f"approval:{approval.id}")
        if approval.state != ApprovalState.VOID:
            # The request's own update above shows the decision first; this line is the thread's record.
            await self.poster.to_incident(incident.id, decision_line(approval.state.value, approval.decided_by),
                                          thread=True, progress=True)

    async def _run_ended(self, event: RunEnded) -> None:
        incident, run = event.incident, event.run
        view = presenters.run_end_view(incident, event.steps, event.outcome, event.plan_title,
                                       await self.reads.run_status(run.id))
        await self.poster.to_incident(incident.id, run_ended(view), thread=True,
                                      broadcast=run.state is not RunState.SUCCEEDED)
        await self._alert(incident.id)  # "Mark resolved" comes back once no run is under way
