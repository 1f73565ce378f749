"""`/rollback watch <env> [minutes|stop]`: the running watches, one per environment, and their rules.

The desk starts and stops watchers, audits every start, stop, alert and end, and says where each
event is posted: the environment's open incident's channel, looked up when the event is posted (an
incident declared during the watch gets the alerts that follow), else the bot's incident channel.
Posting is `bot/`'s: the watcher's events go to the `emit` it is given, which must not block.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

import readable
from actions.config import Settings
from actions.results import InvalidArguments, NotPossible, WatchOff, WatchOn
from actions.store.records import Incident
from actions.store.sqlite import AsyncStore
from actions.watch.watcher import WatchAlert, WatchEnded, Watcher, WatchEvent

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


class WatchDesk:
    def __init__(self, settings: Settings, store: AsyncStore, emit: Callable[[WatchEvent], None]):
        self.settings = settings
        self.store = store
        self._emit_out = emit
        self._running: dict[str, Watch] = {}

    def running(self, environment: str) -> Watch | None:
        watch = self._running.get(environment)
        if watch is not None and watch.watcher.done:  # ended without a WatchEnded: must not block a new one
            self._forget(watch.watcher)
            return None
        return watch

    async def command(self, user: str, environment: str, word: str | None) -> WatchOn | WatchOff | NotPossible | InvalidArguments:
        """Start a watch (`word` is its minutes, or None) or stop one (`word` is "stop"); the service
        has checked the environment and the actor's role."""
        if word is not None and word.lower() == "stop":
            return await self._stop(user, environment)
        minutes = parse_minutes(word)
        if isinstance(minutes, str):
            return InvalidArguments(minutes)
        return await self._start(user, environment, minutes)

    async def _start(self, user: str, environment: str, minutes: float) -> WatchOn | NotPossible:
        running = self.running(environment)
        if running is not None:
            return NotPossible(
                f"`{environment}` is already being watched: started by <@{running.watcher.started_by}> for "
                f"{readable.duration(running.watcher.minutes * 60)}, {readable.duration(running.seconds_left())} left. "
                f"One watch per environment; to start a new one, first stop it with `/rollback watch {environment} stop`")
        # No await between the check above and here: the check cannot go stale.
        watcher = Watcher(self.settings.environments[environment], lambda event: self._emit(watcher, event),
                          minutes=minutes, started_by=user)
        self._running[environment] = Watch(watcher, time.monotonic())
        watcher.start()
        incident = await self.open_incident(environment)
        await self.store.audit(user, "watch.started", environment=environment, incident_id=incident and incident.id,
                               minutes=minutes)
        return WatchOn(environment, minutes, self._channel(incident))

    async def _stop(self, user: str, environment: str) -> WatchOff | NotPossible:
        running = self.running(environment)
        if running is None:
            return NotPossible(f"no watch of `{environment}` is running, so there is nothing to stop. "
                               f"Start one with `/rollback watch {environment} [minutes]`")
        ended = await self.stop(running, f"stopped by <@{user}>")
        incident = await self.open_incident(environment)
        await self.store.audit(user, "watch.stopped", environment=environment, incident_id=incident and incident.id,
                               minutes=running.watcher.minutes, started_by=running.watcher.started_by)
        return WatchOff(environment, self._channel(incident), ended.summary.seconds if ended else None,
                        ended.reason if ended else None)

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
        await asyncio.gather(*(self.stop(watch, reason) for watch in list(self._running.values())))

    async def open_incident(self, environment: str) -> Incident | None:
        return next((i for i in await self.store.open_incidents() if i.environment == environment), None)

    async def recorded(self, event: WatchEvent) -> str:
        """Audit an event before it is posted (a Slack failure cannot lose the record); returns the
        channel to post it to."""
        incident = await self.open_incident(event.environment)
        where = {"environment": event.environment, "incident_id": incident.id if incident else None}
        if isinstance(event, WatchAlert):
            await self.store.audit("bot", "watch.alert", **where, kind=str(event.kind), pid=event.pid)
        elif isinstance(event, WatchEnded):
            s = event.summary
            await self.store.audit("bot", "watch.ended", **where, reason=event.reason, seconds=round(s.seconds, 1),
                                   polls=s.polls, failed_polls=s.failed_polls, alerts=s.alerts)
        return self._channel(incident)

    def _channel(self, incident: Incident | None) -> str:
        return incident.channel if incident else self.settings.bot.incident_channel

    def _emit(self, watcher: Watcher, event: WatchEvent) -> None:
        if isinstance(event, WatchEnded):
            self._forget(watcher)  # at once, not once Slack has heard: a new watch may start right away
        self._emit_out(event)

    def _forget(self, watcher: Watcher) -> None:
        watch = self._running.get(watcher.env.name)
        if watch is not None and watch.watcher is watcher:
            del self._running[watcher.env.name]
