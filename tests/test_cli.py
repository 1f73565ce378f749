"""The `rollback-bot` command as a user runs it: start-up errors, HTTP serving, audit and status."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import aiohttp
import pytest

from fake_slack import FakeSlack
from support.cli import BIN, MINIMAL, config, free_port, no_slack_env, run_cli
from support.harness import BOT_TOKEN, OPERATOR, SIGNING_SECRET, Harness
from support.slack import approval_message, run_end, start_rollback


async def test_missing_config_file_is_one_clear_line(tmp_path):
    code, out, err = await run_cli("serve", "--config", str(tmp_path / "nope.toml"), "--http")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"rollback-bot: {tmp_path / 'nope.toml'}: config file not found "
                                        "(pass --config FILE; see README, 'Configuration')"]


@pytest.mark.parametrize("change, expected", [
    (("backup_dir = \"_backups/staging\"", "backup_dir = \"_backups/staging\"\nrestore_jobs = 0"),
     "environments.staging.restore_jobs: Input should be greater than or equal to 1, got 0"),
    (("backup_dir = \"_backups/staging\"", "backup_dir = \"_backups/staging\"\nrestor_jobs = 2"),
     "environments.staging.restor_jobs: unknown key"),
    (("operators = [\"U0OPS1\"]", "operators = [\"ops-team\"]"), "bot.operators: Value error, expected Slack user ids"),
    (("approvers = [\"U0DBA1\"]\n", ""), "bot.approvers: required key is missing"),
    (("dsn = \"postgresql://app:s3cret-pw@127.0.0.1:5432/crm_staging\"", "dsn = \"postgresql://app:s3cret-pw@127.0.0.1:5432\""),
     "environments.staging.dsn: expected the database name in the DSN"),
    (("[environments.staging]", "[environments.Staging]"), "environments.Staging: environment names must match"),
    (("backup_dir = \"_backups/staging\"", "backup_dir = \"_backups/staging\"\n[paging]\npage_at_level = 3"),
     "paging.pagerduty_routing_key_env: environment variable PAGERDUTY_ROUTING_KEY is not set"),
    (("backup_dir = \"_backups/staging\"", "backup_dir = \"_backups/staging\"\n[email]\nsmtp_host = \"smtp\"\n"
      "sender = \"bot@example.com\"\nrecipients = [\"dba@example.com\"]\nusername_env = \"HOME\"\n"
      "password_env = \"SMTP_P_UNSET\""), "email.password_env: environment variable SMTP_P_UNSET is not set"),
])
async def test_an_invalid_key_stops_start_up_naming_file_and_key(tmp_path, change, expected):
    path = config(tmp_path, MINIMAL.replace(*change))
    code, out, err = await run_cli("serve", "--config", str(path), "--http")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rollback-bot: {path}: ") and expected in lines[0], lines
    assert "s3cret-pw" not in err


async def test_missing_token_stops_start_up(tmp_path):
    code, _, err = await run_cli("serve", "--config", str(config(tmp_path)), "--http", env=no_slack_env())
    assert code == 2
    assert err.strip().splitlines() == ["rollback-bot: SLACK_BOT_TOKEN is not set: export the Bot User OAuth Token "
                                        "(xoxb-…) from your Slack app's 'OAuth & Permissions' page"]
    code, _, err = await run_cli("serve", "--config", str(config(tmp_path)), "--http",
                                 env={**no_slack_env(), "SLACK_BOT_TOKEN": "xoxb-1"})
    assert code == 2 and "SLACK_SIGNING_SECRET is not set" in err
    code, _, err = await run_cli("serve", "--config", str(config(tmp_path)), env={**no_slack_env(), "SLACK_BOT_TOKEN": "xoxb-1"})
    assert code == 2 and "SLACK_APP_TOKEN is not set" in err and "--http" in err


async def test_serve_http_answers_signed_slash_commands_on_localhost(tmp_path):
    port = free_port()
    async with FakeSlack(SIGNING_SECRET, bot_token=BOT_TOKEN) as slack:
        slack.add_user(OPERATOR, "ops.olivia")
        slack.bot_url = f"http://127.0.0.1:{port}/slack/events"
        proc = await asyncio.create_subprocess_exec(
            BIN, "serve", "--config", str(config(tmp_path)), "--http", "--port", str(port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                 "SLACK_API_URL": slack.api_url})
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(100):
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/healthz") as answer:
                            if answer.status == 200:
                                break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.1)
            reply = await slack.send_command(OPERATOR, "help")
            assert reply.status == 200 and "/rollback full <env>" in reply.json["text"]
            assert (await slack.send_command(OPERATOR, "help", signature="v0=bad")).status == 401
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert "listening on http://127.0.0.1:" in err.decode()
        assert BOT_TOKEN not in err.decode() and SIGNING_SECRET not in err.decode()
        assert (tmp_path / "rollback-audit.sqlite").exists()  # relative to the config file


async def test_audit_and_status_print_what_happened(harness: Harness):
    h = harness
    await start_rollback(h)
    await h.slack.click("U0DBA1", await approval_message(h), "approval-deny")
    await run_end(h, "was denied")
    await h.settle()
    cfg = str(h.settings.config_path)
    incident = h.store().open_incidents()[0].id

    code, out, _ = await run_cli("audit", "--config", cfg, "--incident", incident)
    assert code == 0
    assert "U0OPS1" in out and "full.started" in out and "U0DBA1" in out and "denied" in out

    code, out, _ = await run_cli("audit", "--config", cfg, "--json")
    events = [json.loads(line) for line in out.splitlines()]
    assert {"command", "full.started", "denied", "run.denied"} <= {e["action"] for e in events}
    assert all({"at", "actor", "action", "outcome", "incident_id"} <= e.keys() for e in events)

    code, out, _ = await run_cli("status", "--config", cfg)
    assert code == 0 and incident in out and "staging" in out and "denied" in out

    code, _, err = await run_cli("audit", "--config", cfg, "--incident", "INC-19990101-0001")
    assert code == 1 and "no audit events" in err


async def test_local_serves_the_workspace_with_the_configs_people(tmp_path):
    # A [paging] table whose key is not in the environment: the local workspace pages its own stand-in.
    text = MINIMAL + '\n[local.users]\nU0OPS1 = "olivia (operator)"\n\n[paging]\npage_at_level = 2\n'
    path = config(tmp_path, text)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(BIN, "local", "--config", str(path), "--port", str(port), "--no-browser",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env={**os.environ, **{k: "" for k in no_slack_env()},
                                                     "PAGERDUTY_ROUTING_KEY": ""})
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.strip() == f"Local workspace: http://127.0.0.1:{port}/"
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            async with http.get("/") as page:
                assert page.status == 200 and "<html" in (await page.text()).lower()
            async with http.get("/ui/state", params={"user": "U0OPS1"}) as answer:
                state = await answer.json()
            names = {user["id"]: user["name"] for user in state["users"]}
            assert names["U0OPS1"] == "olivia (operator)" and "U0DBA1" in names
            async with http.post("/ui/command", json={"user": "U0OPS1", "channel": "C0INCIDENTS",
                                                      "text": "/rollback help"}) as answer:
                assert (await answer.json())["status"] == 200
            async with http.get("/ui/state", params={"user": "U0OPS1"}) as answer:
                ephemerals = (await answer.json())["ephemerals"]
            assert any("/rollback full <env>" in e["text"] for e in ephemerals)
            assert any("PagerDuty: incidents at level 2 and above are paged" in json.dumps(e["blocks"])
                       for e in ephemerals)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0


async def test_version_names_the_installed_package():
    from importlib.metadata import version

    code, out, err = await run_cli("--version")
    assert code == 0 and out.strip() == f"rollback-bot {version('rollback-bot')}" and err == ""


async def test_a_reader_that_stops_early_ends_the_output_quietly(tmp_path):
    """`rollback-bot audit --json | head -1`: no BrokenPipe traceback, the status of a process SIGPIPE ended."""
    from actions.config import load_settings
    from actions.store.sqlite import Store

    path = config(tmp_path)
    store = Store(load_settings(path).bot.audit_db)
    for n in range(3000):  # far more than a pipe's 64 KiB buffer holds
        store.audit("U0OPS1", "status.requested", detail_note=f"row {n} " + "x" * 40)
    store.close()
    shell = await asyncio.create_subprocess_exec(
        "bash", "-c", f'set -o pipefail; "{BIN}" audit --json --config "{path}" | head -1',
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(shell.communicate(), 60)
    assert json.loads(out.decode())["action"] == "status.requested"
    assert err.decode() == ""  # no traceback, no "Exception ignored" from the interpreter's exit
    assert shell.returncode == 141


def test_json_logs_are_one_object_per_line_with_the_traceback_inside(capsys):
    import logging

    from actions.redact import Redactor
    from bot.logs import configure_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(Redactor(["s3cret-pw"]), "debug", "json")
        try:
            raise RuntimeError("connection to postgresql://app:s3cret-pw@db/crm failed\nsecond line")
        except RuntimeError:
            logging.getLogger("bot.test").exception("step failed for %s", "staging")
        logging.getLogger("bot.test").debug("a debug line")
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    lines = capsys.readouterr().err.strip().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["level"] for e in entries] == ["ERROR", "DEBUG"]
    assert entries[0]["message"] == "step failed for staging" and entries[0]["logger"] == "bot.test"
    assert "Traceback" in entries[0]["exc_info"] and "second line" in entries[0]["exc_info"]
    assert "s3cret-pw" not in "\n".join(lines)
