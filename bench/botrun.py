"""The real bot, in-process: Bolt over HTTP on localhost, driven by the project's fake Slack
(signed requests, as Slack signs them), with a config written the way an operator would."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import psycopg
from psycopg import sql
from pydantic import SecretStr

from actions.config import load_settings
from actions.store.sqlite import AsyncStore, Store
from bench.probes import Probes
from bench.setup import ENV, Workbench, reset_live
from bot.credentials import SlackCredentials
from bot.server import BotRuntime
from demo.flag_app import FlagFileApp
from demo.migration import apply_phase4_migration
from fake_slack import FakeSlack, Message

SIGNING_SECRET = "bench-signing-secret-5d1e"
BOT_TOKEN = "xoxb-bench-token-0001"
CHANNEL = "C0INCIDENTS"
OPERATOR, APPROVER = "U0OPS1", "U0DBA1"
RESOLVED = "✅ INCIDENT RESOLVED"
WAIT = 900.0  # generous: a scale-40 restore on a busy 2-core machine is well under this


class BotFailed(RuntimeError):
    pass


@dataclass
class Bot:
    slack: FakeSlack
    runtime: BotRuntime
    store: AsyncStore  # the bot's state database, read through a connection of the bench's own

    async def close(self) -> None:
        await self.runtime.stop()  # cancels a run still waiting, lets queued messages go out
        self.store.close()
        await self.slack.stop()


def _config(wb: Workbench, app: FlagFileApp, state: Path, stop_app: str, jobs: int, interval: float,
            backup_root: Path) -> Path:
    path = state / "rollback-bot.toml"
    path.write_text(f"""\
[bot]
audit_db = "rollback-audit.sqlite"
incident_channel = "{CHANNEL}"
operators = ["{OPERATOR}"]
approvers = ["{APPROVER}"]
two_person_rule = true
update_interval_seconds = {interval}

