"""Who may start and who may approve: operators, approvers, usergroups, the two-person rule,
double clicks and concurrent requests — through the real Bolt app and the fake Slack."""

from __future__ import annotations

import asyncio

from demo.fingerprint import diff, fingerprint
from support.harness import APPROVER, APPROVER_2, BYSTANDER, CHANNEL, GROUP_MEMBER, LEAD, OPERATOR, Harness
from support.slack import WAIT, approval_message, audit_actions, run_end, start_rollback


def pending_approvals(h: Harness) -> list:
    return [a for a in h.store().db.query("SELECT * FROM approvals WHERE state = 'pending'")]


async def test_requester_cannot_approve_their_own_rollback(harness: Harness):
    h = harness
    await start_rollback(h, LEAD)  # LEAD is operator and approver
    request = await approval_message(h)
    await h.slack.click(LEAD, request, "approval-approve")
    refusal = await h.slack.wait_for_ephemeral(LEAD, "two-person rule", timeout=WAIT)
    assert f"<@{APPROVER}>" in refusal.all_text() and f"<@{LEAD}>" not in refusal.all_text().split("Who may:")[1]
    assert (LEAD, "approve.refused", "refused") in audit_actions(h)
    assert len(pending_approvals(h)) == 1
    await h.slack.wait_for_message(CHANNEL, "✅ Verify the restored copy", timeout=WAIT)
    assert diff(h.crm.after, await fingerprint(h.crm.dsn)) == []  # still waiting: nothing swapped
    await h.slack.click(APPROVER_2, request, "approval-approve")
    await run_end(h, "INCIDENT RESOLVED")


async def test_non_approver_is_refused_and_told_who_may(harness: Harness):
    h = harness
    await start_rollback(h)
    request = await approval_message(h)
    await h.slack.click(BYSTANDER, request, "approval-approve")
    refusal = await h.slack.wait_for_ephemeral(BYSTANDER, "only approvers", timeout=WAIT)
    assert f"<@{APPROVER}>" in refusal.all_text() and "<!subteam^S0DBAS>" in refusal.all_text()
    await h.slack.click(OPERATOR, request, "approval-deny")  # an operator who is not an approver
    await h.slack.wait_for_ephemeral(OPERATOR, "only approvers", timeout=WAIT)
    assert (BYSTANDER, "approve.refused", "refused") in audit_actions(h)
    assert (OPERATOR, "deny.refused", "refused") in audit_actions(h)
    assert len(pending_approvals(h)) == 1
    await h.slack.click(APPROVER, request, "approval-deny")
    await run_end(h, "was denied")


async def test_usergroup_member_may_approve(harness: Harness):
    h = harness
    await start_rollback(h)
    await h.slack.click(GROUP_MEMBER, await approval_message(h), "approval-approve")
    await run_end(h, "INCIDENT RESOLVED")
    assert (GROUP_MEMBER, "approved", "ok") in audit_actions(h)
    assert h.slack.calls("usergroups.users.list")


async def test_double_clicks_and_racing_approvers_run_the_step_once(harness: Harness):
    h = harness
    await start_rollback(h)
    request = await approval_message(h)
    clickers = [APPROVER, APPROVER, APPROVER_2, APPROVER_2, APPROVER]
    replies = await asyncio.gather(*(h.slack.click(user, request, "approval-approve") for user in clickers))
    assert all(r.status == 200 for r in replies)
    await run_end(h, "INCIDENT RESOLVED")
    await h.settle()
    actions = audit_actions(h)
    assert sum(1 for _, action, _ in actions if action == "approved") == 1
    assert sum(1 for _, action, _ in actions if action == "approve.too_late") == len(clickers) - 1
    swaps = [d for d in h.store().audit_events() if d.action == "step.succeeded" and d.detail["step"] == "swap"]
    assert len(swaps) == 1
    late = [e for e in h.slack.ephemerals() if "already approved" in e.text]
    assert len(late) == len(clickers) - 1


async def test_a_second_request_is_told_which_incident_is_running(harness: Harness):
    h = harness
    first, second = await asyncio.gather(h.slack.send_command(OPERATOR, "full staging"),
                                         h.slack.send_command(LEAD, "full staging"))
    assert first.status == second.status == 200
    started = await h.slack.wait_for(lambda: [e for e in h.slack.ephemerals() if "Started the full rollback" in e.text],
                                     timeout=WAIT)
    busy = await h.slack.wait_for(lambda: [e for e in h.slack.ephemerals() if "already running" in e.text],
                                  timeout=WAIT)
    assert len(started) == 1 and len(busy) == 1
    incident = started[0].text.split("*")[1]
    assert incident in busy[0].text
    assert sum(1 for _, a, _ in audit_actions(h) if a == "full.busy") == 1
    await h.slack.click(APPROVER, await approval_message(h), "approval-deny")
    await run_end(h, "was denied")


async def test_only_operators_may_start(harness: Harness):
    h = harness
    await h.slack.send_command(APPROVER, "full staging")
    refusal = await h.slack.wait_for_ephemeral(APPROVER, "only operators", timeout=WAIT)
    assert f"<@{OPERATOR}>" in refusal.all_text()
    await h.settle()
    assert (APPROVER, "full.refused", "refused") in audit_actions(h)
    assert h.slack.messages(CHANNEL) == []
    assert diff(h.crm.after, await fingerprint(h.crm.dsn)) == []


async def test_a_tampered_button_value_does_nothing(harness: Harness):
    h = harness
    await start_rollback(h)
    request = await approval_message(h)
    for value in ('{"incident": "INC-20000101-0001", "approval": "ap_guess"}', "not json", '{"approval": 1}'):
        await h.slack.click(APPROVER, request, "approval-approve", value=value)
    await h.slack.wait_for(lambda: len([e for e in h.slack.ephemerals(APPROVER) if "don't know this approval" in e.text]) == 3,
                           timeout=WAIT)
    assert len(pending_approvals(h)) == 1
    await h.slack.click(APPROVER, request, "approval-deny")
    await run_end(h, "was denied")
