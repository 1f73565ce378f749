"""`/rollback watch <env> [minutes|stop]`: the running watches (one per environment) and their posts.

`Watcher.emit` is synchronous and is called from inside the poll loop, so events only go on a
queue here; one task posts them in order. A slow or failing Slack therefore never delays a poll,
and a post that fails is logged (redacted, with an error id) and skipped: the watch goes on.
Each event goes to the environment's open incident's channel, looked up when it is posted (an
incident declared during the watch gets the alerts that follow), else to the bot's incident
channel.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError

from actions.config import Settings
from actions.engine.runner import new_error_id
from actions.redact import Redactor
from actions.store.records import Incident, Role
from actions.store.sqlite import AsyncStore
from actions.watch.watcher import WatchAlert, WatchEnded, Watcher, WatchEvent, WatchStarted
from bot.poster import Poster
from messages import replies
from messages.blocks import SlackMessage, mention
from messages.watch import watch_alert, watch_ended, watch_started
from readable import duration

if TYPE_CHECKING:
    from bot.app import Deps

log = logging.getLogger(__name__)

DEFAULT_MINUTES = 30.0
MAX_MINUTES = 240.0  # a watch is for one migration; a longer one is more likely forgotten than needed
STOP_WAIT_SECONDS = 10.0  # a stopped watcher ends within about a second (it abandons a hanging poll)


@dataclass(frozen=True)
class Watch:
    """A running watch and when it began (monotonic seconds)."""

    watcher: Watcher
    started_at: float

    def seconds_left(self) -> float:
        return max(0.0, self.watcher.minutes * 60 - (time.monotonic() - self.started_at))


class Watches:
    """The registry of running watches, one per environment, and the task that posts their events."""

    def __init__(self, settings: Settings, store: AsyncStore, poster: Poster, redact: Redactor):
        self.settings = settings
        self.store = store
        self.poster = poster
        self.redact = redact
        self._running: dict[str, Watch] = {}
        self._queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def running(self, environment: str) -> Watch | None:
        watch = self._running.get(environment)
        if watch is not None and watch.watcher.done:  # ended without a WatchEnded: must not block a new one
            self._forget(watch.watcher)
            return None
        return watch

    def start(self, environment: str, user: str, minutes: float) -> Watch:
        """Start watching (no await inside: the caller's check that none runs cannot go stale)."""
        if self.running(environment) is not None:
            raise RuntimeError(f"{environment} is already watched")
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._post_events(), name="watch-poster")
        # The lambda reads `watcher` when called, which is only after start() below.
        watcher = Watcher(self.settings.environments[environment], lambda event: self._emit(watcher, event),
                          minutes=minutes, started_by=user)
        self._running[environment] = watch = Watch(watcher, time.monotonic())
        watcher.start()
        return watch

    async def stop(self, watch: Watch, reason: str) -> WatchEnded | None:
        """Stop a watch and wait for its end (None if it is not over in time)."""
        watch.watcher.stop(reason)
        try:
            return await asyncio.wait_for(watch.watcher.wait(), STOP_WAIT_SECONDS)
        except TimeoutError:
            log.warning("the watch of %s did not end within %s s of being stopped", watch.watcher.env.name,
                        STOP_WAIT_SECONDS)
            return None

    async def stop_all(self, reason: str = "the bot is shutting down") -> None:
        """At shutdown: stop every watch, post what they emitted (within limits), end the posting task."""
        await asyncio.gather(*(self.stop(watch, reason) for watch in list(self._running.values())))
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), STOP_WAIT_SECONDS)
        except TimeoutError:
            log.warning("%d watch messages were not posted before shutdown", self._queue.qsize())
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def open_incident(self, environment: str) -> Incident | None:
        return next((i for i in await self.store.open_incidents() if i.environment == environment), None)

    def _emit(self, watcher: Watcher, event: WatchEvent) -> None:
        if isinstance(event, WatchEnded):
            self._forget(watcher)  # at once, not once Slack has heard: a new watch may start right away
        self._queue.put_nowait(event)

    def _forget(self, watcher: Watcher) -> None:
        watch = self._running.get(watcher.env.name)
        if watch is not None and watch.watcher is watcher:
            del self._running[watcher.env.name]

    async def _post_events(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._post(event)
            except Exception as exc:  # never stop posting: the next event may get through
                error_id = new_error_id()
                detail = exc.response.get("error") if isinstance(exc, SlackApiError) else repr(exc)
                log.error("could not post the watch's %s for %s (%s) [%s]", type(event).__name__,
                          event.environment, self.redact(str(detail)), error_id)
            finally:
                self._queue.task_done()

    async def _post(self, event: WatchEvent) -> None:
        incident = await self.open_incident(event.environment)
        where = {"environment": event.environment, "incident_id": incident.id if incident else None}
        # Audited before posting, so a Slack failure cannot lose the record.
        if isinstance(event, WatchAlert):
            await self.store.audit("bot", "watch.alert", **where, kind=str(event.kind), pid=event.pid)
        elif isinstance(event, WatchEnded):
            s = event.summary
            await self.store.audit("bot", "watch.ended", **where, reason=event.reason, seconds=round(s.seconds, 1),
                                   polls=s.polls, failed_polls=s.failed_polls, alerts=s.alerts)
        channel = incident.channel if incident else self.settings.bot.incident_channel
        await self.poster.post(channel, message_of(event))


def message_of(event: WatchEvent) -> SlackMessage:
    match event:
        case WatchStarted():
            return watch_started(event)
        case WatchAlert():
            return watch_alert(event)
        case WatchEnded():
            return watch_ended(event)
    raise TypeError(f"not a watch event: {event!r}")


def parse_minutes(word: str | None) -> float | str:
    """The watch's length in minutes, or what is wrong with `word`."""
    if word is None:
        return DEFAULT_MINUTES
    try:
        minutes = float(word)
    except ValueError:
        minutes = math.nan
    if not math.isfinite(minutes) or minutes <= 0:
        return f"Minutes must be a positive number (like `30`) or `stop`, not `{word}`"
    if minutes > MAX_MINUTES:
        return (f"A watch lasts at most {MAX_MINUTES:g} minutes, not {word}; start another one when it ends "
                f"if the migration is still running")
    return minutes


async def watch_command(deps: Deps, user: str, args: list[str]) -> SlackMessage:
    """`/rollback watch <env> [minutes|stop]`: start or stop a watch (operators); returns the reply."""
    if not args or len(args) > 2:
        return replies.usage_error("watch", "Name one environment" if not args else
                                   f"Unexpected words after `{args[1]}`: {' '.join(args[2:])}")
    environment = args[0].lower()
    if environment not in deps.settings.environments:
        return replies.unknown_environment(environment, list(deps.settings.environments))
    stopping = len(args) == 2 and args[1].lower() == "stop"
    minutes = None if stopping else parse_minutes(args[1] if len(args) == 2 else None)
    if isinstance(minutes, str):
        return replies.usage_error("watch", minutes)
    actor = await deps.access.actor(user)
    if not actor.has(Role.OPERATOR):
        await deps.store.audit(user, "watch.refused", outcome="refused", environment=environment,
                               reason="not an operator", stop=stopping)
        return replies.refused("only operators may start or stop a watch", list(deps.settings.bot.operators))
    if stopping:
        return await _stop(deps, user, environment)
    return await _start(deps, user, environment, minutes)


async def _start(deps: Deps, user: str, environment: str, minutes: float) -> SlackMessage:
    running = deps.watches.running(environment)
    if running is not None:
        return replies.not_possible(
            f"`{environment}` is already being watched: started by {mention(running.watcher.started_by)} for "
            f"{duration(running.watcher.minutes * 60)}, {duration(running.seconds_left())} left. One watch per "
            f"environment; to start a new one, first stop it with `/rollback watch {environment} stop`")
    deps.watches.start(environment, user, minutes)
    incident = await deps.watches.open_incident(environment)
    await deps.store.audit(user, "watch.started", environment=environment, incident_id=incident and incident.id,
                           minutes=minutes)
    channel = incident.channel if incident else deps.settings.bot.incident_channel
    return replies.note(f"👀 Started watching `{environment}` for {duration(minutes * 60)}; alerts go to <#{channel}>. "
                        f"It stops by itself; to end it sooner: `/rollback watch {environment} stop`.")


async def _stop(deps: Deps, user: str, environment: str) -> SlackMessage:
    running = deps.watches.running(environment)
    if running is None:
        return replies.not_possible(f"no watch of `{environment}` is running, so there is nothing to stop. "
                                    f"Start one with `/rollback watch {environment} [minutes]`")
    ended = await deps.watches.stop(running, f"stopped by {mention(user)}")
    incident = await deps.watches.open_incident(environment)
    await deps.store.audit(user, "watch.stopped", environment=environment, incident_id=incident and incident.id,
                           minutes=running.watcher.minutes, started_by=running.watcher.started_by)
    channel = incident.channel if incident else deps.settings.bot.incident_channel
    if ended is None:
        return replies.note(f"Stopping the watch of `{environment}`; its summary will be posted in <#{channel}>.")
    # The reason says who stopped it, or that its time ran out just before the stop arrived.
    return replies.note(f"🏁 The watch of `{environment}` ended after {duration(ended.summary.seconds)}: "
                        f"{ended.reason}. Its summary is posted in <#{channel}>.")
