"""Paging and mail, end to end on real protocol peers: the fake PagerDuty checks every event against the
Events API v2 schema, and an aiosmtpd server (STARTTLS with a login, from a throwaway CA) receives the mail.

The rollback never waits for them: a pager or a mail server that is down, slow or refusing costs it nothing,
and what could not be delivered is said in the thread, in the audit trail and in `/rollback status`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from demo.fingerprint import diff, fingerprint
from fake_pagerduty import FakePagerDuty
from fake_smtp import MailCatcher
from support.harness import APPROVER, CHANNEL, LEAD, OPERATOR, Harness, start_harness
from support.slack import STEP_TITLES, WAIT, approval_message, ask, audit_actions, lines, run_end, start_rollback

ROUTING_KEY = "R0UTINGKEY0123456789abcdefABCDEF"  # 32 letters and digits, as PagerDuty's integration keys
SMTP_USER, SMTP_PASSWORD = "rollback-bot", "smtp-Pa55word-7d1e"
RECIPIENTS = ["dba-team@example.com", "oncall@example.com"]


def tables(pager: FakePagerDuty, mail: MailCatcher, *, tries: int = 5, retry_seconds: float = 0.05,
           pager_timeout: float = 10.0) -> str:
    login = 'username_env = "SMTP_USERNAME"\npassword_env = "SMTP_PASSWORD"\n' if mail.username else ""
    tls = (f'starttls = true\nca_file = "{mail.tls.ca_file}"\n' if mail.mode == "starttls"
           else f'ssl = true\nca_file = "{mail.tls.ca_file}"\n' if mail.mode == "tls" else "")
    return (f'\n[paging]\npagerduty_url = "{pager.url}"\ntries = {tries}\nretry_seconds = {retry_seconds}\n'
            f'timeout_seconds = {pager_timeout}\n'
            f'\n[email]\nsmtp_host = "127.0.0.1"\nsmtp_port = {mail.port}\n{tls}{login}'
            f'sender = "rollback-bot@example.com"\nrecipients = {json.dumps(RECIPIENTS)}\n'
            f'tries = {tries}\nretry_seconds = {retry_seconds}\n')


@pytest.fixture
def secrets_in_env(monkeypatch):
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", ROUTING_KEY)
    monkeypatch.setenv("SMTP_USERNAME", SMTP_USER)
    monkeypatch.setenv("SMTP_PASSWORD", SMTP_PASSWORD)


@pytest.fixture
async def pager():
    async with FakePagerDuty(routing_keys={ROUTING_KEY}) as fake:
        yield fake


@pytest.fixture
async def mail():
    catcher = MailCatcher(mode="starttls", username=SMTP_USER, password=SMTP_PASSWORD)
    catcher.start()
    yield catcher
    catcher.stop()


@pytest.fixture
async def tls_mail():
    """Implicit TLS from the first byte (port-465 style), without a login."""
    catcher = MailCatcher(mode="tls")
    catcher.start()
    yield catcher
    catcher.stop()


async def metric(h: Harness, name: str, **labels: str) -> float:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{h.runtime.port}/metrics") as answer:
            text = await answer.text()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


def incident_id(h: Harness) -> str:
    return h.store().open_incidents()[0].id if h.store().open_incidents() else \
        next(e.incident_id for e in h.store().audit_events() if e.incident_id)


def thread_lines(h: Harness, start: str) -> list[str]:
    return [line for line in lines(h) if line.startswith(start)]


async def test_a_full_rollback_pages_once_and_mails_the_alert_then_resolved_with_the_report(
        tmp_path, crm, stand_in, pager, mail, secrets_in_env, caplog):
    caplog.set_level(logging.DEBUG)
    h = await start_harness(tmp_path, crm, stand_in, tables=tables(pager, mail))
    try:
        await start_rollback(h)
        alert = await h.slack.wait_for_message(CHANNEL, "INCIDENT ALERT", timeout=WAIT)
        await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
        await run_end(h, "INCIDENT RESOLVED")
        await h.settle()
        incident = incident_id(h)

        # PagerDuty: one incident, keyed by the incident id, critical, resolved when RESOLVED was posted.
        assert [(i.dedup_key, i.status, i.severity) for i in pager.all_incidents] == [(incident, "resolved", "critical")]
        assert [e.event_action for e in pager.events] == ["trigger", "resolve"]
        trigger = pager.events[0].body
        payload = trigger["payload"]
        assert payload["summary"].startswith("Staging: ") and payload["summary"].endswith(incident)
        assert (payload["source"], payload["component"], payload["group"]) == ("127.0.0.1", "staging", "database")
        details = payload["custom_details"]
        assert details["requested_by"] == "ops.olivia" and details["status"] == "ROLLING BACK"
        assert "database migration issue, rolling back (level 3, Critical failure)" in payload["summary"]
        assert details["database"] == f"127.0.0.1:5432/{crm.dbname}"
        permalink = f"{h.slack.api_url.rsplit('/api', 1)[0]}/archives/{CHANNEL}/p{alert.ts.replace('.', '')}"
        assert trigger["links"] == [{"href": permalink, "text": f"Incident {incident} in Slack"}]

        # Mail: the alert, then RESOLVED with the report, threaded, over STARTTLS with the login.
        alert_mail, resolved_mail = mail.messages
        assert all(m.tls and m.login == SMTP_USER and list(m.rcpt_tos) == RECIPIENTS for m in mail.messages)
        assert alert_mail.subject == f"INCIDENT ALERT: database migration issue in Staging ({incident})"
        assert "🚨 INCIDENT ALERT 🚨" in alert_mail.body_text and "- Environment: Staging" in alert_mail.body_text
        assert permalink in alert_mail.body_text
        assert resolved_mail.subject == f"Re: {alert_mail.subject}"
        assert resolved_mail.message["In-Reply-To"] == alert_mail.message["Message-ID"]
        assert alert_mail.message["Message-ID"] in resolved_mail.message["References"]
        assert "✅ INCIDENT RESOLVED ✅" in resolved_mail.body_text and "Database restored" in resolved_mail.body_text
        report = h.settings.reports_dir / f"INCIDENT_REPORT-{incident}.md"
        [(name, content_type, content)] = resolved_mail.attachments
        assert name == report.name and content_type == "text/markdown" and content == report.read_text()

        # The thread says what was delivered; the audit trail has each delivery.
        assert thread_lines(h, "📟") == [f"📟 PagerDuty triggered · {incident} (critical)",
                                         f"📟 PagerDuty resolved · {incident}"]
        to = ", ".join(RECIPIENTS)
        assert thread_lines(h, "✉️") == [f"✉️ INCIDENT ALERT emailed to {to}",
                                         f"✉️ INCIDENT RESOLVED emailed to {to}, with the incident report attached"]
        actions = audit_actions(h)
        for action in ("page.triggered", "page.resolved"):
            assert actions.count(("bot", action, "ok")) == 1, action
        assert actions.count(("bot", "mail.sent", "ok")) == 2
        assert h.store().verify_audit().ok

        # The integration key and the SMTP password are nowhere a person or a file could read them.
        everywhere = [m.all_text() + json.dumps(m.blocks) for m in h.slack.messages(CHANNEL, include_replies=True)]
        everywhere += [json.dumps(e.detail) + (e.action or "") for e in h.store().audit_events()]
        everywhere += [r.getMessage() for r in caplog.records]
        everywhere += [m.message.as_string() for m in mail.messages]
        everywhere += [report.read_text(), h.settings.bot.audit_db.read_bytes().decode("utf-8", "replace")]
        for secret in (ROUTING_KEY, SMTP_PASSWORD):
            assert not [text for text in everywhere if secret in text], secret
    finally:
        await h.close()


async def test_assess_critical_then_the_full_rollback_pages_when_it_becomes_critical(
        tmp_path, crm, stand_in, pager, tls_mail, secrets_in_env):
    mail = tls_mail
    h = await start_harness(tmp_path, crm, stand_in, tables=tables(pager, mail))
    try:
        await ask(h, "help", "PagerDuty: incidents at level 3 and above are paged")
        await h.slack.send_command(LEAD, "assess staging")
        question = await h.slack.wait_for_message(CHANNEL, "CRITICAL, MINOR or UNSURE", timeout=WAIT)
        await h.runtime.deps.outreach.drain()
        assert pager.events == [] and mail.messages == []  # level 1: below both thresholds
        await h.slack.click(LEAD, question, "severity-critical")
        await pager.wait_for(lambda: pager.events, what="the trigger at CRITICAL")
        await mail.wait_for(lambda: mail.messages, what="the alert mail at CRITICAL")
        incident = incident_id(h)
        assert pager.events[0].body["payload"]["severity"] == "critical"
        assert pager.events[0].body["payload"]["custom_details"]["requested_by"] == "lead.lee"

        # The proposed full rollback joins the incident: no second page, no second alert mail.
        await start_rollback(h)
        await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
        await run_end(h, "INCIDENT RESOLVED")
        await h.settle()
        assert [e.event_action for e in pager.events] == ["trigger", "resolve"]
        assert [(i.dedup_key, i.status) for i in pager.all_incidents] == [(incident, "resolved")]
        assert [m.subject.removeprefix("Re: ") for m in mail.messages] == [mail.messages[0].subject] * 2
        assert "INCIDENT RESOLVED" in mail.messages[1].body_text and mail.messages[1].attachments
        assert all(m.tls and m.login is None for m in mail.messages)
    finally:
        await h.close()


async def test_each_raise_pages_again_with_the_same_key_and_mark_resolved_resolves(
        tmp_path, crm, stand_in, pager, mail, secrets_in_env):
    h = await start_harness(tmp_path, crm, stand_in, tables=tables(pager, mail))
    try:
        await h.slack.send_command(OPERATOR, "declare staging replica lag after the migration")
        alert = await h.slack.wait_for_message(CHANNEL, "INCIDENT ALERT", timeout=WAIT)
        await h.slack.click(LEAD, alert, "incident-escalate")  # level 2: mailed, not paged
        await mail.wait_for(lambda: mail.messages, what="the alert mail at level 2")
        assert "Escalation: level 2" in mail.messages[0].body_text
        alert = await h.slack.wait_for(lambda: next(m for m in h.slack.messages(CHANNEL) if m.ts == alert.ts
                                                    and "Raise to level 3" in m.all_text()), timeout=WAIT)
        await h.slack.click(LEAD, alert, "incident-escalate")  # level 3: paged, and mailed as a raise
        await pager.wait_for(lambda: pager.events, what="the trigger at level 3")
        await mail.wait_for(lambda: len(mail.messages) == 2, what="the raise mail")
        incident = incident_id(h)
        summary = pager.events[0].body["payload"]["summary"]
        assert summary == f"Staging: replica lag after the migration (level 3, Critical failure) · {incident}"
        assert mail.messages[1].body_text.startswith(f"⬆️ {incident} was raised to level 3 (Critical failure) by lead.lee")

        alert = next(m for m in h.slack.messages(CHANNEL) if m.ts == alert.ts)
        await h.slack.click(LEAD, alert, "incident-resolve")
        await pager.wait_for(lambda: pager.incident(incident).status == "resolved", what="the resolve")
        await mail.wait_for(lambda: len(mail.messages) == 3, what="the RESOLVED mail")
        await h.settle()
        resolved = mail.messages[2]
        assert "<@" not in resolved.body_text and "`" not in resolved.body_text  # mail text, not Slack markup
        assert "✅ INCIDENT RESOLVED ✅" in resolved.body_text and "Resolved by hand" in resolved.body_text
        assert resolved.attachments[0][0] == f"INCIDENT_REPORT-{incident}.md"
        assert [m.message["In-Reply-To"] for m in mail.messages[1:]] == [m.message["Message-ID"]
                                                                          for m in mail.messages[:2]]
        assert len(pager.all_incidents) == 1

        # Filled in through the report modal: the report is mailed again, in the same thread; the same
        # notes saved again send nothing.
        prompt = await h.slack.wait_for_message(CHANNEL, "Still to write", timeout=WAIT)
        notes = {"root_cause": "Replication slot left behind by migration 7", "what_failed": "Step 4",
                 "prevention": "Drop slots in the migration's down step"}
        for _ in range(2):
            await h.slack.click(LEAD, prompt, "report-edit")
            view = (await h.slack.wait_for(lambda: h.slack.views, timeout=WAIT))[0]
            assert (await h.slack.submit_view(LEAD, view.id, notes)).status == 200
            await h.settle()
        assert len(mail.messages) == 4
        filled = mail.messages[3]
        assert filled.body_text.startswith(f"📝 {incident} has its incident report filled in")
        assert "Replication slot left behind by migration 7" in filled.attachments[0][2]
        assert filled.message["In-Reply-To"] == resolved.message["Message-ID"]
    finally:
        await h.close()


async def test_a_dead_pager_and_mail_server_cost_the_rollback_nothing_and_are_said(
        tmp_path, crm, stand_in, pager, mail, secrets_in_env):
    pager.fail_next(400)  # the trigger is refused as invalid: never tried again
    pager.fail_next(503, times=3)  # …and the resolve meets a PagerDuty in trouble, every try
    mail.go_down()  # nobody listens on the SMTP port
    h = await start_harness(tmp_path, crm, stand_in, tables=tables(pager, mail, tries=3))
    try:
        await start_rollback(h)
        await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
        await run_end(h, "INCIDENT RESOLVED")
        await h.settle()
        incident = incident_id(h)
        assert [r.status for r in pager.requests] == [400, 503, 503, 503]  # the 400 was not retried
        assert pager.all_incidents == []

        to = ", ".join(RECIPIENTS)
        warnings = thread_lines(h, "⚠️")
        assert "⚠️ PagerDuty refused: HTTP 400 Event object is invalid" in warnings[0]
        assert warnings[0].endswith(f": page by hand · {incident}")
        assert (f"⚠️ PagerDuty not reached after 3 tries (HTTP 503): resolve it by hand in PagerDuty · {incident}"
                in warnings)
        assert any(w.startswith(f"⚠️ INCIDENT ALERT email to {to} not reached after 3 tries (cannot connect to "
                                f"127.0.0.1:{mail.port})") and w.endswith("email it by hand") for w in warnings)
        assert any(w.startswith(f"⚠️ INCIDENT RESOLVED email to {to} not reached after 3 tries") for w in warnings)
        failed = [(e.action, e.detail["kind"]) for e in h.store().audit_events() if e.outcome == "failed"
                  and e.action in ("page.failed", "mail.failed")]
        assert sorted(failed) == [("mail.failed", "alert"), ("mail.failed", "resolved"), ("page.failed", "resolve"),
                                  ("page.failed", "trigger")]

        assert await metric(h, "rollback_deliveries_total", transport="pagerduty", outcome="failed") == 2
        assert await metric(h, "rollback_deliveries_total", transport="email", outcome="failed") == 2
        assert await metric(h, "rollback_delivery_attempts_total", transport="pagerduty", result="refused") == 1
        assert await metric(h, "rollback_delivery_attempts_total", transport="pagerduty", result="retry") == 3
        assert await metric(h, "rollback_deliveries_pending") == 0

        # /rollback status names what was not delivered (the incident itself is resolved).
        await h.slack.send_command(OPERATOR, "status")
        status = await h.slack.wait_for_ephemeral(OPERATOR, "Not delivered", timeout=WAIT)
        assert f"{incident}: PagerDuty trigger refused: HTTP 400" in status.text
        assert f"{incident}: INCIDENT ALERT email not reached after 3 tries" in status.text
    finally:
        await h.close()


async def test_a_slow_pager_holds_no_step_and_a_restart_sends_what_was_due_once(
        tmp_path, crm, stand_in, pager, mail, secrets_in_env):
    """The pager answers after 30 s and the mail server is down: the rollback ends at once anyway.
    A restart sends what was pending, and nothing that was already taken."""
    pager.delay(30)
    mail.go_down()
    h = await start_harness(tmp_path, crm, stand_in, tables=tables(pager, mail, retry_seconds=60, pager_timeout=25))
    await start_rollback(h)
    await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
    await run_end(h, "INCIDENT RESOLVED")
    await h.runtime.service.runner.wait_idle()
    incident = incident_id(h)
    pending = {d.kind: d.attempts for d in h.store().deliveries(incident_id=incident) if d.state == "pending"}
    assert pending == {"trigger": 1, "resolve": 0, "alert": 1, "resolved": 0}, pending  # still on their first tries
    assert not [a for a in audit_actions(h) if a[1].startswith(("page.", "mail."))]
    await h.runtime.stop()
    await h.slack.stop()

    pager.delay(0)
    mail.come_back()
    first_try = len(pager.events)  # the slow answer's trigger did arrive: PagerDuty folds the retry into it
    h = await start_harness(tmp_path, crm, stand_in, tables=tables(pager, mail, retry_seconds=60))
    try:
        await h.settle()
        assert [e.event_action for e in pager.events[first_try:]] == ["trigger", "resolve"]
        assert [(i.dedup_key, i.status, i.triggers) for i in pager.all_incidents] == [(incident, "resolved", 2)]
        assert [m.subject.startswith("Re: ") for m in mail.messages] == [False, True]
        assert mail.messages[1].attachments  # RESOLVED still carries the report
        assert all(d.state == "sent" for d in h.store().deliveries(incident_id=incident))
        await h.close()
        # A second restart sends nothing again.
        sent = (len(pager.requests), len(mail.messages))
        h = await start_harness(tmp_path, crm, stand_in, tables=tables(pager, mail, retry_seconds=60))
        await h.settle()
        assert (len(pager.requests), len(mail.messages)) == sent
    finally:
        await h.close()


async def test_status_updates_are_mailed_when_asked_in_the_incident_s_thread(
        tmp_path, crm, stand_in, pager, mail, secrets_in_env):
    extra = tables(pager, mail) + "email_updates = true\n"
    h = await start_harness(tmp_path, crm, stand_in, tables=extra, update_interval_seconds="0.5")
    try:
        await h.slack.send_command(OPERATOR, "declare staging")
        alert = await h.slack.wait_for_message(CHANNEL, "INCIDENT ALERT", timeout=WAIT)
        await h.slack.click(LEAD, alert, "incident-escalate")  # level 2: the alert is mailed, then the updates
        await mail.wait_for(lambda: len(mail.messages) >= 3, what="the alert and two status updates")
        alert_mail, *updates = mail.messages
        assert "INCIDENT ALERT" in alert_mail.body_text and pager.events == []  # level 2 is not paged
        assert all("STATUS UPDATE" in u.body_text and u.subject == f"Re: {alert_mail.subject}" for u in updates)
        assert len({u.message["Message-ID"] for u in updates}) == len(updates)  # one mail per update, never twice
    finally:
        await h.close()


async def test_help_says_when_nothing_is_paged_or_mailed(harness: Harness):
    reply = await ask(harness, "help", "PagerDuty: not configured")
    assert "Email: not configured (add an [email] table to mail the DBA team)" in reply.all_text()


async def test_thirty_seconds_of_slack_the_pager_and_the_mail_server_failing_change_nothing_but_when(
        tmp_path, crm, stand_in, pager, mail, secrets_in_env):
    """Issue 19, faults during comms: from a random moment of a full rollback, for 30 s, every Slack Web API
    call is answered 429, 5xx (some after carrying the call out, which makes a careless retry post twice) or
    later than the bot waits (Slack as good as unreachable); PagerDuty answers 503 and nobody listens on the
    SMTP port. The rollback's steps run on time and its result is exact. Afterwards every step line is in
    the thread once, in order, RESOLVED once, and the page and the mails are delivered, once each, in order.
    (Tries: 7, from 1 s doubling — the pager and mail are tried for a minute.)"""
    chance = random.Random(19)
    h = await start_harness(tmp_path, crm, stand_in, tables=tables(pager, mail, tries=7, retry_seconds=1.0))
    try:
        await start_rollback(h)
        await h.slack.click(APPROVER, await approval_message(h), "approval-approve")  # at once: the run goes on
        await asyncio.sleep(chance.uniform(0.0, 0.6))  # a random moment: the restore, the swap or the app's start
        kinds = [dict(status=429, retry_after=2), dict(status=503), dict(status=500, apply=True), dict(delay=11.0)]
        for _ in range(400):  # more faults than 30 s of tries use up: the window ends when they are cleared
            h.slack.inject_failure("*", times=chance.randint(1, 3), **chance.choice(kinds))
        pager.go_down()
        mail.go_down()
        began = time.monotonic()
        while h.store().runs()[0].ended_at is None:
            assert time.monotonic() - began < 15, "the rollback waited on Slack, the pager or the mail server"
            await asyncio.sleep(0.05)
        assert h.store().runs()[0].state.value == "succeeded"
        await asyncio.sleep(max(0.0, 30 - (time.monotonic() - began)))
        h.slack.clear_failures()
        pager.come_back()
        mail.come_back()
        assert {c.status for c in h.slack.calls()} >= {429, 503, 500}

        await run_end(h, "INCIDENT RESOLVED")
        await h.settle(timeout=120)
        assert diff(crm.before, await fingerprint(crm.dsn)) == []
        thread = lines(h)
        for title in STEP_TITLES:
            assert len([t for t in thread if t.startswith(f"✅ {title}")]) == 1, (title, thread)
        where = [next(i for i, t in enumerate(thread) if t.startswith(f"✅ {title}")) for title in STEP_TITLES]
        assert where == sorted(where)  # in the order the steps ran
        assert len([m for m in h.slack.messages(CHANNEL) if m.text.startswith("✅ INCIDENT RESOLVED")]) == 1
        incident = incident_id(h)
        assert [e.event_action for e in pager.events] == ["trigger", "resolve"]  # once each, in order
        assert [(i.dedup_key, i.status) for i in pager.all_incidents] == [(incident, "resolved")]
        assert [m.subject.removeprefix("Re: ").split(":")[0] for m in mail.messages] == ["INCIDENT ALERT"] * 2
        assert "✅ INCIDENT RESOLVED ✅" in mail.messages[1].body_text  # the alert first, then RESOLVED
        assert not thread_lines(h, "⚠️")  # nothing was given up on
    finally:
        await h.close()
