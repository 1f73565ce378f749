"""Paging and mail without a network: what is due when, the PagerDuty event checked against the fake's
copy of PagerDuty's schema, the mail's text and threading headers, and the config's refusals."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from actions.config import ConfigError, EmailConfig, PagingConfig, load_settings
from actions.outreach import mail
from actions.outreach.policy import Moment, Occasion, due
from actions.store.records import AlertStatus, Incident, IncidentStatus
from fake_pagerduty import problems
from fake_smtp import parse_message
from messages import outreach as texts
from support.cli import MINIMAL, config

PAGING = PagingConfig()
EMAIL = EmailConfig(smtp_host="smtp.example.com", sender="bot@example.com", recipients=["dba@example.com"])
INCIDENT = Incident("INC-20261207-0001", "staging", IncidentStatus.OPEN, AlertStatus.INVESTIGATING, "U0OPS1",
                    datetime(2026, 12, 7, 9, 30, tzinfo=UTC), "C0INCIDENTS", level=1)
CHANGED = Occasion(Moment.CHANGED)


def kinds(found) -> list[str]:
    return [f"{d.transport}:{d.kind}" for d in found]


def test_nothing_is_due_below_the_levels_and_each_threshold_brings_its_own():
    assert due(INCIDENT, set(), CHANGED, PAGING, EMAIL) == []
    level2 = replace(INCIDENT, level=2)
    assert kinds(due(level2, set(), CHANGED, PAGING, EMAIL)) == ["email:alert"]
    queued = {d.key for d in due(level2, set(), CHANGED, PAGING, EMAIL)}
    level3 = replace(INCIDENT, level=3)
    found = due(level3, queued, CHANGED, PAGING, EMAIL)
    assert kinds(found) == ["pagerduty:trigger", "email:raised"]
    queued |= {d.key for d in found}
    assert due(level3, queued, CHANGED, PAGING, EMAIL) == []  # asked again: nothing twice


def test_resolving_resolves_the_page_and_the_report_brings_the_resolved_mail_then_its_updates():
    level3 = replace(INCIDENT, level=3)
    queued = {d.key for d in due(level3, set(), CHANGED, PAGING, EMAIL)}
    resolved = replace(level3, status=IncidentStatus.RESOLVED)
    assert kinds(due(resolved, queued, CHANGED, PAGING, EMAIL)) == ["pagerduty:resolve"]
    report = Occasion(Moment.REPORT)
    found = due(resolved, queued, report, PAGING, EMAIL)
    assert kinds(found) == ["email:resolved"]
    queued |= {d.key for d in found}
    assert due(resolved, queued, report, PAGING, EMAIL) == []  # rewritten without notes: no mail
    filled = due(resolved, queued, Occasion(Moment.REPORT, notes="ab12"), PAGING, EMAIL)
    assert kinds(filled) == ["email:report"]
    assert kinds(due(resolved, queued | {filled[0].key}, Occasion(Moment.REPORT, final=True), PAGING, EMAIL)) \
        == ["email:closed"]


def test_a_resolved_incident_that_was_never_paged_or_mailed_sends_nothing():
    resolved = replace(INCIDENT, level=3, status=IncidentStatus.RESOLVED)
    assert due(resolved, set(), CHANGED, PAGING, EMAIL) == []
    assert due(resolved, set(), Occasion(Moment.REPORT), PAGING, EMAIL) == []


def test_status_updates_are_mailed_only_when_asked_and_only_after_the_alert():
    level2 = replace(INCIDENT, level=2)
    queued = {d.key for d in due(level2, set(), CHANGED, PAGING, EMAIL)}
    update = Occasion(Moment.UPDATE, update_number=1)
    assert due(level2, queued, update, PAGING, EMAIL) == []
    with_updates = EMAIL.model_copy(update={"email_updates": True})
    assert kinds(due(level2, queued, update, PAGING, with_updates)) == ["email:update"]
    assert due(level2, set(), update, PAGING, with_updates) == []  # no alert mailed: no updates either


def view(**changes) -> texts.PageView:
    base = texts.PageView("INC-20261207-0001", "staging", 3, "Critical failure", "ROLLING BACK", None, "db.example.com",
                          "db.example.com:5432/crm", "Olivia Ops", "Restore the backup aside",
                          "https://example.slack.com/archives/C0INCIDENTS/p1", datetime(2026, 12, 7, tzinfo=UTC))
    return replace(base, **changes)


@pytest.mark.parametrize("changes", [{}, {"level": 2}, {"level": 1, "current_step": None},
                                     {"summary": "Zahlungsläufe schlagen fehl — 決済 " * 80},
                                     {"environment": "prod-eu_1"}])
def test_the_trigger_meets_pagerduty_s_schema(changes):
    event = texts.page_trigger(view(**changes))
    assert problems({"routing_key": "a" * 32, **event}) == []
    assert event["dedup_key"] == "INC-20261207-0001"
    assert event["payload"]["severity"] == {3: "critical", 2: "error", 1: "warning"}[changes.get("level", 3)]
    assert len(event["payload"]["summary"]) <= 1024 and event["payload"]["summary"].endswith("INC-20261207-0001")
    assert problems({"routing_key": "a" * 32, **texts.page_resolve("INC-20261207-0001")}) == []


def test_slack_markup_becomes_mail_text():
    text = "<@U0OPS1> asked; see <#C0INC|incidents> and <https://x.example/a|the runbook>; `code`"
    assert texts.without_slack_markup(text, {"U0OPS1": "Olivia"}) == \
        "@Olivia asked; see #incidents and the runbook (https://x.example/a); code"


def test_a_mail_threads_and_carries_its_report():
    fields = {"to": ["a@example.com", "b@example.com"], "subject": "Re: INCIDENT ALERT: x", "body": "✅ resolved",
              "date": "Mon, 07 Dec 2026 10:00:00 +0000", "message_id": "<INC.email.resolved@example.com>",
              "in_reply_to": "<INC.email.alert.3@example.com>", "references": ["<INC.email.alert.3@example.com>"],
              "attachments": [{"filename": "INCIDENT_REPORT-INC.md", "content": "# Report\n", "content_type": "text/markdown"}]}
    message = mail.compose(fields, "bot@example.com")
    wire = parse_message(message.as_bytes(policy=mail.WIRE))  # as the SMTP peer reads it off the wire
    assert wire["Subject"] == fields["subject"] and wire["In-Reply-To"] == fields["in_reply_to"]
    assert wire["References"] == fields["references"][0] and wire["Auto-Submitted"] == "auto-generated"
    [report] = list(wire.iter_attachments())
    assert report.get_filename() == "INCIDENT_REPORT-INC.md" and report.get_content() == "# Report\n"
    assert wire.get_body(("plain",)).get_content().strip() == "✅ resolved"


PAGING_TABLE = '\n[paging]\npagerduty_url = "https://events.pagerduty.com/v2/enqueue"\n'
EMAIL_TABLE = '\n[email]\nsmtp_host = "smtp.example.com"\nsender = "bot@example.com"\nrecipients = ["dba@example.com"]\n'


def test_a_missing_or_malformed_integration_key_stops_the_start_with_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("PAGERDUTY_ROUTING_KEY", raising=False)
    with pytest.raises(ConfigError) as error:
        load_settings(config(tmp_path, MINIMAL + PAGING_TABLE))
    assert str(error.value).splitlines() == [
        f"{tmp_path / 'bot.toml'}: paging.pagerduty_routing_key_env: environment variable PAGERDUTY_ROUTING_KEY is "
        "not set (expected the integration key of a PagerDuty service's Events API v2 integration)"]
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "not-a-key")
    with pytest.raises(ConfigError, match="is not an Events API v2 integration key"):
        load_settings(config(tmp_path, MINIMAL + PAGING_TABLE))
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "A" * 32)
    settings = load_settings(config(tmp_path, MINIMAL + PAGING_TABLE))
    assert settings.paging.page_at_level == 3 and "A" * 32 not in repr(settings)


@pytest.mark.parametrize(("extra", "expected"), [
    ("starttls = true\nssl = true\n", "choose one of `starttls = true`"),
    ('username_env = "SMTP_USERNAME"\n', "set both `username_env` and `password_env`"),
    ('username_env = "SMTP_USERNAME"\npassword_env = "NOPE_UNSET_PASSWORD"\n',
     "email.password_env: environment variable NOPE_UNSET_PASSWORD is not set"),
    ('ca_file = "missing-ca.pem"\n', "email.ca_file: missing-ca.pem is not a file"),
    ("email_at_level = 4\n", "email.email_at_level"),
    ('recipients = ["DBA team"]\n', "expected plain mail addresses"),
])
def test_mail_settings_that_cannot_work_are_refused_at_load(tmp_path, monkeypatch, extra, expected):
    monkeypatch.setenv("SMTP_USERNAME", "bot")
    text = MINIMAL + EMAIL_TABLE.replace('recipients = ["dba@example.com"]\n', "") + extra
    if "recipients" not in extra:
        text += 'recipients = ["dba@example.com"]\n'
    with pytest.raises(ConfigError, match=expected):
        load_settings(config(tmp_path, text))


def test_the_mail_port_follows_the_tls_mode(tmp_path):
    settings = load_settings(config(tmp_path, MINIMAL + EMAIL_TABLE))
    assert settings.email.port == 25 and settings.email.email_at_level == 2 and not settings.email.email_updates
    assert settings.email.model_copy(update={"starttls": True}).port == 587
    assert settings.email.model_copy(update={"ssl": True}).port == 465
