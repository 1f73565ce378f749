"""The issue's acceptance scenario, as a new user would run it: `rollback-bot serve --http` as a
real process, a CRM of a few hundred thousand rows, a backup in the runbook's layout, a migration
that drops columns, adds views and indexes and deletes rows; a signed `/rollback full staging`
from an operator and an Approve click from a second person."""

from __future__ import annotations

import asyncio
import os
import signal

from demo.fingerprint import diff, fingerprint
from fake_slack import FakeSlack
from support.cli import BIN, free_port, listening, run_cli
from support.harness import (
    APPROVER,
    BOT_TOKEN,
    CHANNEL,
    OPERATOR,
    SIGNING_SECRET,
    StandInApp,
    crm_database,
    database_names,
    dsn_of,
    write_config,
)

ROWS = int(os.environ.get("ROLLBACK_E2E_ROWS", "300000"))


async def test_full_rollback_through_the_real_command(tmp_path):
    async with crm_database(tmp_path, rows=ROWS) as crm, FakeSlack(SIGNING_SECRET, bot_token=BOT_TOKEN) as slack:
        assert sum(t.rows for t in crm.before.tables) >= min(ROWS, 250_000)
        app = StandInApp(tmp_path, crm.dsn)
        await app.start()
        port = free_port()
        slack.add_user(OPERATOR, "ops.olivia")
        slack.add_user(APPROVER, "dba.alice")
        slack.bot_url = f"http://127.0.0.1:{port}/slack/events"
        config = write_config(tmp_path, crm, app)
        server = await asyncio.create_subprocess_exec(
            BIN, "serve", "--config", str(config), "--http", "--port", str(port),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                 "SLACK_API_URL": slack.api_url})
        try:
            for _ in range(100):  # wait for the server to listen
                reply = await slack.send_command(OPERATOR, "help") if await listening(port) else None
                if reply and reply.status == 200:
                    break
                await asyncio.sleep(0.1)
            reply = await slack.send_command(OPERATOR, "full staging")
            assert reply.status == 200 and reply.elapsed_ms < 3000
            request = await slack.wait_for_message(CHANNEL, "Approval needed", timeout=120)
            await slack.click(APPROVER, request, "approval-approve")
            await slack.wait_for_message(CHANNEL, "INCIDENT RESOLVED", timeout=300)
            await slack.wait_for(lambda: slack.files, timeout=60, what="the incident report")
        finally:
            server.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(server.communicate(), 60)
            await app.stop()
        assert server.returncode == 0, err.decode()[-2000:]

        assert diff(crm.before, await fingerprint(crm.dsn)) == []
        kept = [n for n in await database_names(crm.dbname) if "__failed_" in n]
        assert len(kept) == 1 and diff(crm.after, await fingerprint(dsn_of(kept[0]))) == []
        assert app.running

        code, out, _ = await run_cli("audit", "--config", str(config))
        asked = next(line for line in out.splitlines() if "full.started" in line)
        approved = next(line for line in out.splitlines() if " approved " in line)
        assert OPERATOR in asked and APPROVER in approved
