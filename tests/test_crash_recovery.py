"""Crash safety with a real process and SIGKILL: the bot (`rollback-bot serve --http`) is killed
at a kill point of a full rollback, started again on the same state, and must report where the
run stopped and what is live. The live name must hold either the failed database or the fully
restored one — never anything in between — and the way on (start again, or clean up) must work.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg

from actions.store.records import StepState
from actions.store.sqlite import Store
from demo.fingerprint import diff, fingerprint
from fake_slack import FakeSlack
from support.crash import WAIT, Bot, until_step
from support.harness import (
    ADMIN_DSN,
    APPROVER,
    BOT_TOKEN,
    CHANNEL,
    OPERATOR,
    SIGNING_SECRET,
    StandInApp,
    crm_database,
    database_names,
    write_config,
)

KILLS: list[str] = []  # the kill points survived in this session, for docs/RELIABILITY.md's figures


@asynccontextmanager
async def scenario(tmp_path: Path, kill_at, rows: int = 20_000, **overrides: str):
    """Start a full rollback, call `kill_at(bot, crm, audit_db)` (which kills the bot), restart it;
    yield what the test needs to check the aftermath."""
    async with crm_database(tmp_path, rows=rows) as crm, FakeSlack(SIGNING_SECRET, bot_token=BOT_TOKEN) as slack:
        for user, name in ((OPERATOR, "ops.olivia"), (APPROVER, "dba.alice")):
            slack.add_user(user, name)
        app = StandInApp(tmp_path, crm.dsn)
        await app.start()
        config = write_config(tmp_path, crm, app, **overrides)
        audit_db = tmp_path / "state" / "rollback-audit.sqlite"
        bot = Bot(config, slack)
        try:
            await bot.start()
            await slack.send_command(OPERATOR, "full staging")
            await kill_at(bot, crm, audit_db)
            await bot.start()  # the same config and state: a restart after the crash
            ending = await slack.wait_for_message(CHANNEL, "interrupted: the bot stopped", timeout=WAIT)
            yield crm, slack, bot, ending
        finally:
            await bot.stop()
            await app.stop()


async def assert_live_is_whole(crm) -> str:
    """The live name holds the failed database or the restored one, exactly; which one, in words."""
    now = await fingerprint(crm.dsn)
    if diff(crm.after, now) == []:
        return "failed"
    assert diff(crm.before, now) == [], "the live database is neither the failed one nor the restored one"
    return "restored"


async def test_killed_during_the_restore_aside(tmp_path):
    async def kill(bot, crm, audit_db):
        await until_step(audit_db, "restore_aside")
        await asyncio.sleep(0.3)  # well inside pg_restore
        await bot.kill()

    async with scenario(tmp_path, kill, rows=200_000) as (crm, slack, bot, ending):
        assert "during “Restore the backup aside”" in ending.all_text()
        assert await assert_live_is_whole(crm) == "failed"
        offer = await slack.wait_for_message(CHANNEL, "Found at start-up: 1 leftover restored copy", timeout=WAIT)
        # Abandon: the half-restored copy is dropped only after an approval; live never changes.
        await slack.click(OPERATOR, ending, "clean-up")
        request = await slack.wait_for_message(CHANNEL, "Drop leftover restored copies", timeout=WAIT)
        assert "never became live" in request.all_text() and "__rollback_" in offer.all_text()
        await slack.click(APPROVER, request, "approval-approve")
        await slack.wait_for_message(CHANNEL, "Clean-up of staging finished", timeout=WAIT)
        assert not any("__rollback_" in n for n in await database_names(crm.dbname))
        assert await assert_live_is_whole(crm) == "failed"
        KILLS.append("restore aside")


async def test_killed_inside_the_swap_transaction(tmp_path):
    """A superuser session locks the restored copy's row of pg_database (FOR UPDATE), so the swap's
    second rename waits *after the first one*, inside the transaction: the bot is killed between
    the two renames. PostgreSQL rolls the whole transaction back."""
    blocker: list[psycopg.AsyncConnection] = []

    async def kill(bot, crm, audit_db):
        request = await bot.slack.wait_for_message(CHANNEL, "Approval needed", timeout=WAIT)
        await until_step(audit_db, "swap", StepState.WAITING)  # restored and verified: the aside exists
        aside = next(n for n in await database_names(crm.dbname) if "__rollback_" in n)
        conn = await psycopg.AsyncConnection.connect(ADMIN_DSN)
        blocker.append(conn)
        await conn.execute("SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s FOR UPDATE", (aside,))
        await bot.slack.click(APPROVER, request, "approval-approve")
        await until_step(audit_db, "swap")
        async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as watch:
            for _ in range(500):  # the second rename waits for the row: the first is done, uncommitted
                waiting = await (await watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'ALTER DATABASE % RENAME TO %' "
                    "AND wait_event_type = 'Lock'")).fetchone()
                if waiting[0]:
                    break
                await asyncio.sleep(0.02)
            assert waiting[0], "the swap never reached its first rename"
        await bot.kill()
        await conn.rollback()  # let go: the rename completes, then the dead client's transaction is rolled back

    try:
        async with scenario(tmp_path, kill, stop_app='"at_swap"') as (crm, slack, bot, ending):
            assert "during “Swap the restored copy in”" in ending.all_text()
            # Self-healed: live is provably the database that was live (same oid, never renamed), so the bot
            # re-opened it by itself, and said so.
            assert "the bot re-opened it, as it was: it is provably the same database" in ending.all_text()
            names = await database_names(crm.dbname)
            assert any("__rollback_" in n for n in names) and not any("__failed_" in n for n in names)
            async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
                allowed = await (await conn.execute("SELECT datallowconn FROM pg_database WHERE datname = %s",
                                                    (crm.dbname,))).fetchone()
            assert allowed == (True,)
            assert await assert_live_is_whole(crm) == "failed"  # the first rename was rolled back with the second
            store = Store(tmp_path / "state" / "rollback-audit.sqlite")
            try:
                [reopened] = [e for e in store.audit_events() if e.action == "swap.reopened"]
                assert reopened.actor == "bot" and reopened.detail["database"] == crm.dbname
                assert store.verify_audit().problem is None
            finally:
                store.close()
            KILLS.append("inside the swap transaction")
    finally:
        for conn in blocker:
            await conn.close()


async def test_killed_while_the_application_starts(tmp_path):
    async def kill(bot, crm, audit_db):
        request = await bot.slack.wait_for_message(CHANNEL, "Approval needed", timeout=WAIT)
        await bot.slack.click(APPROVER, request, "approval-approve")
        await until_step(audit_db, "start_app")
        await bot.kill()

    flag = tmp_path / "app-running"
    async with scenario(
            tmp_path, kill, start=f'[["sh", "-c", "sleep 2 && touch {flag}"]]') as (crm, slack, bot, ending):
        text = ending.all_text()
        assert "during “Start the application”" in text and "The swap is done" in text
        assert await assert_live_is_whole(crm) == "restored"
        assert any("__failed_" in n for n in await database_names(crm.dbname))  # the failed one is kept
        # Starting the whole rollback again would replace restored data: it is refused with the reason.
        await slack.click(OPERATOR, ending, "run-again")
        refused = await slack.wait_for(lambda: [m for m in slack.messages(CHANNEL, include_replies=True)
                                                if m.reply_broadcast and "already swapped" in m.all_text()],
                                       timeout=WAIT, what="the second run refusing")
        assert "Start the application" in refused[0].all_text()
        assert await assert_live_is_whole(crm) == "restored"
        KILLS.append("application start")
