"""`/rollback watch`: the watchers' events posted to Slack, in order, never holding a poll up.

The watches themselves (one per environment, their limits, the audit) are the service's
(`actions/watch/desk.py`). `Watcher.emit` is synchronous and is called from inside the poll loop,
so events only go on a queue here; one task records each and queues its message in the channel's
lane (`bot/outbox.py`). A slow or failing Slack therefore never delays a poll, and a post that
fails is logged there (redacted, with an error id) and skipped: the watch goes on.
"""

from __future__ import annotations

import asyncio
import logging

from actions.redact import Redactor
from actions.results import new_error_id
from actions.service import RollbackService
from actions.status import WatchAlert, WatchEnded, WatchEvent, WatchStarted
from bot.poster import Poster
from messages.blocks import SlackMessage
from messages.watch import watch_alert, watch_ended, watch_started

log = logging.getLogger(__name__)

FLUSH_SECONDS = 10.0  # at shutdown, how long the last events may take to go out


class WatchPoster:
    def __init__(self, service: RollbackService, poster: Poster, redact: Redactor):
        self.service = service
        self.poster = poster
        self.redact = redact
        self._queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def emit(self, event: WatchEvent) -> None:
        """Called from the watcher's poll loop: never blocks, never fails."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._post_events(), name="watch-poster")
        self._queue.put_nowait(event)

    async def stop(self, flush_seconds: float = FLUSH_SECONDS) -> None:
        """Record and queue what the stopped watches emitted (within limits), then end the posting task."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), flush_seconds)
        except TimeoutError:
            log.warning("%d watch messages were not posted before shutdown", self._queue.qsize())
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _post_events(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                channel = await self.service.watches.recorded(event)  # audited before it is posted
                self.poster.post(channel, message_of(event),  # queued: the lane sends it at Slack's pace
                                 what=f"the watch's {type(event).__name__} for {event.environment}")
            except Exception as exc:  # never stop: the next event may get through
                log.error("could not record the watch's %s for %s (%r) [%s]", type(event).__name__,
                          event.environment, self.redact(repr(exc)), new_error_id())
            finally:
                self._queue.task_done()


def message_of(event: WatchEvent) -> SlackMessage:
    match event:
        case WatchStarted():
            return watch_started(event)
        case WatchAlert():
            return watch_alert(event)
        case WatchEnded():
            return watch_ended(event)
    raise TypeError(f"not a watch event: {event!r}")
