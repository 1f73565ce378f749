"""`rollback-bot serve` as it runs in production, a child process, against the fake's Socket Mode
edge (`apps.connections.open`, then a websocket carrying hello, slash_commands and interactive
envelopes in Slack's documented format): it connects with its app token, answers over the
socket, completes a full rollback approved by a click, reconnects when Slack asks or the
connection drops, serves /readyz and /metrics on --health-port, and exits 0 within 10 s of
SIGTERM, connected or still connecting. HTTP mode's health routes and SIGTERM are here too.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from demo.fingerprint import diff, fingerprint
from fake_slack import FakeSlack
from support.cli import BotProcess, free_port
from support.harness import APPROVER, BOT_TOKEN, CHANNEL, OPERATOR, SIGNING_SECRET, add_people, write_config
from support.slack import WAIT

APP_TOKEN = "xapp-1-A0ROLLBACK-1-socketsecret9c2e"
EXIT_SECONDS = 10.0  # the promise to a process manager


@pytest.fixture
async def edge():
    """The fake Slack with its Socket Mode edge (no bot_url: requests only go over the socket)."""
    slack = FakeSlack(SIGNING_SECRET, bot_token=BOT_TOKEN, app_token=APP_TOKEN)
    await slack.start()
    add_people(slack)
    yield slack
    await slack.stop()


def slack_env(slack: FakeSlack, app_token: str = APP_TOKEN, api_url: str | None = None) -> dict[str, str | None]:
    return {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": app_token, "SLACK_SIGNING_SECRET": None,
            "SLACK_API_URL": api_url or slack.api_url}


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{path}") as answer:
            return answer.status, await answer.text()


async def until_answered(port: int, path: str, status: int) -> dict:
    """Poll `path` until it answers `status`; its JSON body."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while True:
        try:
            code, body = await get(port, path)
            if code == status:
                return json.loads(body)
        except aiohttp.ClientError:
            code = None  # not listening yet
        assert asyncio.get_running_loop().time() < deadline, f"{path} did not answer {status} (last: {code})"
        await asyncio.sleep(0.1)


async def help_over_the_socket(slack: FakeSlack) -> None:
    reply = await slack.send_command(OPERATOR, "help", channel_id=CHANNEL)
    assert reply.status == 200 and reply.elapsed_ms < 3000, (reply.status, reply.elapsed_ms)
    await slack.wait_for_ephemeral(OPERATOR, "/rollback full", timeout=WAIT)


async def serve(tmp_path: Path, slack: FakeSlack, config: Path, *args: str, **env: str) -> BotProcess:
    return await BotProcess.start("--config", str(config), "--log-format", "json", *args,
                                  env=slack_env(slack, **env), log_path=tmp_path / "bot.log")


async def test_socket_mode_connects_answers_rolls_back_reconnects_and_stops_on_sigterm(tmp_path, crm, stand_in, edge):
    slack, health = edge, free_port()
    bot = await serve(tmp_path, slack, write_config(tmp_path, crm, stand_in), "--health-port", str(health))
    try:
        await slack.wait_for_socket(1, timeout=WAIT)
        ready = await until_answered(health, "/readyz", 200)
        assert ready["checks"] == {"store": "ok", "slack": "ok", "socket": "ok"}
        await help_over_the_socket(slack)

        # A full rollback, started and approved over the socket.
        await slack.send_command(OPERATOR, "full staging", channel_id=CHANNEL)
        request = await slack.wait_for_message(CHANNEL, "Approval needed", timeout=WAIT)
        click = await slack.click(APPROVER, request, "approval-approve")
        assert click.status == 200 and click.elapsed_ms < 3000
        await slack.wait_for_message(CHANNEL, "INCIDENT RESOLVED", timeout=WAIT)
        assert diff(crm.before, await fingerprint(crm.dsn)) == []
        assert {e["type"] for e in slack.socket_envelopes} == {"slash_commands", "interactive"}

        # Slack refreshes the connection, then the connection drops: the bot comes back each time.
        await slack.socket_disconnect("refresh_requested")
        await slack.wait_for_socket(1, timeout=WAIT, connects=2)
        await help_over_the_socket(slack)
        await slack.socket_drop()
        await slack.wait_for_socket(1, timeout=WAIT, connects=3)
        await help_over_the_socket(slack)

        status, text = await get(health, "/metrics")
        assert status == 200
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples}
        assert samples[("rollback_runs_total", (("environment", "staging"), ("outcome", "succeeded"),
                                                ("plan", "full")))] == 1
        assert samples[("rollback_slack_calls_total", (("method", "apps.connections.open"), ("result", "ok")))] >= 3

        code, seconds = await bot.stop()
        assert code == 0 and seconds < EXIT_SECONDS, bot.log()[-3000:]
    finally:
        await bot.kill()
    log = bot.log()
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]  # one JSON object per line
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert any(e["message"] == "connected to Slack in Socket Mode" for e in entries)
    assert APP_TOKEN not in log and BOT_TOKEN not in log


