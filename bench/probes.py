"""App-visible downtime: probes that try every 100 ms, and the longest stretch of failures.

A stretch runs from the start of the first failed attempt to the start of the next successful
one, so a probe that hangs (connect timeout) counts the whole hang as downtime.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import psycopg

INTERVAL = 0.1


class Probe:
    """Calls ``attempt`` every INTERVAL seconds (never two at once) and records (start, ok)."""

    def __init__(self, name: str, attempt: Callable[[], Awaitable[bool]]):
        self.name = name
        self.attempt = attempt
        self.samples: list[tuple[float, bool]] = []
        self._task: asyncio.Task | None = None

    def start(self) -> Probe:
        self._task = asyncio.create_task(self._loop(), name=f"probe:{self.name}")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        next_at = time.perf_counter()
        while True:
            started = time.perf_counter()
            try:
                ok = await self.attempt()
            except Exception:  # any failure is downtime, whatever its kind
                ok = False
            self.samples.append((started, ok))
            next_at = max(next_at + INTERVAL, time.perf_counter())
            await asyncio.sleep(next_at - time.perf_counter())

    def outages(self) -> list[tuple[float, float]]:
        return outages(self.samples)


def outages(samples: list[tuple[float, bool]]) -> list[tuple[float, float]]:
    """(start, end) of every stretch of failures; one still failing at the end runs to the last sample."""
    spans, down_since = [], None
    for at, ok in samples:
        if not ok and down_since is None:
            down_since = at
        elif ok and down_since is not None:
            spans.append((down_since, at))
            down_since = None
    if down_since is not None:
        spans.append((down_since, samples[-1][0] + INTERVAL))
    return spans


def longest(spans: list[tuple[float, float]]) -> float:
    """The longest stretch after merging overlapping spans (of one probe or of several)."""
    best, current = 0.0, None
    for start, end in sorted(spans):
        if current and start <= current[1]:
            current = (current[0], max(current[1], end))
        else:
            current = (start, end)
        best = max(best, current[1] - current[0])
    return best


def database_probe(dsn: str) -> Probe:
    """Connects to the live database *name* afresh each time, as an app's new connection would,
    and reads a row of ``sales``: a bare ``SELECT 1`` would pass on the runbook's freshly created,
    still empty database, which no application could use."""
    async def attempt() -> bool:
        async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=2, autocommit=True) as conn:
            row = await (await conn.execute("SELECT id FROM sales LIMIT 1")).fetchone()
        return row is not None
    return Probe("database", attempt)


def health_probe(url: str, session: aiohttp.ClientSession) -> Probe:
    async def attempt() -> bool:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
            return resp.status == 200
    return Probe("health", attempt)


class Probes:
    """Both probes, started and stopped together; ``downtime()`` gives the figures."""

    def __init__(self, dsn: str, health_url: str):
        self.dsn, self.health_url = dsn, health_url
        self._session: aiohttp.ClientSession | None = None
        self.db: Probe | None = None
        self.health: Probe | None = None

    async def __aenter__(self) -> Probes:
        self._session = aiohttp.ClientSession()
        self.db = database_probe(self.dsn).start()
        self.health = health_probe(self.health_url, self._session).start()
        await asyncio.sleep(0.3)  # a few good samples first, so an outage has a clear start
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.sleep(0.3)  # and a few after, so a late recovery is seen
        await self.db.stop()
        await self.health.stop()
        await self._session.close()

    def downtime(self) -> dict[str, float]:
        db, health = self.db.outages(), self.health.outages()
        return {"downtime_s": longest(db + health), "db_downtime_s": longest(db),
                "health_downtime_s": longest(health)}
