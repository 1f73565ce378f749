"""Sending to Slack for an incident: to the incident's current channel, redacted, paced, never twice.

Every post, update and upload becomes a letter in its channel's lane (`bot/outbox.py`), so the
caller never waits on Slack and Slack's per-channel rate is kept. What a letter does is decided
here, when it is sent, not when it was queued: the incident's channel and its alert's `ts` (the
thread) are read then, so a letter queued before the alert was posted still lands in its thread.

A post that timed out, hit a 5xx or lost its connection may have reached Slack all the same.
Each post carries its own id in its `metadata`, kept for as long as the letter is tried (a 429 that
the lane waits out included); once an attempt may have landed, nothing is posted again until the
channel (or the thread) has been searched for that id — a post found there is taken as sent, and
a search Slack cannot answer is tried again, never skipped. Slack being down for a while must not
lose a message either: a post is tried again with a growing pause for up to DELIVERY_SECONDS, while
the other channels' lanes go on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from actions.redact import Redactor
from actions.service import RollbackService
from bot.outbox import Letter, Outbox
from messages.blocks import SlackMessage, combined

log = logging.getLogger(__name__)

DELIVERY_SECONDS = 600.0  # how long a message is retried while Slack is down
FIRST_PAUSE, LONGEST_PAUSE = 1.0, 30.0
METADATA_EVENT = "rollback_bot_message"  # the metadata event type that carries a post's own id


def transient(exc: BaseException) -> bool:
    """Worth trying again: Slack overloaded or unreachable, not a request Slack refused."""
    if isinstance(exc, SlackApiError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError))


@dataclass
class PostState:
    """One letter's post across all its attempts: its own id, when it was first tried, and whether an
    attempt may have reached Slack (a 5xx or a lost answer: then it is searched for before any resend)."""

    own_id: str = field(default_factory=lambda: secrets.token_hex(8))
    since: float = field(default_factory=lambda: time.time() - 1)
    maybe_landed: bool = False


async def deliver(send: Callable[[], Awaitable[Any]], what: str, deadline_seconds: float = DELIVERY_SECONDS,
                  *, landed: Callable[[], Awaitable[Any]] | None = None, state: PostState | None = None) -> Any:
    """`send()`, tried again on transient failures with a growing pause until `deadline_seconds`.
    A 429 is raised at once: Slack refused it before acting, and the lane waits out its Retry-After.
    With `landed()`: after an attempt that may have reached Slack, `landed()` is asked before any
    resend — its answer is returned if it did; if Slack cannot say, it is asked again later."""
    state = state or PostState()
    deadline, pause = time.monotonic() + deadline_seconds, FIRST_PAUSE
    while True:
        if landed is not None and state.maybe_landed:
            try:
                found = await landed()
            except Exception as exc:  # Slack cannot say yet: never post again without knowing
                if not transient(exc) or time.monotonic() + pause > deadline:
                    raise
                log.info("could not check whether %s landed (%s); checking again in %.0f s", what,
                         type(exc).__name__, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, LONGEST_PAUSE)
                continue
            if found:
                log.info("%s reached Slack although the answer was lost: not sent again", what)
                return found
            state.maybe_landed = False
        try:
            return await send()
        except Exception as exc:
            if isinstance(exc, SlackApiError) and exc.response.status_code == 429:
                raise
            if not transient(exc) or time.monotonic() + pause > deadline:
                raise
            state.maybe_landed = landed is not None
            log.warning("Slack did not take %s (%s); trying again in %.0f s", what, type(exc).__name__, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)


class Poster:
    def __init__(self, client: AsyncWebClient, service: RollbackService, redact: Redactor, outbox: Outbox, *,
                 api: AsyncWebClient | None = None):
        self.client = client  # without slack-sdk's retries: the lanes pace, retry and deduplicate
        self.api = api or client  # with them: other calls (creating a channel, inviting people)
        self.reads = service.reads
        self.sent = service.sent
        self.redact = redact
        self.outbox = outbox
        self._dm_channels: dict[str, str] = {}  # user id -> the DM channel with them

    async def channel(self, incident_id: str) -> str:
        return (await self.reads.incident(incident_id)).channel

    async def alert_ts(self, incident_id: str) -> str | None:
        return (await self.reads.incident(incident_id)).alert_ts

    # -- what callers queue ----------------------------------------------------------------------

    def post(self, channel: str, message: SlackMessage, *, urgent: bool = False, what: str = "a message",
             on_sent: Callable[[dict], Awaitable[None]] | None = None) -> asyncio.Future:
        """A top-level post (also a DM, with a user id as `channel`)."""
        state = PostState()  # one id for every attempt, the lane's retries after a 429 included

        async def send() -> dict:
            answer = await self._post(channel, message, state=state)
            if on_sent is not None:
                await on_sent(answer)
            return answer
        return self.outbox.put(Letter(channel, f"{channel}:top", send, urgent=urgent, what=what))

    async def to_incident(self, incident_id: str, message: SlackMessage, *, thread: bool = False,
                          broadcast: bool = False, urgent: bool = False, progress: bool = False,
                          on_sent: Callable[[dict], Awaitable[None]] | None = None) -> asyncio.Future:
        """Post in the incident's channel; `thread` puts it under the alert. A `progress` line may be
        sent together with the progress lines queued right behind it, as one message."""
        channel = await self.channel(incident_id)
        state = PostState()  # one id for every attempt, the lane's retries after a 429 included

        async def send() -> dict:
            answer = await self._post(channel, message, await self.alert_ts(incident_id) if thread else None, broadcast,
                                      state=state)
            if on_sent is not None:
                await on_sent(answer)
            return answer

        async def merge(letters: list[Letter]) -> dict:
            return await self._post(channel, combined([letter.payload for letter in letters]),
                                    await self.alert_ts(incident_id) if thread else None, state=state)

        group = f"{channel}:thread:{incident_id}" if thread else f"{channel}:top"
        return self.outbox.put(Letter(channel, group, send, urgent=urgent, merge_key=group if progress else None,
                                      merge=merge if progress else None, payload=message,
                                      blocks=len(message.blocks)))

    def update(self, channel: str, ts: str | Callable[[], Awaitable[str | None]], message: SlackMessage, *,
               urgent: bool = False, replaces: str | None = None) -> asyncio.Future:
        """Replace a message in place; `ts` may be read when the update is sent (its post may still be
        queued). Updates with the same `replaces` key still queued are superseded by this one."""
        async def send() -> None:
            where = ts if isinstance(ts, str) else await ts()
            if where:
                await deliver(lambda: self.client.chat_update(channel=channel, ts=where, text=self._text(message),
                                                              blocks=message.blocks), "an update")
        return self.outbox.put(Letter(channel, f"{channel}:top", send, urgent=urgent, post=False, replaces=replaces))

    async def post_or_update(self, incident_id: str, kind: str, message: SlackMessage, *,
                             urgent: bool = False) -> asyncio.Future:
        """One message of `kind` per incident: posted the first time, updated in place after."""
        channel = await self.channel(incident_id)
        state = PostState()

        async def send() -> None:
            known = await self.sent.get(incident_id, kind)
            if known and known["ts"]:
                await deliver(lambda: self.client.chat_update(channel=known["channel"], ts=known["ts"],
                                                              text=self._text(message), blocks=message.blocks),
                              "an update")
                return
            answer = await self._post(channel, message, state=state)
            await self.sent.put(incident_id, kind, answer["channel"], answer["ts"])
        # Decided when sent, so a newer state still queued supersedes an older one either way.
        return self.outbox.put(Letter(channel, f"{channel}:top", send, urgent=urgent,
                                      replaces=f"{kind}:{incident_id}"))

    async def upload(self, incident_id: str, path: str, title: str, comment: str) -> asyncio.Future:
        channel = await self.channel(incident_id)

        async def send() -> None:
            content = await asyncio.to_thread(_read, path)
            await deliver(lambda: self.client.files_upload_v2(
                channel=channel, content=self.redact(content), filename=os.path.basename(path),
                title=title, initial_comment=comment), "a file")
        return self.outbox.put(Letter(channel, f"{channel}:top", send))

    # -- the Web API calls -------------------------------------------------------------------------

    def _text(self, message: SlackMessage) -> str:
        return self.redact(message.text)

    async def _post(self, channel: str, message: SlackMessage, thread_ts: str | None = None,
                    broadcast: bool = False, *, state: PostState | None = None) -> dict:
        """chat.postMessage, tagged with its own id, never posted twice (see the module's docstring)."""
        if channel[:1] in ("U", "W"):  # a page to a person: into their DM, whose history can be searched
            channel = await self._dm(channel)
        state = state or PostState()
        own_id, since = state.own_id, state.since
        extra: dict[str, Any] = {"thread_ts": thread_ts, "reply_broadcast": broadcast} if thread_ts else {}

        async def send() -> dict:
            answer = await self.client.chat_postMessage(
                channel=channel, text=self._text(message), blocks=message.blocks, unfurl_links=False,
                metadata={"event_type": METADATA_EVENT, "event_payload": {"id": own_id}}, **extra)
            return answer.data

        async def landed() -> dict | None:
            return await self._find(channel, thread_ts, own_id, since)

        return await deliver(send, "a message", landed=landed, state=state)

    async def _dm(self, user: str) -> str:
        """The DM channel (D…) with `user`, opened once (conversations.open is idempotent)."""
        if user not in self._dm_channels:
            answer = await deliver(lambda: self.client.conversations_open(users=user), "opening a DM")
            self._dm_channels[user] = answer["channel"]["id"]
        return self._dm_channels[user]

    async def _find(self, channel: str, thread_ts: str | None, own_id: str, since: float) -> dict | None:
        """The answer a post tagged `own_id` would have had, if it is in the channel (or the thread)."""
        if thread_ts:
            page = await self.client.conversations_replies(channel=channel, ts=thread_ts, oldest=f"{since:.6f}",
                                                           include_all_metadata=True, limit=100)
        else:
            page = await self.client.conversations_history(channel=channel, oldest=f"{since:.6f}",
                                                           include_all_metadata=True, limit=100)
        for found in page.get("messages", []):
            payload = (found.get("metadata") or {}).get("event_payload") or {}
            if payload.get("id") == own_id:
                return {"ok": True, "channel": channel, "ts": found["ts"], "message": found}
        return None


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()