async def test_sigterm_during_a_run_exits_promptly_and_the_next_start_reports_it_interrupted(tmp_path, crm, stand_in,
                                                                                            edge):
    slack, config = edge, write_config(tmp_path, crm, stand_in)
    bot = await serve(tmp_path, slack, config)
    try:
        await slack.wait_for_socket(1, timeout=WAIT)
        await slack.send_command(OPERATOR, "full staging", channel_id=CHANNEL)
        await slack.wait_for_message(CHANNEL, "⏸️ Swap the restored copy in", timeout=WAIT)  # restored, waiting
        code, seconds = await bot.stop()
        assert code == 0 and seconds < EXIT_SECONDS, bot.log()[-3000:]
    finally:
        await bot.kill()
    again = await serve(tmp_path, slack, config)
    try:
        found = await slack.wait_for_message(CHANNEL, "interrupted", timeout=WAIT)
        assert "the bot stopped during “Swap the restored copy in”" in found.all_text(), found.all_text()
        assert diff(crm.after, await fingerprint(crm.dsn)) == []  # nothing live was touched
        code, _ = await again.stop()
        assert code == 0
    finally:
        await again.kill()


async def test_sigterm_while_still_connecting_exits_0_and_readyz_says_why_it_is_not_ready(tmp_path, crm, stand_in,
                                                                                         edge):
    slack, health = edge, free_port()
    slack.inject_failure("apps.connections.open", status=503, times=10_000)  # Slack's edge is having a bad day
    bot = await serve(tmp_path, slack, write_config(tmp_path, crm, stand_in), "--health-port", str(health))
    try:
        body = await until_answered(health, "/readyz", 503)
        assert body["status"] == "not ready" and body["checks"]["socket"] != "ok" and body["checks"]["store"] == "ok"
        status, alive = await get(health, "/healthz")
        assert status == 200 and json.loads(alive)["status"] == "alive"
        await slack.wait_for(lambda: len(slack.calls("apps.connections.open")) >= 2, timeout=WAIT,
                             what="the bot trying again")
        code, seconds = await bot.stop()
        assert code == 0 and seconds < EXIT_SECONDS, bot.log()[-3000:]
    finally:
        await bot.kill()
    assert slack.socket_connects == 0


async def test_a_refused_app_token_stops_the_bot_with_what_to_fix(tmp_path, crm, stand_in, edge):
    wrong = "xapp-1-A0ROLLBACK-1-wrongwrongwrong"
    bot = await serve(tmp_path, edge, write_config(tmp_path, crm, stand_in), app_token=wrong)
    try:
        assert await bot.exited(timeout=WAIT) == 2
    finally:
        await bot.kill()
    log = bot.log()
    assert "Slack refused SLACK_APP_TOKEN for Socket Mode (invalid_auth)" in log and "xapp-" in log
    assert wrong not in log and BOT_TOKEN not in log
    assert edge.socket_connects == 0


async def test_http_mode_serves_health_on_its_port_and_exits_0_on_sigterm(tmp_path, crm, stand_in, edge):
    port = free_port()
    bot = await BotProcess.start("--config", str(write_config(tmp_path, crm, stand_in)), "--http", "--port", str(port),
                                 env={**slack_env(edge), "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                                      "SLACK_APP_TOKEN": None}, log_path=tmp_path / "bot.log")
    try:
        ready = await until_answered(port, "/readyz", 200)
        assert ready["checks"] == {"store": "ok", "slack": "ok"}
        status, text = await get(port, "/metrics")
        assert status == 200 and 'rollback_slack_calls_total{method="auth.test",result="ok"} 1.0' in text
        code, seconds = await bot.stop()
        assert code == 0 and seconds < EXIT_SECONDS, bot.log()[-3000:]
    finally:
        await bot.kill()
