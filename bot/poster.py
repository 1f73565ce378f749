"""Sending to Slack for an incident: always to the incident's current channel, redacted.

The incident's channel is read from the store at the moment of sending: it may have become the
incident's own channel after the event was emitted.
"""

from __future__ import annotations

import asyncio
import os

from slack_sdk.web.async_client import AsyncWebClient

from actions.redact import Redactor
from actions.store import AsyncStore
from messages.blocks import SlackMessage


class Poster:
    def __init__(self, client: AsyncWebClient, store: AsyncStore, redact: Redactor):
        self.client = client
        self.store = store
        self.redact = redact

    async def channel(self, incident_id: str) -> str:
        return (await self.store.incident(incident_id)).channel

    async def alert_ts(self, incident_id: str) -> str | None:
        return (await self.store.incident(incident_id)).alert_ts

    async def post(self, channel: str, message: SlackMessage, **extra) -> dict:
        answer = await self.client.chat_postMessage(
            channel=channel, text=self.redact(message.text), blocks=message.blocks, unfurl_links=False, **extra)
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
        await self.client.chat_update(channel=channel, ts=ts, text=self.redact(message.text), blocks=message.blocks)

    async def post_or_update(self, incident_id: str, kind: str, message: SlackMessage) -> None:
        """One message of `kind` per incident: posted the first time, updated in place after."""
        known = await self.store.message(incident_id, kind)
        if known and known["ts"]:
            await self.update(known["channel"], known["ts"], message)
            return
        answer = await self.to_incident(incident_id, message)
        await self.store.set_message(incident_id, kind, answer["channel"], answer["ts"])

    async def upload(self, incident_id: str, path: str, title: str, comment: str) -> None:
        content = await asyncio.to_thread(_read, path)
        await self.client.files_upload_v2(
            channel=await self.channel(incident_id), content=self.redact(content), filename=os.path.basename(path),
            title=title, initial_comment=comment)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()