[environments.{ENV}]
dsn = {json.dumps(wb.dsn())}
backup_dir = {json.dumps(str(backup_root))}
stop = [{json.dumps(app.stop_argv)}]
start = [{json.dumps(app.start_argv)}]
stop_app = "{stop_app}"
health_url = "{app.health_url}"
health_timeout_seconds = 60
smoke = [{{ url = "{app.sales_url}", status = 200 }}]
restore_jobs = {jobs}
""", encoding="utf-8")
    return path


async def start_bot(wb: Workbench, app: FlagFileApp, *, stop_app: str, jobs: int,
                    interval: float = 300, backup_root: Path | None = None) -> Bot:
    """A fresh bot (own state folder, so every repetition opens incident 0001 from scratch)."""
    state = wb.root / f"bot-{uuid4().hex[:8]}"
    state.mkdir()
    slack = FakeSlack(SIGNING_SECRET, bot_token=BOT_TOKEN)
    await slack.start()
    slack.rate_limit(per_second=1.0, burst=3, retry_after=1)  # Slack's pace per channel, as the bot meets it
    slack.add_user(OPERATOR, "ops.olivia")
    slack.add_user(APPROVER, "dba.alice")
    settings = load_settings(_config(wb, app, state, stop_app, jobs, interval, backup_root or wb.backup_root))
    runtime = BotRuntime(settings, SlackCredentials(SecretStr(BOT_TOKEN), SecretStr(SIGNING_SECRET), None,
                                                    slack.api_url))
    port = await runtime.serve_http("127.0.0.1", 0)
    slack.bot_url = f"http://127.0.0.1:{port}/slack/events"
    return Bot(slack, runtime, AsyncStore(Store(settings.bot.audit_db)))


async def run_end(bot: Bot, timeout: float = WAIT) -> Message:
    """The message that ends the run: RESOLVED, or a failure/denial broadcast from the thread."""
    ending = await bot.slack.wait_for(
        lambda: next((m for m in bot.slack.messages(CHANNEL, include_replies=True)
                      if m.reply_broadcast or m.text.startswith(RESOLVED)), None),
        timeout=timeout, what="the end of the run")
    if not ending.text.startswith(RESOLVED):
        raise BotFailed(f"the rollback did not resolve:\n{ending.all_text()[:1500]}")
    return ending


async def full_rollback(bot: Bot, approval_delay: float, on_started=None) -> dict:
    """``/rollback full staging``, Approve ``approval_delay`` s after the request appears, RESOLVED.
    Times come from the fake Slack's message timestamps (wall clock at the moment of posting)."""
    started = time.time()
    reply = await bot.slack.send_command(OPERATOR, f"full {ENV}", channel_id=CHANNEL)
    if reply.status != 200:
        raise BotFailed(f"/rollback full was answered {reply.status}: {reply.body[:300]}")
    if on_started is not None:
        await on_started()
    request = await bot.slack.wait_for_message(CHANNEL, "Approval needed", timeout=WAIT)
    await asyncio.sleep(approval_delay)
    clicked = time.time()
    try:
        click = await bot.slack.click(APPROVER, request, "approval-approve")
    except LookupError as exc:  # the buttons are gone: the run ended (failed) while we waited
        raise BotFailed(f"no Approve button any more ({exc}); the approval message now reads:\n"
                        f"{request.all_text()[:800]}\n{bot.slack.describe()}") from exc
    if click.status != 200:
        raise BotFailed(f"the Approve click was answered {click.status}: {click.body[:300]}")
    ending = await run_end(bot)
    run = next(r for r in await bot.store.runs() if r.plan == "full")
    steps = {s.key: s for s in await bot.store.steps(run.id)}
    verified = steps["verify"].ended_at.timestamp()
    waited = max(0.0, clicked - verified)  # time the run had nothing to do but wait for the human
    total = float(ending.ts) - started
    return {"total_s": total, "approved_to_healthy_s": steps["start_app"].ended_at.timestamp() - clicked, "work_s": total - waited, "approval_shown_s": float(request.ts) - started,
            "ready_s": verified - started, "restore_s": steps["restore_aside"].seconds,
            # pg_restore alone, as the bot timed it: the rest of the step is CREATE DATABASE and
            # copying the live database's owner, grants and settings
            "pg_restore_s": run.facts.get("restore_seconds"),
            # how long the live name refused connections, as the swap measured it: below the
            # probes' 100 ms resolution, so the probes alone may see no downtime at all
            "swap_window_s": run.facts.get("swap_window_seconds"),
            # what the channel saw at Slack's pace: RESOLVED after the swap, posts made, 429s met
            "resolved_after_swap_s": float(ending.ts) - steps["swap"].ended_at.timestamp(),
            "slack_posts": len([c for c in bot.slack.calls("chat.postMessage") if c.status == 200]),
            "slack_429s": bot.slack.ratelimited,
            # flat, so the medians cover each step too
            **{f"step_{k}_s": s.seconds for k, s in steps.items() if s.seconds is not None}}


CARRIED_ROWS = 1000  # suppliers written after the backup, which the carry-over puts back


async def bot_scenario(wb: Workbench, app: FlagFileApp, *, stop_app: str, jobs: int,
                       approval_delay: float, carry_over: bool = False) -> dict:
    await reset_live(wb)
    if carry_over:
        await _write_after_the_backup(wb)
    bot = await start_bot(wb, app, stop_app=stop_app, jobs=jobs)
    try:
        async with Probes(wb.dsn(), app.health_url) as probes:
            result = await full_rollback(bot, approval_delay)
        if carry_over:
            result |= await _carry_over(bot, wb)
    finally:
        await bot.close()
    result["mb_per_s"] = wb.dump_bytes / 1e6 / result["restore_s"]
    return result | probes.downtime()


async def _write_after_the_backup(wb: Workbench) -> None:
    async with await psycopg.AsyncConnection.connect(wb.dsn(), autocommit=True) as conn:
        await conn.execute("INSERT INTO suppliers (name, country) SELECT 'bench supplier ' || g, 'DE' "
                           "FROM generate_series(1, %s) AS g", (CARRIED_ROWS,))


