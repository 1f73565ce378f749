"""Sending to Slack for an incident: always to the incident's current channel, redacted.

The incident's channel is read from the store at the moment of sending: it may have become the
incident's own channel after the event was emitted.

Slack being down for a while must not lose a message (an approval request, a run's end): after
slack-sdk's own retries give up on a 429, a 5xx or a connection error, the send is tried again
with a growing pause for up to DELIVERY_SECONDS. Posting happens on the notifier's task, so the
rollback never waits for it; the messages after it wait, which keeps the channel in order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Awaitable, Callable

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from actions.redact import Redactor
from actions.service import RollbackService
from messages.blocks import SlackMessage

log = logging.getLogger(__name__)

DELIVERY_SECONDS = 600.0  # how long a message is retried while Slack is down
FIRST_PAUSE, LONGEST_PAUSE = 1.0, 30.0


def transient(exc: BaseException) -> bool:
    """Worth trying again: Slack overloaded or unreachable, not a request Slack refused."""
    if isinstance(exc, SlackApiError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError))


async def deliver(send: Callable[[], Awaitable[Any]], what: str, deadline_seconds: float = DELIVERY_SECONDS) -> Any:
    deadline, pause = time.monotonic() + deadline_seconds, FIRST_PAUSE
    while True:
        try:
            return await send()
        except Exception as exc:
            if not transient(exc) or time.monotonic() + pause > deadline:
                raise
            log.warning("Slack did not take %s (%s); trying again in %.0f s", what, type(exc).__name__, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)


class Poster:
    def __init__(self, client: AsyncWebClient, service: RollbackService, redact: Redactor):
        self.client = client
        self.reads = service.reads
        self.sent = service.sent
        self.redact = redact

    async def channel(self, incident_id: str) -> str:
        return (await self.reads.incident(incident_id)).channel

    async def alert_ts(self, incident_id: str) -> str | None:
        return (await self.reads.incident(incident_id)).alert_ts

    async def post(self, channel: str, message: SlackMessage, **extra) -> dict:
        answer = await deliver(lambda: self.client.chat_postMessage(
            channel=channel, text=self.redact(message.text), blocks=message.blocks, unfurl_links=False, **extra),
            "a message")
        return answer.data

    async def to_incident(self, incident_id: str, message: SlackMessage, *, thread: bool = False,
                          broadcast: bool = False) -> dict:
        """Post in the incident's channel; `thread` puts it under the alert."""
        extra = {}
        if thread:
            extra["thread_ts"] = await self.alert_ts(incident_id)
            extra["reply_broadcast"] = broadcast
        return await self.post(await self.channel(incident_id), message, **extra)

    async def update(self, channel: str, ts: str, message: SlackMessage) -> None:
        await deliver(lambda: self.client.chat_update(
            channel=channel, ts=ts, text=self.redact(message.text), blocks=message.blocks), "an update")

    async def post_or_update(self, incident_id: str, kind: str, message: SlackMessage) -> None:
        """One message of `kind` per incident: posted the first time, updated in place after."""
        known = await self.sent.get(incident_id, kind)
        if known and known["ts"]:
            await self.update(known["channel"], known["ts"], message)
            return
        answer = await self.to_incident(incident_id, message)
        await self.sent.put(incident_id, kind, answer["channel"], answer["ts"])

    async def upload(self, incident_id: str, path: str, title: str, comment: str) -> None:
        content = await asyncio.to_thread(_read, path)
        channel = await self.channel(incident_id)
        await deliver(lambda: self.client.files_upload_v2(
            channel=channel, content=self.redact(content), filename=os.path.basename(path),
            title=title, initial_comment=comment), "a file")


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()
