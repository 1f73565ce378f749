"""Turns the runner's events into Slack messages, in order, without ever holding the runner up.

The runner puts events on a queue and goes on; this task posts them one by one. Slack's 429 and
5xx answers are retried by the client's retry handlers; a message that still cannot be sent is
logged with an error id and skipped, because a rollback must never wait on Slack.
"""

from __future__ import annotations

import asyncio
import logging
import os

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from actions.config import Settings
from actions.events import (
    ApprovalDecided,
    ApprovalRequested,
    Event,
    IncidentChanged,
    RunEnded,
    RunStarted,
    StepChanged,
)
from actions.records import AlertStatus, ApprovalState, RunState, StepState
from actions.redact import Redactor
from actions.runner import new_error_id
from actions.store import AsyncStore
from bot import presenters
from messages.approval import approval_message
from messages.blocks import SlackMessage
from messages.incident import alert, decision_line, resolved, run_ended, run_started, step_line

log = logging.getLogger(__name__)
ANNOUNCED_STEP_STATES = {StepState.SUCCEEDED, StepState.FAILED, StepState.WAITING, StepState.CANCELLED}


class Notifier:
    def __init__(self, client: AsyncWebClient, settings: Settings, store: AsyncStore, redactor: Redactor,
                 plan_titles: dict[str, str]):
        self.client = client
        self.settings = settings
        self.store = store
        self.redact = redactor
        self.plan_titles = plan_titles
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def emit(self, event: Event) -> None:
        """Called by the runner: never blocks, never fails."""
        self.queue.put_nowait(event)

    def start(self) -> None:
        self._task = asyncio.create_task(self._consume(), name="notifier")

    async def drain(self) -> None:
        """Wait until every event emitted so far has been handled."""
        await self.queue.join()

    async def stop(self) -> None:
        await self.drain()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

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
            case RunStarted(incident=incident, run=run, plan_title=title):
                thread = await self._ensure_alert(incident, app_stopped=False)
                await self._post(incident.channel, run_started(title, run.environment, run.requested_by, run.id),
                                 thread_ts=thread)
            case IncidentChanged(incident=incident, app_stopped=stopped):
                await self._ensure_alert(incident, app_stopped=stopped, update=True)
                if incident.alert_status == AlertStatus.RESOLVED and event.run is not None:
                    steps = await self.store.steps(event.run.id)
                    run = await self.store.run(event.run.id)
                    await self._post(incident.channel, resolved(presenters.resolved_view(incident, run, steps, self.settings)))
            case StepChanged(incident=incident, step=step) if step.state in ANNOUNCED_STEP_STATES:
                await self._post(incident.channel, step_line(presenters.step_view(step)),
                                 thread_ts=await self._alert_ts(incident.id))
            case ApprovalRequested(incident=incident, approval=approval):
                answer = await self._post(incident.channel, approval_message(presenters.approval_view(approval, self.settings)))
                await self.store.set_approval_message(approval.id, answer["channel"], answer["ts"])
            case ApprovalDecided(incident=incident, approval=approval):
                await self._decided(incident, approval)
            case RunEnded():
                await self._run_ended(event)

    async def _post(self, channel: str, message: SlackMessage, **extra) -> dict:
        return (await self.client.chat_postMessage(
            channel=channel, text=self.redact(message.text), blocks=message.blocks, unfurl_links=False, **extra)).data

    async def _alert_ts(self, incident_id: str) -> str | None:
        return (await self.store.incident(incident_id)).alert_ts

    async def _ensure_alert(self, incident, *, app_stopped: bool, update: bool = False) -> str:
        """Post the INCIDENT ALERT once per incident; later, update it in place."""
        current = await self.store.incident(incident.id)
        message = alert(presenters.alert_view(current, app_stopped))
        if current.alert_ts is None:
            answer = await self._post(current.channel, message)
            await self.store.update_incident(current.id, alert_ts=answer["ts"])
            return answer["ts"]
        if update:
            await self.client.chat_update(channel=current.channel, ts=current.alert_ts, text=message.text, blocks=message.blocks)
        return current.alert_ts

    async def _decided(self, incident, approval) -> None:
        stored = await self.store.approval(approval.id)
        message = approval_message(presenters.approval_view(stored, self.settings))
        if stored.message_ts:
            await self.client.chat_update(channel=stored.channel, ts=stored.message_ts, text=message.text, blocks=message.blocks)
        if approval.state != ApprovalState.VOID:
            await self._post(incident.channel, decision_line(approval.state.value, approval.decided_by),
                             thread_ts=await self._alert_ts(incident.id))

    async def _run_ended(self, event: RunEnded) -> None:
        incident, run = event.incident, event.run
        view = presenters.run_end_view(incident, run, event.steps, event.outcome, self.plan_titles.get(run.plan, run.plan))
        thread = await self._alert_ts(incident.id)
        await self._post(incident.channel, run_ended(view), thread_ts=thread,
                         reply_broadcast=run.state is not RunState.SUCCEEDED)
        report = run.facts.get("report_path")
        if run.state is RunState.SUCCEEDED and report:
            content = await asyncio.to_thread(_read, report)
            await self.client.files_upload_v2(
                channel=incident.channel, content=self.redact(content), filename=os.path.basename(report),
                title=f"Incident report {incident.id}", initial_comment=f"📄 Incident report for {incident.id}")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()
