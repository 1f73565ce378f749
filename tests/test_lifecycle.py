"""The incident's life around a rollback: its channel, the alert, status updates on a clock, the
decision tree, escalation, the report and its modal, the post-incident checklist and sign-offs.
Real Bolt over HTTP, real PostgreSQL and pg_restore, the fake Slack; short intervals."""

from __future__ import annotations

import asyncio
import re

import pytest

from bot.server import BotRuntime
from support.harness import (
    APPROVER,
    APPROVER_2,
    BYSTANDER,
    CHANNEL,
    GROUP_MEMBER,
    LEAD,
    OPERATOR,
    Harness,
    StandInApp,
    credentials,
    crm_database,
    start_harness,
)
from support.slack import WAIT, approval_message, audit_actions, run_end, start_rollback

PERCENT = re.compile(r"Restore progress: (\d+)%")


def top_level(h: Harness, channel: str) -> list:
    return h.slack.messages(channel)


def first_index(messages, predicate) -> int:
    return next(i for i, m in enumerate(messages) if predicate(m))


async def test_a_full_rollback_runs_the_whole_incident_lifecycle_in_order(tmp_path):
    async with crm_database(tmp_path, rows=300_000) as crm:
        app = StandInApp(tmp_path, crm.dsn)
        await app.start()
        h = await start_harness(tmp_path, crm, app, update_interval_seconds="0.4", restore_jobs="1",
                                bot_extra='create_channel = true\nnotify_channels = ["C0NOTIFY"]')
        h.slack.add_channel("C0NOTIFY", "deploys")
        try:
            await start_rollback(h)
            link = await h.slack.wait_for_message(CHANNEL, "was declared by", timeout=WAIT)
            channel_id = re.search(r"<#(C\w+)>", link.text).group(1)
            channel = h.slack.channel(channel_id)
            assert re.fullmatch(r"inc-\d{8}-staging-0001", channel.name)
            assert {OPERATOR, APPROVER, APPROVER_2, LEAD, GROUP_MEMBER} <= set(channel.members)
            await h.slack.wait_for(lambda: h.slack.find_message("C0NOTIFY", lambda m: channel_id in m.text), timeout=WAIT)

            request = await h.slack.wait_for_message(channel_id, "Approval needed", timeout=WAIT)
            await h.slack.click(APPROVER, request, "approval-approve")
            await h.slack.wait_for_message(channel_id, "INCIDENT RESOLVED", timeout=WAIT)
            await h.slack.wait_for(lambda: h.slack.find_message(channel_id, lambda m: m.text.startswith("Sign-offs")),
                                   timeout=WAIT)
            await h.settle()
            await asyncio.sleep(1.2)  # three more intervals: no update may come after the resolution

            messages = top_level(h, channel_id)
            texts = [m.text for m in messages]
            alert = first_index(messages, lambda m: "INCIDENT ALERT" in m.text)
            updates = [i for i, t in enumerate(texts) if t.startswith("🔄 STATUS UPDATE")]
            resolved = first_index(messages, lambda m: m.text.startswith("✅ INCIDENT RESOLVED"))
            report = first_index(messages, lambda m: m.files and m.files[0].title.startswith("Incident report"))
            checklist = first_index(messages, lambda m: m.text.startswith("Post-incident checklist"))
            signoffs = first_index(messages, lambda m: m.text.startswith("Sign-offs"))
            assert alert == 0 and updates and alert < updates[0] and updates[-1] < resolved < report < checklist < signoffs

            # Updates came on the clock while the restore ran, with a rising percentage.
            percents = [int(p) for t in texts for p in PERCENT.findall(t)]
            assert len(percents) >= 2 and percents == sorted(percents) and percents[-1] > percents[0], texts
            gaps = [float(messages[b].ts) - float(messages[a].ts) for a, b in zip(updates, updates[1:], strict=False)]
            assert gaps and 0.2 <= sorted(gaps)[len(gaps) // 2] <= 0.8, gaps
            assert all("Next:" in texts[i] or "waiting for approval" in texts[i] for i in updates[:-1])

            # The alert was updated in place; progress went into its thread.
            alert_now = messages[alert]
            assert alert_now.edited and "RESOLVED" in alert_now.all_text() and "Level 3" in alert_now.all_text()
            thread = [m.text for m in h.slack.replies(channel_id, alert_now.ts)]
            assert any(t.startswith("✅ Restore the backup aside") for t in thread)
            checklist_message = messages[checklist]
            assert sum(1 for b in checklist_message.blocks if b["type"] == "actions") == 3
            assert "Sign off as Database Administrator" in messages[signoffs].all_text()
        finally:
            await h.close()
            await app.stop()


async def test_checklist_and_signoffs_are_audited_survive_a_restart_and_close_the_incident(harness: Harness):
    h = harness
    await start_rollback(h)
    await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
    checklist = await h.slack.wait_for_message(CHANNEL, "Post-incident checklist", timeout=WAIT)
    signoffs = await h.slack.wait_for_message(CHANNEL, "Sign-offs", timeout=WAIT)
    await h.settle()
    await h.slack.click(OPERATOR, checklist, "checklist-immediate", selected=["verify_systems", "notify_stakeholders"])
    await h.slack.click(APPROVER, signoffs, "signoff-dba")
    await h.slack.wait_for(lambda: "Database Administrator: <@U0DBA1>" in signoffs.text, timeout=WAIT)
    await h.settle()

    await h.runtime.stop()  # a restart between the clicks
    restarted = BotRuntime(h.settings, credentials(h.slack.api_url))
    h.slack.bot_url = f"http://127.0.0.1:{await restarted.serve_http('127.0.0.1', 0)}/slack/events"
    try:
        await h.slack.click(LEAD, checklist, "checklist-immediate", selected=["notify_stakeholders"])
        await h.slack.click(LEAD, checklist, "checklist-short_term", selected=["root_cause_analysis"])
        await h.slack.wait_for(lambda: "[x] Conduct root cause analysis" in checklist.text, timeout=WAIT)
        assert "[ ] Verify all systems operational" in checklist.text  # unticked after the restart
        assert "[x] Notify stakeholders of resolution" in checklist.text  # ticked before it

        await h.slack.click(BYSTANDER, signoffs, "signoff-manager")
        await h.slack.wait_for_ephemeral(BYSTANDER, "only the configured Operations Manager", timeout=WAIT)
        await h.slack.click(LEAD, signoffs, "signoff-lead_dev")
        await h.slack.click(APPROVER_2, signoffs, "signoff-manager")
        await h.slack.wait_for(lambda: "Closed" in signoffs.text, timeout=WAIT)
        final = await h.slack.wait_for(lambda: [f for f in h.slack.files if "(final)" in (f.title or "")], timeout=WAIT)
        report = final[0].content.decode()
        assert f"- Database Administrator: {APPROVER}" in report and f"- Operations Manager: {APPROVER_2}" in report
        assert "- Incident closed: 20" in report
        await restarted.service.runner.wait_idle()
        await restarted.deps.notifier.drain()
        actions = audit_actions(h)
        assert (OPERATOR, "checklist.checked", "ok") in actions and (LEAD, "checklist.unchecked", "ok") in actions
        assert (BYSTANDER, "sign_off.refused", "refused") in actions
        assert [a for a in actions if a[1] == "signed_off"] == [(APPROVER, "signed_off", "ok"), (LEAD, "signed_off", "ok"),
                                                                (APPROVER_2, "signed_off", "ok")]
        assert ("bot", "incident.closed", "ok") in actions
        assert h.store().incident(h.store().runs()[0].incident_id).status == "closed"
    finally:
        await restarted.stop()


async def test_assess_critical_proposes_the_full_rollback_with_the_same_gates(harness: Harness):
    h = harness
    await h.slack.send_command(OPERATOR, "assess staging")
    question = await h.slack.wait_for_message(CHANNEL, "CRITICAL, MINOR or UNSURE", timeout=WAIT)
    await h.slack.click(BYSTANDER, question, "severity-critical")
    await h.slack.wait_for_ephemeral(BYSTANDER, "only operators and approvers", timeout=WAIT)
    await h.slack.click(APPROVER, question, "severity-critical")
    proposal = await h.slack.wait_for_message(CHANNEL, "The runbook's answer is an immediate full rollback", timeout=WAIT)
    alert = h.slack.find_message(CHANNEL, lambda m: "INCIDENT ALERT" in m.text)
    await h.slack.wait_for(lambda: "Level 3" in alert.all_text(), timeout=WAIT)
    assert "CRITICAL (by <@U0DBA1>)" in question.text and not any(b["type"] == "actions" for b in question.blocks)

    await h.slack.click(APPROVER, proposal, "start-full-rollback")  # approvers may not start rollbacks
    await h.slack.wait_for_ephemeral(APPROVER, "only operators may start", timeout=WAIT)
    await h.slack.click(OPERATOR, proposal, "start-full-rollback")
    await h.slack.wait_for_ephemeral(OPERATOR, "Started the full rollback", timeout=WAIT)
    await h.slack.click(APPROVER, await approval_message(h), "approval-deny")
    await run_end(h, "was denied")
    runs = h.store().runs()
    assert len(runs) == 1 and runs[0].incident_id in question.text  # the rollback joined the assessed incident
    assert (APPROVER, "severity.critical", "ok") in audit_actions(h)


async def test_minor_continues_unsure_pages_and_mark_resolved_closes_the_loop(harness: Harness):
    h = harness
    await h.slack.send_command(LEAD, "assess staging")
    question = await h.slack.wait_for_message(CHANNEL, "CRITICAL, MINOR or UNSURE", timeout=WAIT)
    await h.slack.click(LEAD, question, "severity-unsure")
    await h.slack.wait_for_message(CHANNEL, "is UNSURE about", timeout=WAIT)
    # Every approver is paged directly, the usergroup's member too; not the person who chose UNSURE.
    await h.slack.wait_for(lambda: all(any("needs you" in m.text for m in h.slack.messages(u))
                                       for u in (APPROVER, APPROVER_2, GROUP_MEMBER)), timeout=WAIT)
    assert not h.slack.messages(LEAD)
    alert = h.slack.find_message(CHANNEL, lambda m: "INCIDENT ALERT" in m.text)
    await h.slack.wait_for(lambda: "Paused: waiting for a DBA" in alert.all_text(), timeout=WAIT)

    await h.slack.send_command(OPERATOR, "assess staging")  # asked again: the same incident
    await h.slack.wait_for(lambda: "CRITICAL, MINOR or UNSURE" in question.text, timeout=WAIT)
    await h.slack.click(OPERATOR, question, "severity-minor")
    await h.slack.wait_for_message(CHANNEL, "continue and fix", timeout=WAIT)
    await h.slack.wait_for(lambda: "continuing and fixing forward" in alert.all_text(), timeout=WAIT)

    await h.slack.click(OPERATOR, alert, "incident-resolve")
    await h.slack.wait_for_message(CHANNEL, "marked resolved by <@U0OPS1>", timeout=WAIT)
    await h.slack.wait_for_message(CHANNEL, "Post-incident checklist", timeout=WAIT)
    report = await h.slack.wait_for(lambda: h.slack.files, timeout=WAIT)
    assert "Resolved without a rollback." in report[0].content.decode()
    actions = [a for _, a, _ in audit_actions(h)]
    for expected in ("incident.declared", "severity.asked", "severity.unsure", "approvers.paged", "severity.minor",
                     "incident.resolved"):
        assert expected in actions
    assert h.store().runs() == []


async def test_declare_and_escalate_notify_the_approvers(harness: Harness):
    h = harness
    await h.slack.send_command(OPERATOR, "declare staging Migration 7 is slow but running")
    await h.slack.wait_for_ephemeral(OPERATOR, "Declared", timeout=WAIT)
    alert = await h.slack.wait_for_message(CHANNEL, "INCIDENT ALERT", timeout=WAIT)
    assert "Migration 7 is slow but running" in alert.all_text() and "Level 1" in alert.all_text()
    await h.slack.send_command(OPERATOR, "declare staging again")
    await h.slack.wait_for_ephemeral(OPERATOR, "already has an open incident", timeout=WAIT)

    await h.slack.click(OPERATOR, alert, "incident-escalate")
    await h.slack.wait_for(lambda: "Level 2" in alert.all_text(), timeout=WAIT)
    await h.slack.wait_for_message(CHANNEL, "raised", timeout=WAIT)
    await h.slack.click(OPERATOR, alert, "incident-escalate")
    await h.slack.wait_for(lambda: "Level 3" in alert.all_text() and not any(
        e.get("action_id") == "incident-escalate" for b in alert.blocks if b["type"] == "actions" for e in b["elements"]),
        timeout=WAIT)
    await h.slack.wait_for(lambda: len([m for m in h.slack.messages(APPROVER) if "level" in m.text]) == 2, timeout=WAIT)
    assert [a for _, a, _ in audit_actions(h)].count("escalated") == 2


async def test_the_report_modal_fills_in_the_report_and_report_regenerates_it(harness: Harness):
    h = harness
    await h.slack.send_command(OPERATOR, "declare staging")
    alert = await h.slack.wait_for_message(CHANNEL, "INCIDENT ALERT", timeout=WAIT)
    await h.slack.click(OPERATOR, alert, "incident-resolve")
    prompt = await h.slack.wait_for_message(CHANNEL, "Still to write: Root Cause, What Failed, Prevention", timeout=WAIT)
    await h.slack.click(APPROVER, prompt, "report-edit")
    view = (await h.slack.wait_for(lambda: h.slack.views, timeout=WAIT))[0]
    assert [b["block_id"] for b in view.view["blocks"]] == ["root_cause", "what_failed", "prevention"]
    reply = await h.slack.submit_view(APPROVER, view.id, {
        "root_cause": "Migration 7 dropped columns still read by the API", "what_failed": "Step 7 of Phase 4",
        "prevention": "Contract tests for the API before dropping columns"})
    assert reply.status == 200 and not h.slack.views
    await h.slack.wait_for(lambda: "Every section is filled in" in prompt.text, timeout=WAIT)
    latest = h.slack.files[-1].content.decode()
    assert "## Root Cause\n\nMigration 7 dropped columns still read by the API" in latest
    assert "## Prevention\n\nContract tests for the API" in latest

    incident = h.store().incidents("resolved")[0].id
    await h.slack.send_command(OPERATOR, f"report {incident}")
    await h.slack.wait_for_ephemeral(OPERATOR, "written again", timeout=WAIT)
    await h.slack.wait_for(lambda: len(h.slack.files) == 3, timeout=WAIT)
    await h.slack.send_command(OPERATOR, "report INC-19990101-0001")
    await h.slack.wait_for_ephemeral(OPERATOR, "There is no incident", timeout=WAIT)
    assert {"report.edit_opened", "report.edited", "report.regenerated"} <= {a for _, a, _ in audit_actions(h)}

    # Somebody with no role cannot edit it: the form does not open, and the answer says who may.
    opened = len(h.slack.views)
    await h.slack.click(BYSTANDER, prompt, "report-edit")
    await h.slack.wait_for_ephemeral(BYSTANDER, "only operators, approvers and sign-off people may edit the incident "
                                                "report", timeout=WAIT)
    assert len(h.slack.views) == opened
    # A form submitted by someone without the role (one opened before the role was taken away) is refused in
    # the form itself, and nothing is saved.
    await h.slack.click(OPERATOR, prompt, "report-edit")
    view = (await h.slack.wait_for(lambda: h.slack.views[opened:], timeout=WAIT))[0]
    refused = await h.slack.submit_view(BYSTANDER, view.id, {"root_cause": "vandalism"})
    assert refused.json["response_action"] == "errors" and "Not saved" in refused.json["errors"]["root_cause"]
    assert "vandalism" not in (h.store().incident(incident).root_cause or "")


@pytest.mark.parametrize("restart", [False, True])
async def test_updates_keep_their_clock_across_a_restart_and_stop_at_resolution(tmp_path, crm, stand_in, restart):
    h = await start_harness(tmp_path, crm, stand_in, update_interval_seconds="0.3")
    runtime = h.runtime
    try:
        await h.slack.send_command(OPERATOR, "declare staging")
        await h.slack.wait_for(lambda: len([m for m in h.slack.messages(CHANNEL) if "STATUS UPDATE" in m.text]) >= 2,
                               timeout=WAIT)
        if restart:
            await runtime.stop()
            seen = len(h.slack.messages(CHANNEL))
            runtime = BotRuntime(h.settings, credentials(h.slack.api_url))
            h.slack.bot_url = f"http://127.0.0.1:{await runtime.serve_http('127.0.0.1', 0)}/slack/events"
            await h.slack.wait_for(lambda: any("STATUS UPDATE" in m.text for m in h.slack.messages(CHANNEL)[seen:]),
                                   timeout=WAIT)
        update = next(m for m in h.slack.messages(CHANNEL) if "STATUS UPDATE" in m.text)
        assert "no rollback is running" in update.text and "Next update in 0.3 s" in update.text
        alert = h.slack.find_message(CHANNEL, lambda m: "INCIDENT ALERT" in m.text)
        await h.slack.click(OPERATOR, alert, "incident-resolve")
        await h.slack.wait_for_message(CHANNEL, "INCIDENT RESOLVED", timeout=WAIT)
        await asyncio.sleep(0.5)
        count = len([m for m in h.slack.messages(CHANNEL) if "STATUS UPDATE" in m.text])
        await asyncio.sleep(1.0)
        assert len([m for m in h.slack.messages(CHANNEL) if "STATUS UPDATE" in m.text]) == count
    finally:
        h.runtime = runtime
        await h.close()


async def test_reminders_name_the_unticked_items_once(tmp_path, crm, stand_in):
    h = await start_harness(tmp_path, crm, stand_in,
                            bot_extra="remind_immediate_after_seconds = 0.5\nremind_day_after_seconds = 1.0")
    try:
        await h.slack.send_command(OPERATOR, "declare staging")
        alert = await h.slack.wait_for_message(CHANNEL, "INCIDENT ALERT", timeout=WAIT)
        await h.slack.click(OPERATOR, alert, "incident-resolve")
        checklist = await h.slack.wait_for_message(CHANNEL, "Post-incident checklist", timeout=WAIT)
        await h.slack.click(OPERATOR, checklist, "checklist-immediate",
                            selected=["verify_systems", "notify_stakeholders", "backup_current_state"])
        first = await h.slack.wait_for_message(CHANNEL, "⏰", timeout=WAIT)
        assert "1 item(s) of Immediate (within 1 hour)" in first.text and "Document incident timeline" in first.text
        second = await h.slack.wait_for(lambda: [m for m in h.slack.messages(CHANNEL) if "Short-term" in m.text
                                                 and m.text.startswith("⏰")], timeout=WAIT)
        assert "4 item(s)" in second[0].text
        await h.runtime.stop()
        restarted = BotRuntime(h.settings, credentials(h.slack.api_url))
        await restarted.serve_http("127.0.0.1", 0)
        await asyncio.sleep(1.5)
        assert len([m for m in h.slack.messages(CHANNEL) if m.text.startswith("⏰")]) == 2  # not sent again
        h.runtime = restarted
    finally:
        await h.close()
