"""Is the bot still responsive while it works?

- Ack latency of ``/rollback status`` (200 commands, 20 at a time) fired as soon as the bot's own
  restore step is running. A raw ``pg_restore -j`` loop runs beside it for the whole burst, so a
  restore is running throughout even when the bot's own restore of a small dump ends first.
- Jitter of the scheduled status updates, with ``update_interval_seconds`` short, over the same
  incident, held open (waiting for approval) until enough updates have been posted.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time

from actions.store.records import StepState
from bench.botrun import CHANNEL, OPERATOR, Bot, full_rollback, start_bot
from bench.setup import Workbench, drop, reset_live, run
from demo.backup import pg_command_args
from demo.flag_app import FlagFileApp

UPDATE = "🔄 STATUS UPDATE"


async def _restore_loop(wb: Workbench, jobs: int) -> None:
    """Keep a restore running: drop, create and restore a scratch copy, over and over."""
    name = f"{wb.prefix}_load"
    args, env, _ = pg_command_args(wb.dsn(name))
    while True:
        await drop(wb.admin_dsn, name)
        await run("createdb", *args, name, env=env)
        await run("pg_restore", *args, "-d", name, f"--jobs={jobs}", str(wb.dump), env=env)


async def _restore_started(bot: Bot) -> None:
    while True:
        runs = await bot.store.runs()
        if runs:
            steps = await bot.store.steps(runs[0].id)
            if any(s.key == "restore_aside" and s.state is not StepState.PENDING for s in steps):
                return
        await asyncio.sleep(0.02)


async def _burst(bot: Bot, count: int, concurrency: int) -> list[tuple[float, float, int]]:
    """(sent at, ack ms, HTTP status) per command."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> tuple[float, float, int]:
        async with gate:
            sent = time.time()
            reply = await bot.slack.send_command(OPERATOR, "status", channel_id=CHANNEL)
            return sent, reply.elapsed_ms, reply.status
    return await asyncio.gather(*(one() for _ in range(count)))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


async def responsiveness(wb: Workbench, app: FlagFileApp, *, jobs: int, commands: int, concurrency: int,
                         interval: float, min_updates: int) -> dict:
    await reset_live(wb)
    bot = await start_bot(wb, app, stop_app="at_swap", jobs=jobs, interval=interval)
    acks: list[tuple[float, float, int]] = []
    load: asyncio.Task | None = None

    async def burst_during_restore() -> None:
        nonlocal acks, load
        await _restore_started(bot)
        load = asyncio.create_task(_restore_loop(wb, jobs))
        try:
            acks = await _burst(bot, commands, concurrency)
        finally:
            load.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await load
            await drop(wb.admin_dsn, f"{wb.prefix}_load")

    try:
        # hold the approval long enough for min_updates updates while the incident is open
        rollback = await full_rollback(bot, approval_delay=(min_updates + 1) * interval,
                                       on_started=burst_during_restore)
        updates = [float(m.ts) for m in bot.slack.messages(CHANNEL, include_replies=True)
                   if m.text.startswith(UPDATE)]
        run_ = (await bot.store.runs())[0]
        restore = next(s for s in await bot.store.steps(run_.id) if s.key == "restore_aside")
    finally:
        await bot.close()
    ms = [a[1] for a in acks]
    during = sum(1 for sent, _, _ in acks if sent <= restore.ended_at.timestamp())
    gaps = [b - a for a, b in zip(updates, updates[1:])]
    deviations = [abs(g - interval) for g in gaps]
    return {
        "commands": len(acks), "concurrency": concurrency, "non_200": sum(1 for a in acks if a[2] != 200),
        "sent_during_bot_restore": during,
        "ack_p50_ms": percentile(ms, 50), "ack_p95_ms": percentile(ms, 95), "ack_p99_ms": percentile(ms, 99),
        "ack_max_ms": max(ms),
        "update_interval_s": interval, "updates": len(updates),
        "update_gap_median_s": statistics.median(gaps) if gaps else None,
        "update_jitter_max_s": max(deviations) if deviations else None,
        "update_jitter_p95_s": percentile(deviations, 95) if deviations else None,
        "rollback_total_s": rollback["total_s"],
    }
