"""Sending to Slack at Slack's pace: one lane per channel, urgent letters first, progress coalesced.

Slack allows about one `chat.postMessage` per second per channel, with short bursts; beyond that
it answers 429 with `Retry-After`. A rollback produces bursts (eleven thread lines within 0.1 s of
the swap), so every letter goes into its channel's lane:

- each lane takes a token from its own bucket (`POSTS_PER_SECOND`, `BURST`) before a post, and
  a 429 pauses only that lane for `Retry-After`: one busy channel never delays another (the
  approvers' DMs, another incident's channel); the burst's last token is kept for urgent letters;
- urgent letters (approval requests and decisions, RESOLVED, pages to approvers) go ahead of the
  queued progress lines, together with the earlier letters of their own group (a thread, or a
  channel's top level), which go first: order within a group is kept;
- progress lines of one thread that pile up behind the bucket are sent as one message, not
  dropped; of several queued updates of one message (the alert, an approval request) only the
  newest is sent, in the place of the oldest;
- a letter that fails for good (Slack refused it) is logged with an error id and skipped: a
  rollback never waits on Slack, and the letters after it still go.

The letters' own Web API calls (and retries, and the check that a post that timed out did not
land) are the poster's (`bot/poster.py`); this module only schedules them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from slack_sdk.errors import SlackApiError

from actions.results import new_error_id

log = logging.getLogger(__name__)

POSTS_PER_SECOND = 1.0  # Slack's documented chat.postMessage rate per channel
BURST = 3  # a short burst Slack tolerates
MAX_MERGED_BLOCKS = 50  # Slack's blocks per message: merged progress lines stay within it


@dataclass(eq=False)
class Letter:
    """One thing to send to a channel."""

    channel: str
    group: str  # letters of one group keep their order (a thread, or the channel's top level)
    send: Callable[[], Awaitable[Any]]  # makes the Web API call(s); its result resolves `done`
    urgent: bool = False
    what: str = "a message"  # for the log, when it cannot be sent
    post: bool = True  # takes a token from the channel's bucket (chat.postMessage, a file share)
    # A progress line: letters with the same `merge_key` queued one after another may go as one
    # message, sent by `merge(letters)` instead of each one's `send`.
    merge_key: str | None = None
    merge: Callable[[list[Letter]], Awaitable[Any]] | None = None
    payload: Any = None  # what `merge` combines (the line's SlackMessage)
    blocks: int = 1  # the blocks it adds to a merged message
    # An in-place update: a queued letter with the same key is superseded by this one (which takes
    # its place in the queue, so nothing after it moves ahead of the message's newest state).
    replaces: str | None = None
    queued_at: float = field(default_factory=time.monotonic)
    done: asyncio.Future | None = None


class TokenBucket:
    def __init__(self, rate: float, burst: int):
        self.rate, self.capacity = rate, float(burst)
        self.tokens, self.stamp = float(burst), time.monotonic()

    def wait_seconds(self, keep: float = 0.0) -> float:
        """How long until a token is there with `keep` more left over (0: now)."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        need = 1 + keep
        return 0.0 if self.tokens >= need else (need - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1


class Lane:
    """The letters of one channel, sent one at a time."""

    def __init__(self, outbox: Outbox, channel: str):
        self.outbox, self.channel = outbox, channel
        self.queue: list[Letter] = []
        self.bucket = TokenBucket(outbox.rate, outbox.burst)
        # One token of the burst is kept for urgent letters: an approval request asked right after
        # the alert and the first progress lines still goes at once, not a second later.
        self.reserve = 1.0 if outbox.burst > 1 else 0.0
        self.wake = asyncio.Event()
        self.busy = False
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"slack lane {channel}")

    def _pick(self) -> tuple[int, bool]:
        """Which letter goes next, and whether it goes for an urgent one: the earliest letter still
        queued of the urgent letter that can go soonest (the fewest posts of its group ahead of it,
        which go first: order within a group is kept); without an urgent letter, the oldest."""
        best: tuple[int, int] | None = None  # (posts it waits for, index of its group's earliest letter)
        for index, letter in enumerate(self.queue):
            if letter.urgent:
                ahead = [other for other in self.queue[:index] if other.group == letter.group]
                cost = sum(other.post for other in ahead)
                start = self.queue.index(ahead[0]) if ahead else index
                if best is None or cost < best[0]:
                    best = (cost, start)
        return (best[1], True) if best else (0, False)

    def _take(self, pick: int) -> list[Letter]:
        """The picked letter, and if it is a progress line, the lines of its thread queued right
        behind it (as many as fit in one message)."""
        first = self.queue.pop(pick)
        batch, blocks = [first], first.blocks
        if first.merge_key is not None:
            for letter in list(self.queue):
                if letter.group == first.group and letter.merge_key != first.merge_key:
                    break  # keep the thread's order: a line of another kind in between ends the batch
                if letter.merge_key == first.merge_key:
                    if blocks + letter.blocks > MAX_MERGED_BLOCKS:
                        break
                    self.queue.remove(letter)
                    batch.append(letter)
                    blocks += letter.blocks
        return batch

    async def _run(self) -> None:
        while True:
            while not self.queue:
                self.wake.clear()
                await self.wake.wait()
            pick, urgent = self._pick()
            if self.queue[pick].post:
                if pause := self.bucket.wait_seconds(keep=0.0 if urgent else self.reserve):
                    # Choose again once a token is there, or as soon as a letter comes (it may be
                    # urgent); more progress lines may join the batch meanwhile.
                    self.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), pause)
                    continue
                self.bucket.take()
            batch = self._take(pick)
            self.busy = True
            try:
                result = await self._send(batch)
                for letter in batch:
                    if not letter.done.done():
                        letter.done.set_result(result)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error_id = new_error_id()
                detail = exc.response.get("error") if isinstance(exc, SlackApiError) else repr(exc)
                log.error("could not send %s to %s (%s) [%s]; the next messages still go",
                          " and ".join(dict.fromkeys(letter.what for letter in batch)), self.channel,
                          self.outbox.redact(str(detail)), error_id)
                for letter in batch:
                    if not letter.done.done():
                        letter.done.set_exception(exc)
                        letter.done.exception()  # retrieved: a caller that does not wait is not warned
            finally:
                self.busy = False
                self.outbox.sent(len(batch))

    async def _send(self, batch: list[Letter]) -> Any:
        """Send a batch whose token was taken; a 429 pauses this lane only, for Retry-After."""
        first = batch[0]
        while True:
            try:
                if len(batch) > 1:
                    return await first.merge(batch)
                return await first.send()
            except SlackApiError as exc:
                if exc.response.status_code != 429:
                    raise
                retry_after = float(exc.response.headers.get("Retry-After", 1) or 1)
                log.warning("Slack paced %s (429): waiting %.0f s before sending to it again", self.channel, retry_after)
                self.bucket.tokens = 0  # Slack's count says the burst is spent
                await asyncio.sleep(retry_after)
                if first.post:
                    await asyncio.sleep(self.bucket.wait_seconds())
                    self.bucket.take()


