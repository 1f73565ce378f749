"""`/rollback full staging` end to end: real Bolt over HTTP, real PostgreSQL, real pg_restore,
the project's fake Slack. Assertions are on what Slack received and on the databases."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from bot.server import BotRuntime
from demo.backup import take_backup
from demo.fingerprint import diff, fingerprint
from support.harness import (
    ADMIN_DSN,
    APPROVER,
    CHANNEL,
    OPERATOR,
    Harness,
    credentials,
    database_names,
    dsn_of,
    start_harness,
)
from support.slack import STEP_TITLES, WAIT, approval_message, audit_actions, lines, run_end, start_rollback


async def test_full_rollback_restores_the_backup_and_keeps_the_failed_database(harness: Harness):
    h = harness
    reply = await start_rollback(h)
    assert reply.elapsed_ms < 3000
    started = await h.slack.wait_for_ephemeral(OPERATOR, "Started the full rollback", timeout=WAIT)
    assert "INC-" in started.all_text()

    alert = await h.slack.wait_for_message(CHANNEL, "INCIDENT ALERT", timeout=WAIT)
    request = await approval_message(h)
    text = request.all_text()
    failed_name = f"{h.crm.dbname}__failed_"
    assert "Approve" in text and "Deny" in text
    assert "staging_full_backup.dump" in text and failed_name in text and h.crm.dbname in text
    approve_button = next(e for b in request.blocks if b["type"] == "actions" for e in b["elements"]
                          if e["action_id"] == "approval-approve")
    assert approve_button["style"] == "danger" and "confirm" in approve_button

    click = await h.slack.click(APPROVER, request, "approval-approve")
    assert click.status == 200
    await run_end(h, "INCIDENT RESOLVED")
    await h.settle()

    # The live name holds exactly the backup's content; the failed database is kept, unchanged.
    assert diff(h.crm.before, await fingerprint(h.crm.dsn)) == []
    kept = {n for n in await database_names(h.crm.dbname) if n.startswith(failed_name)}
    assert len(kept) == 1
    assert diff(h.crm.after, await fingerprint(dsn_of(kept.pop()))) == []
    assert not any("__rollback_" in n for n in await database_names(h.crm.dbname))
    assert h.app.running

    # The alert was updated in place to RESOLVED; progress went into its thread.
    alert_now = next(m for m in h.slack.messages(CHANNEL) if m.ts == alert.ts)
    assert "RESOLVED" in alert_now.all_text() and alert_now.edited
    thread = "\n".join(m.all_text() for m in h.slack.replies(CHANNEL, alert.ts))
    for title in STEP_TITLES:
        assert f"✅ {title}" in thread, title
    assert f"Approved by <@{APPROVER}>" in thread

    # The approval message now says who approved, and has no buttons left.
    decided = next(m for m in h.slack.messages(CHANNEL) if m.ts == request.ts)
    assert "Approved" in decided.all_text() and APPROVER in decided.all_text()
    assert not any(b["type"] == "actions" for b in decided.blocks)

    # The report: written beside the audit database, uploaded, with the real timeline.
    report_file = next(f for f in h.slack.files if f.title.startswith("Incident report"))
    report = report_file.content.decode()
    assert report == (h.settings.reports_dir / report_file.name).read_text()
    for heading in ("## Timeline", "## Root Cause", "## What Failed", "## Resolution", "## Prevention", "## Sign-offs"):
        assert heading in report
    assert "- Rollback initiated: 20" in report and "- Incident resolved: 20" in report
    assert "- Incident closed: —" in report  # closing waits for the sign-offs
    assert f"**Approved by**: {APPROVER}" in report

    # The audit trail shows who asked and who approved.
    actions = audit_actions(h)
    assert (OPERATOR, "full.started", "ok") in actions
    assert (APPROVER, "approved", "ok") in actions
    assert ("bot", "run.succeeded", "ok") in actions


async def test_only_one_approval_is_asked_per_gate(harness: Harness):
    h = harness
    await start_rollback(h)
    request = await approval_message(h)
    await h.slack.click(APPROVER, request, "approval-approve")
    await run_end(h, "INCIDENT RESOLVED")
    await h.settle()
    approvals = [m for m in h.slack.messages(CHANNEL) if m.text.startswith("Approval")]
    assert len(approvals) == 1
    assert [a for _, a, _ in audit_actions(h)].count("approval.requested") == 1


async def test_at_swap_keeps_the_app_up_until_the_approved_swap(tmp_path, crm, stand_in):
    h = await start_harness(tmp_path, crm, stand_in, stop_app='"at_swap"')
    try:
        await start_rollback(h)
        request = await approval_message(h)
        await h.slack.wait_for_message(CHANNEL, "✅ Verify the restored copy", timeout=WAIT)
        assert h.app.running  # restored and verified while the app kept serving
        await h.slack.click(APPROVER, request, "approval-approve")
        await run_end(h, "INCIDENT RESOLVED")
        await h.settle()
        thread = lines(h)
        order = [next(i for i, t in enumerate(thread) if t.startswith(f"✅ {title}"))
                 for title in ("Verify the restored copy", "Stop the application for the swap", "Swap the restored copy in")]
        assert order == sorted(order)
        assert h.app.running
        assert diff(h.crm.before, await fingerprint(h.crm.dsn)) == []
    finally:
        await h.close()


async def test_no_backup_fails_preflight_and_changes_nothing(tmp_path, crm, stand_in):
    empty = tmp_path / "no-backups"
    empty.mkdir()
    h = await start_harness(tmp_path, crm, stand_in, backup_dir=f'"{empty}"')
    try:
        await start_rollback(h)
        ending = await run_end(h, "failed at “Preflight: backup, target, disk”")
        assert "No backup found" in ending.all_text() and "untouched" in ending.all_text()
        await h.settle()
        assert h.app.running  # preflight runs before the app is stopped
        assert diff(h.crm.after, await fingerprint(h.crm.dsn)) == []
        assert not any(m.text.startswith("Approval") for m in h.slack.messages(CHANNEL))
        assert await database_names(h.crm.dbname) == {h.crm.dbname}
        # The incident stays open, and the environment is free for another attempt.
        status = await h.slack.send_command(OPERATOR, "status")
        assert status.status == 200
        shown = await h.slack.wait_for_ephemeral(OPERATOR, "Open incidents", timeout=WAIT)
        assert "INC-" in shown.all_text() and "failed" in shown.all_text()
    finally:
        await h.close()


@pytest.mark.parametrize("damage, expected", [
    ("garbage", "not readable by pg_restore"),
    ("truncate", "damaged (truncated or corrupt)"),
])
async def test_damaged_backup_fails_before_anything_stops(harness: Harness, damage, expected):
    """stop_app = "immediately": a file that is no dump fails preflight; a truncated one fails
    "Read the whole backup"; both before the application is stopped."""
    h = harness
    dump = next(h.crm.backup_root.glob("*/staging_full_backup.dump"))
    data = dump.read_bytes()
    dump.write_bytes(b"this is not a dump\n" * 100 if damage == "garbage" else data[: len(data) // 2])
    await start_rollback(h)
    ending = await run_end(h, expected)
    assert "untouched" in ending.all_text()
    await h.settle()
    assert h.app.running
    assert diff(h.crm.after, await fingerprint(h.crm.dsn)) == []
    assert await database_names(h.crm.dbname) == {h.crm.dbname}


@pytest.mark.parametrize("damage", ["truncate", "flip"])
async def test_at_swap_a_damaged_dump_fails_the_restore_with_the_app_never_stopped(tmp_path, crm, stand_in, damage):
    """With at_swap, preflight reads only the table of contents (the restore reads every block
    anyway): the damage is found by the restore, before any approval could open the swap."""
    dump = next(crm.backup_root.glob("*/staging_full_backup.dump"))
    data = bytearray(dump.read_bytes())
    if damage == "truncate":
        data = data[: len(data) * 2 // 3]
    else:  # flip bytes in the compressed data blocks, past the table of contents
        for offset in range(len(data) // 2, len(data) // 2 + 4096, 7):
            data[offset] ^= 0xFF
    dump.write_bytes(bytes(data))
    h = await start_harness(tmp_path, crm, stand_in, stop_app='"at_swap"')
    try:
        await start_rollback(h)
        request = await approval_message(h)
        ending = await run_end(h, "failed at “Restore the backup aside”")
        assert "pg_restore failed" in ending.all_text() and "untouched" in ending.all_text()
        await h.settle()
        assert h.app.running
        thread = lines(h)
        assert not any("Stop the application" in t for t in thread if t.startswith("✅"))  # never stopped
        assert diff(h.crm.after, await fingerprint(h.crm.dsn)) == []
        assert await database_names(h.crm.dbname) == {h.crm.dbname}  # the partial copy was dropped
        shown = next(m for m in h.slack.messages(CHANNEL) if m.ts == request.ts)
        assert not any(b["type"] == "actions" for b in shown.blocks)  # nothing left to approve
    finally:
        await h.close()


async def test_deny_ends_the_rollback_with_nothing_destroyed(harness: Harness):
    h = harness
    await start_rollback(h)
    request = await approval_message(h)
    # Denied once the app is down (a denial during "Read the whole backup" would leave it up).
    await h.slack.wait_for_message(CHANNEL, "✅ Stop the application", timeout=WAIT)
    await h.slack.click(APPROVER, request, "approval-deny")
    ending = await run_end(h, f"was denied by <@{APPROVER}>")
    assert "untouched" in ending.all_text() and "still stopped" in ending.all_text()
    await h.settle()
    assert diff(h.crm.after, await fingerprint(h.crm.dsn)) == []
    assert await database_names(h.crm.dbname) == {h.crm.dbname}  # the aside copy was dropped
    decided = next(m for m in h.slack.messages(CHANNEL) if m.ts == request.ts)
    assert "Denied" in decided.all_text() and not any(b["type"] == "actions" for b in decided.blocks)
    assert (APPROVER, "denied", "ok") in audit_actions(h)
    assert not any("swap" in t for t in [m.text for m in h.slack.messages(CHANNEL, include_replies=True)]
                   if t.startswith("✅"))


async def test_restore_failure_drops_the_aside_copy_and_leaves_live_untouched(harness: Harness):
    h = harness
    # A newer backup whose restore fails: a table owned by a role that no longer exists.
    role = f"{h.crm.dbname}_gone"
    async with await psycopg.AsyncConnection.connect(h.crm.dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        await conn.execute(sql.SQL("CREATE TABLE orphan_owned (id int); ALTER TABLE orphan_owned OWNER TO {}").format(
            sql.Identifier(role)))
    await take_backup(h.crm.dsn, h.crm.backup_root, "staging", when=datetime.now(UTC) + timedelta(minutes=1))
    async with await psycopg.AsyncConnection.connect(h.crm.dsn, autocommit=True) as conn:
        await conn.execute("DROP TABLE orphan_owned")
        await conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    await start_rollback(h)
    ending = await run_end(h, "failed at “Restore the backup aside”")
    assert "pg_restore failed" in ending.all_text() and "untouched" in ending.all_text()
    assert "was dropped" in ending.all_text()
    await h.settle()
    assert diff(h.crm.after, await fingerprint(h.crm.dsn)) == []
    assert await database_names(h.crm.dbname) == {h.crm.dbname}


async def test_app_start_failure_after_the_swap_says_the_swap_is_done(tmp_path, crm, stand_in):
    h = await start_harness(tmp_path, crm, stand_in, start='[["false"]]')
    try:
        await start_rollback(h)
        await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
        ending = await run_end(h, "failed at “Start the application”")
        text = ending.all_text()
        assert "The swap is done" in text and "needs no further action" in text
        await h.settle()
        assert diff(h.crm.before, await fingerprint(h.crm.dsn)) == []  # fully swapped, never half-restored
        assert not any(m.text.startswith("✅ INCIDENT RESOLVED") for m in h.slack.messages(CHANNEL))
    finally:
        await h.close()


async def test_swap_ends_open_sessions_and_keeps_database_settings_and_grants(harness: Harness, app_role: str):
    h = harness
    live = sql.Identifier(h.crm.dbname)
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        # Database-level properties live outside pg_dump's output: the swap must carry them over.
        await conn.execute(sql.SQL("ALTER DATABASE {} SET work_mem = '7MB'").format(live))
        await conn.execute(sql.SQL("ALTER DATABASE {} SET search_path = public, \"$user\"").format(live))
        await conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(live))
        await conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(live, sql.Identifier(app_role)))
    lingering = await psycopg.AsyncConnection.connect(h.crm.dsn, autocommit=True)  # a client that never left
    await start_rollback(h)
    await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
    await run_end(h, "INCIDENT RESOLVED")
    assert lingering.closed or (await _dead(lingering))
    swap_line = await h.slack.wait_for_message(CHANNEL, "✅ Swap the restored copy in", timeout=WAIT)
    assert "1 session(s) ended" in swap_line.text
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT d.datacl::text, s.setconfig FROM pg_database d LEFT JOIN pg_db_role_setting s "
            "ON s.setdatabase = d.oid AND s.setrole = 0 WHERE d.datname = %s", (h.crm.dbname,))
        acl, settings = await cursor.fetchone()
    assert f"{app_role}=c/" in acl and "=Tc/" not in acl.replace(f"{app_role}=c/", "")
    assert sorted(settings) == sorted(["work_mem=7MB", 'search_path=public, "$user"'])
    assert diff(h.crm.before, await fingerprint(h.crm.dsn)) == []


async def _dead(conn: psycopg.AsyncConnection) -> bool:
    try:
        await conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return True
    return False


async def test_slack_rate_limits_and_errors_are_retried_and_the_rollback_does_not_wait(harness: Harness):
    h = harness
    h.slack.inject_failure("chat.postMessage", status=429, retry_after=1, times=2)
    h.slack.inject_failure("chat.update", status=503, times=1)
    await start_rollback(h)
    await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
    await run_end(h, "INCIDENT RESOLVED")
    await h.settle()
    statuses = [c.status for c in h.slack.calls("chat.postMessage")]
    assert statuses[:3] == [429, 429, 200]
    assert 503 in [c.status for c in h.slack.calls("chat.update")]
    thread = lines(h)
    assert all(any(t.startswith(f"✅ {title}") for t in thread) for title in STEP_TITLES)  # every step line arrived


async def test_no_secret_appears_in_messages_audit_report_or_logs(tmp_path, crm, stand_in, caplog):
    secret = "rbtest-Pw-9d41c7"  # trust auth ignores it, but it is in the DSN like a real password
    h = await start_harness(tmp_path, crm, stand_in, dsn=f'"{crm.dsn} password={secret}"')
    try:
        caplog.set_level(logging.DEBUG)
        await start_rollback(h)
        await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
        await run_end(h, "INCIDENT RESOLVED")
        await h.settle()
        seen = [m.all_text() + json.dumps(m.blocks) for m in h.slack.messages(CHANNEL, include_replies=True)]
        seen += [e.all_text() for e in h.slack.ephemerals()] + [f.content.decode() for f in h.slack.files]
        seen += [json.dumps(c.args) for c in h.slack.calls()]
        seen += [json.dumps(e.detail) for e in h.store().audit_events()]
        seen += [p.read_text() for p in tmp_path.rglob("*") if p.suffix in (".md", ".log", ".toml") and p.name != "rollback-bot.toml"]
        seen += [caplog.text]
        assert all(secret not in text for text in seen)
        assert all(h.settings.environments["staging"].resolved_dsn.get_secret_value() not in text for text in seen)
    finally:
        await h.close()


async def _crash_while_waiting_for_approval(tmp_path, crm, stand_in) -> tuple[Harness, BotRuntime]:
    """Start a rollback, stop the bot while it waits for the approval, start a new bot."""
    h = await start_harness(tmp_path, crm, stand_in)
    await start_rollback(h)
    await approval_message(h)
    await h.slack.wait_for_message(CHANNEL, "⏸️ Swap the restored copy in", timeout=WAIT)
    await h.runtime.stop()
    return h, BotRuntime(h.settings, credentials(h.slack.api_url))


async def _close_restarted(h: Harness, restarted: BotRuntime) -> None:
    await restarted.service.runner.wait_idle()
    await restarted.deps.notifier.drain()
    await restarted.stop()
    await h.slack.stop()


async def test_a_restarted_bot_reports_the_run_it_was_in_and_touches_nothing(tmp_path, crm, stand_in):
    h, restarted = await _crash_while_waiting_for_approval(tmp_path, crm, stand_in)
    slack = h.slack
    first_request = await approval_message(h)
    try:
        port = await restarted.serve_http("127.0.0.1", 0)
        slack.bot_url = f"http://127.0.0.1:{port}/slack/events"
        ending = await run_end(h, "interrupted: the bot stopped during “Swap the restored copy in”")
        assert "untouched" in ending.all_text()
        assert diff(h.crm.after, await fingerprint(h.crm.dsn)) == []
        # The leftover copy is named at start-up, not silently dropped.
        leftover = await slack.wait_for_message(CHANNEL, "Found at start-up: 1 leftover restored copy", timeout=WAIT)
        assert "__rollback_" in leftover.all_text()
        assert any("__rollback_" in n for n in await database_names(h.crm.dbname))
        # "Start again" on the interrupted run: the same incident, from the first step, the same gate.
        await slack.click(OPERATOR, ending, "run-again")
        await slack.wait_for_ephemeral(OPERATOR, "Started the full rollback", timeout=WAIT)
        again = await slack.wait_for(lambda: next((m for m in slack.messages(CHANNEL) if "Approval needed" in m.all_text()
                                                   and m.ts != first_request.ts), None), timeout=WAIT)
        thread = "\n".join(m.all_text() for m in slack.messages(CHANNEL, include_replies=True))
        assert "left by an interrupted run of this incident, will be restored again" in thread
        await slack.click(APPROVER, again, "approval-approve")
        await slack.wait_for_message(CHANNEL, "INCIDENT RESOLVED", timeout=WAIT)
        await restarted.service.runner.wait_idle()
        assert diff(h.crm.before, await fingerprint(h.crm.dsn)) == []
        assert not any("__rollback_" in n for n in await database_names(h.crm.dbname))
        assert len({r.incident_id for r in h.store().runs()}) == 1  # one incident, two runs
    finally:
        await _close_restarted(h, restarted)


@pytest.mark.parametrize("happened, expected", [
    ("swap", "The swap is done: `{live}` holds the restored backup"),
    ("closed", "refuses new connections"),
])
async def test_a_restarted_bot_tells_what_really_happened_to_the_databases(tmp_path, crm, stand_in, happened, expected):
    h, restarted = await _crash_while_waiting_for_approval(tmp_path, crm, stand_in)
    live = h.crm.dbname
    aside = next(n for n in await database_names(live) if "__rollback_" in n)
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        if happened == "swap":  # as if the bot had died right after the renames committed
            await conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(live), sql.Identifier(aside.replace("__rollback_", "__failed_"))))
            await conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(aside), sql.Identifier(live)))
        else:  # as if it had died after closing the live database, before the renames
            await conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(live)))
    try:
        port = await restarted.serve_http("127.0.0.1", 0)
        h.slack.bot_url = f"http://127.0.0.1:{port}/slack/events"
        ending = await run_end(h, "interrupted")
        assert expected.format(live=live) in ending.all_text()
        names = await database_names(live)
        assert (aside in names) == (happened == "closed")  # never dropped after a swap
    finally:
        await _close_restarted(h, restarted)
        async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
            await conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(live)))