async def _carry_over(bot: Bot, wb: Workbench) -> dict:
    """Issue 18: the count the rollback made (rows compared per second), a plain sequential read of both
    databases for reference, and `/rollback carry-over` approved at once."""
    await bot.runtime.service.wait_idle()  # the count runs after RESOLVED: let the run end
    run = next(r for r in await bot.store.runs() if r.plan == "full")
    writes = run.facts["writes_after"]
    kept = run.facts["databases"]["keep_as"]
    sequential = 0.0
    for dbname in (wb.live, kept):
        sequential += await _read_everything(wb.dsn(dbname))
    started = time.time()
    reply = await bot.slack.send_command(OPERATOR, f"carry-over {ENV} {run.incident_id}", channel_id=CHANNEL)
    if reply.status != 200:
        raise BotFailed(f"/rollback carry-over was answered {reply.status}: {reply.body[:300]}")
    request = await bot.slack.wait_for_message(CHANNEL, "rows inserted after the backup into", timeout=WAIT)
    await bot.slack.click(APPROVER, request, "approval-approve")
    await bot.slack.wait_for_message(CHANNEL, "Carry-over of staging finished", timeout=WAIT)
    carry = next(r for r in await bot.store.runs() if r.plan == "carry-over")
    step = {s.key: s for s in await bot.store.steps(carry.id)}
    return {"count_s": writes["seconds"], "rows_compared": writes["rows_read"],
            "rows_compared_per_s": writes["rows_read"] / writes["seconds"] if writes["seconds"] else 0.0,
            "sequential_read_s": sequential, "carry_over_total_s": time.time() - started,
            "carry_find_s": step["find"].seconds, "carry_insert_s": step["carry"].seconds,
            "rows_carried": sum((carry.facts.get("carried") or {}).values())}


async def _read_everything(dsn: str) -> float:
    """Every row of every user table, as text, streamed and dropped: the floor for reading a database."""
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        tables = await (await conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%'")).fetchall()
        for schema, table in tables:
            async with conn.cursor().copy(sql.SQL("COPY {} TO STDOUT").format(sql.Identifier(schema, table))) as copy:
                async for _ in copy:
                    pass
    return time.perf_counter() - started


async def prepared_scenario(wb: Workbench, app: FlagFileApp, *, jobs: int) -> dict:
    """`/rollback prepare` before the migration, then the migration, then `/rollback full` approved the
    moment the request appears (at_swap). Its own backup folder, so the other scenarios' newest backup
    stays the workbench's."""
    await reset_live(wb, migrated=False)
    backups = wb.root / f"_backups_prepared_{uuid4().hex[:6]}" / ENV
    bot = await start_bot(wb, app, stop_app="at_swap", jobs=jobs, backup_root=backups)
    try:
        started = time.time()
        reply = await bot.slack.send_command(OPERATOR, f"prepare {ENV}", channel_id=CHANNEL)
        if reply.status != 200:
            raise BotFailed(f"/rollback prepare was answered {reply.status}: {reply.body[:300]}")
        ready = await bot.slack.wait_for(
            lambda: next((m for m in bot.slack.messages(CHANNEL) if m.text.startswith(("✅ Rollback ready", "❌"))),
                         None), timeout=WAIT, what="Rollback ready")
        if not ready.text.startswith("✅ Rollback ready"):
            raise BotFailed(f"the prepare failed:\n{ready.all_text()[:1500]}")
        prepare_s = float(ready.ts) - started
        [copy] = [c for c in await bot.store.prepared_copies() if c.state == "ready"]
        await apply_phase4_migration(wb.dsn())
        async with Probes(wb.dsn(), app.health_url) as probes:
            result = await full_rollback(bot, 0.0)
        run = next(r for r in await bot.store.runs() if r.plan == "full")
        if not run.facts.get("prepared"):
            raise BotFailed("the full rollback did not use the prepared copy:\n" + bot.slack.describe()[:1500])
    finally:
        await bot.close()
    return result | probes.downtime() | {
        "prepare_s": prepare_s, "prepare_backup_s": copy.backup_seconds, "prepare_restore_s": copy.restore_seconds,
        "mb_per_s": wb.dump_bytes / 1e6 / copy.restore_seconds if copy.restore_seconds else 0.0}


def quiet_logs() -> None:
    """The bot logs every step at INFO; the bench prints its own progress instead."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