class Outbox:
    def __init__(self, redact: Callable[[str], str], *, rate: float = POSTS_PER_SECOND, burst: int = BURST):
        self.redact, self.rate, self.burst = redact, rate, burst
        self.lanes: dict[str, Lane] = {}
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def put(self, letter: Letter) -> asyncio.Future:
        """Queue a letter; the future resolves with its send's result (or its error). Never blocks."""
        letter.done = asyncio.get_running_loop().create_future()
        lane = self.lanes.get(letter.channel)
        if lane is None:
            lane = self.lanes[letter.channel] = Lane(self, letter.channel)
        older = letter.replaces and next((queued for queued in lane.queue if queued.replaces == letter.replaces), None)
        if older:
            older.send, older.urgent = letter.send, older.urgent or letter.urgent
            letter.done = older.done  # both callers learn how the newest state went
            return letter.done
        lane.queue.append(letter)
        lane.wake.set()
        self._pending += 1
        self._idle.clear()
        return letter.done

    def sent(self, count: int) -> None:
        self._pending -= count
        if self._pending == 0:
            self._idle.set()

    async def drain(self) -> None:
        """Wait until every letter queued so far was sent (or given up)."""
        await self._idle.wait()

    def depth(self) -> int:
        return self._pending

    def oldest_seconds(self) -> float:
        queued = [letter.queued_at for lane in self.lanes.values() for letter in lane.queue]
        return time.monotonic() - min(queued) if queued else 0.0

    async def close(self) -> None:
        for lane in self.lanes.values():
            lane.task.cancel()
        await asyncio.gather(*(lane.task for lane in self.lanes.values()), return_exceptions=True)
