"""Pages and mails for the incident's events: what `actions/outreach` says is due, written with the
runbook's templates and handed to the service's courier, which keeps and sends them.

Events reach this on a queue of its own, beside the notifier's, so a page never waits behind Slack's
pace. What it asks of Slack (the alert's permalink for PagerDuty's link, people's names for the
mail) it waits for a few seconds at most, then goes on without: a slow Slack never holds a page.
At start it first looks at every incident not closed yet, so what an earlier run of the bot made
due but did not queue before it stopped is queued now (the courier sends nothing twice).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
from slack_sdk.errors import SlackApiError

from actions.config import Settings
from actions.engine.events import DeliveryEnded, Event, ReportWritten, RunStarted
from actions.outreach.policy import Due, Moment, Occasion, Transport
from actions.results import new_error_id
from actions.service import RollbackService
from actions.store.records import Incident, IncidentStatus
from bot import presenters
from bot.access import Access
from bot.notifier import UpdateDue
from bot.poster import Poster
from messages import outreach as texts
from messages.incident import alert, resolved, resolved_by_hand
from messages.update import status_update

log = logging.getLogger(__name__)

LINK_WAIT_SECONDS = 3.0  # how long a page waits for the alert to land in Slack, for its permalink
SLACK_CALL_SECONDS = 3.0  # chat.getPermalink, users.info


@dataclass(frozen=True)
class CatchUp:
    """At start: ask what is due for an incident, as if it had just changed (bot-internal event)."""

    incident_id: str
    report: str | None  # its report's path, if one was written


class Outreach:
    def __init__(self, settings: Settings, service: RollbackService, poster: Poster, access: Access):
        self.settings = settings
        self.service = service
        self.reads = service.reads
        self.poster = poster
        self.access = access
        self.enabled = settings.paging is not None or settings.email is not None
        self.queue: asyncio.Queue[Event | UpdateDue | CatchUp] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._links: dict[str, str] = {}
        self._stopping = False

    def emit(self, event: Event | UpdateDue) -> None:
        """Called with every event the notifier gets: never blocks, never fails."""
        if self.enabled:
            self.queue.put_nowait(event)

    async def start(self) -> None:
        """Queue what is due for the incidents not closed, then start sending (what is pending first)."""
        if not self.enabled:
            return
        for status in (IncidentStatus.OPEN, IncidentStatus.RESOLVED):
            for incident in await self.reads.incidents(status):
                report = self.settings.reports_dir / f"INCIDENT_REPORT-{incident.id}.md"
                self.queue.put_nowait(CatchUp(incident.id, str(report) if report.is_file() else None))
        self._task = asyncio.create_task(self._consume(), name="outreach")
        self.service.outreach.start()

    async def drain(self) -> None:
        """Wait until every event so far has been looked at and every page and mail due has been sent or given up."""
        await self.queue.join()
        await self.service.outreach.drain()

    async def stop(self, flush_seconds: float = 1.0) -> None:
        """Queue what the events so far make due (it is kept in the store), then stop sending."""
        self._stopping = True
        try:
            await asyncio.wait_for(self.queue.join(), flush_seconds)
        except TimeoutError:
            log.warning("%d events were not looked at for pages and mail before shutdown", self.queue.qsize())
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.service.outreach.stop()

    async def _consume(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self._handle(event)
            except Exception:
                log.exception("could not work out the pages and mail for %s [%s]", type(event).__name__,
                              new_error_id())
            finally:
                self.queue.task_done()

    async def _handle(self, event: Event | UpdateDue | CatchUp) -> None:
        match event:
            case DeliveryEnded():
                return
            case UpdateDue(incident_id=incident_id):
                snapshot = await self.service.snapshot(incident_id)
                number = int(snapshot.elapsed_seconds // self.settings.bot.update_interval_seconds)
                await self._queue_due(incident_id, Occasion(Moment.UPDATE, update_number=number), event)
            case ReportWritten(incident=incident, final=final):
                await self._queue_due(incident.id, Occasion(Moment.REPORT, final=final,
                                                            notes=_notes_digest(incident)), event)
            case CatchUp(incident_id=incident_id, report=report):
                await self._queue_due(incident_id, Occasion(Moment.CHANGED), event)
                incident = await self.reads.incident(incident_id)
                if report and incident.status is not IncidentStatus.OPEN:
                    written = ReportWritten(incident, report)
                    await self._queue_due(incident_id, Occasion(Moment.REPORT, notes=_notes_digest(incident)), written)
            case _ if isinstance(getattr(event, "incident", None), Incident):
                await self._queue_due(event.incident.id, Occasion(Moment.CHANGED), event)

    async def _queue_due(self, incident_id: str, occasion: Occasion, event) -> None:
        for item in await self.service.outreach.due(incident_id, occasion):
            await self.service.outreach.queue(incident_id, item, await self._content(item, incident_id, event))

    # -- what is sent ------------------------------------------------------------------------------

    async def _content(self, item: Due, incident_id: str, event) -> dict:
        state = await self.reads.incident_state(incident_id)
        incident = state.incident
        link = await self._link(incident)
        if item.transport is Transport.PAGERDUTY:
            if item.kind == "resolve":
                return texts.page_resolve(incident.id)
            snapshot = await self.service.snapshot(incident.id)
            return texts.page_trigger(presenters.page_view(state, snapshot, self.settings,
                                                           await self._name(incident.declared_by), link))
        env = incident.environment
        match item.kind:
            case "alert":
                mail = texts.alert_mail(incident.id, env, self._alert_text(state), link)
            case "raised":
                by = _who(event)
                by = await self._name(by) if by else None
                mail = texts.raised_mail(incident.id, env, incident.level, state.level_name, by,
                                         self._alert_text(state), link)
            case "update":
                snapshot = await self.service.snapshot(incident.id)
                mail = texts.update_mail(incident.id, env, status_update(presenters.update_view(
                    snapshot, self.settings)).text, link)
            case "resolved":
                mail = texts.resolved_mail(incident.id, env, await self._resolved_text(incident),
                                           await _attachment(event), link)
            case _:
                report = await _attachment(event)
                if report is None:
                    raise FileNotFoundError(f"the report of {incident.id} could not be read")
                mail = texts.report_mail(incident.id, env, item.kind == "closed", report, link)
        return mail.fields()

    def _alert_text(self, state) -> str:
        view = presenters.alert_view(state)
        note = f"Progress, approvals and every step are posted in Slack. Incident {state.incident.id}."
        return texts.without_slack_markup(alert(replace(view, progress_note=note)).text)

    async def _resolved_text(self, incident: Incident) -> str:
        swapped = await self.reads.swapped_run(incident.id)
        if swapped is not None:
            return texts.without_slack_markup(resolved(presenters.resolved_view(incident, swapped, self.settings)).text)
        return texts.without_slack_markup(resolved_by_hand(incident.id, incident.environment, None,
                                                           incident.resolved_at).text)

    async def _link(self, incident: Incident) -> str:
        """The alert's permalink; the incident channel's while the alert is not posted yet (or Slack is slow)."""
        if incident.id in self._links:
            return self._links[incident.id]
        fallback = f"https://slack.com/app_redirect?channel={incident.channel}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (0 if self._stopping else LINK_WAIT_SECONDS)
        while incident.alert_ts is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
            incident = await self.reads.incident(incident.id)
        if incident.alert_ts is None:
            return fallback
        try:
            answer = await asyncio.wait_for(self.poster.api.chat_getPermalink(
                channel=incident.channel, message_ts=incident.alert_ts), SLACK_CALL_SECONDS)
        except (SlackApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("chat.getPermalink for %s failed (%s); linking the channel", incident.id, type(exc).__name__)
            return fallback
        self._links[incident.id] = answer["permalink"]
        return answer["permalink"]

    async def _name(self, user_id: str) -> str:
        try:
            return await asyncio.wait_for(self.access.name(user_id), SLACK_CALL_SECONDS)
        except (aiohttp.ClientError, OSError, TimeoutError):
            return user_id


def _who(event) -> str | None:
    """Who raised the level, when a person did: a raise, an assessment, a rollback they asked for."""
    if isinstance(event, RunStarted):
        return event.run.requested_by
    return getattr(event, "by", None)


def _notes_digest(incident: Incident) -> str:
    """Which version of what people wrote into the report (root cause, what failed, prevention); "" for none."""
    notes = [incident.root_cause, incident.what_failed, incident.prevention]
    if not any(notes):
        return ""
    return hashlib.sha256("\x1f".join(n or "" for n in notes).encode()).hexdigest()[:12]


async def _attachment(event) -> tuple[str, str] | None:
    """(file name, Markdown) of the report the event says was written."""
    path = getattr(event, "path", None)
    if not path:
        return None
    try:
        return Path(path).name, await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
    except OSError as exc:
        log.warning("the report %s could not be read for the mail: %s", path, exc)
        return None
