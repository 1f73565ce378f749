"""`/rollback watch`: the watchers' events posted to Slack, in order, never holding a poll up.

The watches themselves (one per environment, their limits, the audit) are the service's
(`actions/watch/desk.py`). `Watcher.emit` is synchronous and is called from inside the poll loop,
so events only go on a queue here; one task posts them in order. A slow or failing Slack therefore
never delays a poll, and a post that fails is logged (redacted, with an error id) and skipped: the
watch goes on.
"""

from __future__ import annotations

import asyncio
import logging

from slack_sdk.errors import SlackApiError

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

    async def stop(self) -> None:
        """Post what the stopped watches emitted (within limits), then end the posting task."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), FLUSH_SECONDS)
        except TimeoutError:
            log.warning("%d watch messages were not posted before shutdown", self._queue.qsize())
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _post_events(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                channel = await self.service.watches.recorded(event)  # audited before it is posted
                await self.poster.post(channel, message_of(event))
            except Exception as exc:  # never stop posting: the next event may get through
                error_id = new_error_id()
                detail = exc.response.get("error") if isinstance(exc, SlackApiError) else repr(exc)
                log.error("could not post the watch's %s for %s (%s) [%s]", type(event).__name__,
                          event.environment, self.redact(str(detail)), error_id)
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
