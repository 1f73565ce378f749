"""Requests as Slack sends them: signatures, stale or forged ones, and the replies to bad input."""

from __future__ import annotations

import asyncio
import time

import pytest

from demo.fingerprint import diff, fingerprint
from support.harness import APPROVER, CHANNEL, OPERATOR, Harness
from support.slack import WAIT, approval_message, audit_actions, run_end, start_rollback


@pytest.mark.parametrize("knobs", [
    {"signature": "v0=" + "0" * 64},               # forged signature
    {"sign": False},                                # no signature headers at all
    {"timestamp": int(time.time()) - 10 * 60},      # correctly signed, but 10 minutes old
])
async def test_unsigned_forged_or_stale_requests_get_401_and_run_nothing(harness: Harness, knobs):
    h = harness
    reply = await h.slack.send_command(OPERATOR, "full staging", **knobs)
    assert reply.status == 401
    await h.settle()
    assert h.store().audit_events() == []
    assert h.slack.messages(CHANNEL) == [] and h.slack.ephemerals() == []
    assert diff(h.crm.after, await fingerprint(h.crm.dsn)) == []


async def test_a_forged_approve_click_is_rejected(harness: Harness):
    h = harness
    await start_rollback(h)
    request = await approval_message(h)
    reply = await h.slack.click(APPROVER, request, "approval-approve", signature="v0=" + "f" * 64)
    assert reply.status == 401
    assert not [a for a in audit_actions(h) if a[1] == "approved"]
    await h.slack.click(APPROVER, request, "approval-deny")
    await run_end(h, "was denied")


async def test_help_lists_every_verb_and_environment(harness: Harness):
    h = harness
    for text in ("help", ""):
        reply = await h.slack.send_command(OPERATOR, text)
        assert reply.status == 200
        body = reply.json["text"]
        assert "/rollback full <env>" in body and "/rollback status" in body and "`staging`" in body


@pytest.mark.parametrize("text, expected", [
    ("fulll staging", "I don't know the verb `fulll`"),
    ("full", "Name one environment"),
    ("full production", "There is no environment `production`"),
    ("full staging now please", "Unexpected words after the environment"),
    ("full staging';DROP", "There is no environment `staging';drop`"),
])
async def test_bad_input_gets_a_clear_reply_and_changes_nothing(harness: Harness, text, expected):
    h = harness
    reply = await h.slack.send_command(OPERATOR, text)
    assert reply.status == 200 and reply.elapsed_ms < 3000
    answer = await h.slack.wait_for_ephemeral(OPERATOR, expected, timeout=WAIT)
    assert "Nothing was started" in answer.all_text() or "/rollback help" in answer.all_text()
    await h.settle()
    assert h.slack.messages(CHANNEL) == []
    assert not h.store().runs()
    assert diff(h.crm.after, await fingerprint(h.crm.dsn)) == []


async def test_status_shows_the_running_rollback_and_its_step(harness: Harness):
    h = harness
    await start_rollback(h)
    request = await approval_message(h)
    await h.slack.wait_for_message(CHANNEL, "✅ Verify the restored copy", timeout=WAIT)
    await h.slack.send_command(APPROVER, "status")
    status = await h.slack.wait_for_ephemeral(APPROVER, "Open incidents", timeout=WAIT)
    text = status.all_text()
    assert "staging" in text and "running" in text and "Swap the restored copy in (waiting for approval)" in text
    assert f"<@{OPERATOR}>" in text
    await h.slack.click(APPROVER, request, "approval-deny")
    await run_end(h, "was denied")


async def test_a_replayed_command_gets_401_and_starts_nothing_more(harness: Harness):
    h = harness
    first = await h.slack.send_command(OPERATOR, "full staging")
    assert first.status == 200
    await h.slack.wait_for_ephemeral(OPERATOR, "Started the full rollback", timeout=WAIT)
    # The same bytes with the same headers: still inside the 5-minute window, so correctly signed.
    again = await h.slack.replay(first.request)
    assert again.status == 401 and "replayed" in again.body
    request = await approval_message(h)
    assert len(h.store().runs()) == 1
    assert sum(1 for _, action, _ in audit_actions(h) if action == "command") == 1
    await h.slack.click(APPROVER, request, "approval-deny")
    await run_end(h, "was denied")


async def test_a_replayed_approve_click_gets_401_and_changes_nothing(harness: Harness):
    h = harness
    await start_rollback(h)
    request = await approval_message(h)
    click = await h.slack.click(APPROVER, request, "approval-approve")
    assert click.status == 200
    await h.slack.wait_for(lambda: [a for a in audit_actions(h) if a[1] == "approved"], timeout=WAIT)
    decided = h.store().db.query("SELECT state, decided_by, decided_at FROM approvals").__next__()
    replayed = await h.slack.replay(click.request)
    assert replayed.status == 401
    await run_end(h, "INCIDENT RESOLVED")
    await h.settle()
    assert list(h.store().db.query("SELECT state, decided_by, decided_at FROM approvals")) == [decided]
    # Without the guard the replay would reach the runner and be audited as "approve.too_late".
    assert [a for a in audit_actions(h) if a[1] in ("approved", "approve.too_late")] == [(APPROVER, "approved", "ok")]


@pytest.mark.parametrize("knobs", [{"timestamp": "yesterday"}, {"signature": "v0=été"}])
async def test_headers_the_signature_check_cannot_parse_get_401(harness: Harness, knobs):
    # Bolt's verifier raises on these (int() of the timestamp, compare_digest of non-ASCII text)
    # and answered 500 with a traceback in the log; the replay guard refuses them first.
    h = harness
    reply = await h.slack.send_command(OPERATOR, "full staging", **knobs)
    assert reply.status == 401
    await h.settle()
    assert h.store().audit_events() == [] and not h.store().runs()


async def test_typed_remedy_is_only_an_unknown_verb(harness: Harness):
    # `remedy` is a plan (its button starts it) but not a verb: the ack said "I don't know the verb
    # `remedy`" and then the command was run anyway, opening an incident and a remedy run.
    h = harness
    reply = await h.slack.send_command(OPERATOR, 'remedy staging analyze {"table":"sales"}')
    assert reply.status == 200 and "I don't know the verb `remedy`" in reply.json["text"]
    await asyncio.sleep(1)  # a listener still running after its ack would have answered by now
    await h.settle()
    assert not h.store().runs() and not h.store().open_incidents()
    assert not [p for p in h.slack.response_posts if p.hook_id == reply.response_url.rsplit("/", 1)[1]]
    assert [a for _, a, _ in audit_actions(h)] == ["command"]
