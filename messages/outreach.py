"""Pages and mails: PagerDuty's event for an incident, the runbook's templates as plain-text mail, and
the line the incident's thread shows for each delivery. Pure builders, like the rest of `messages/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from messages.blocks import SlackMessage, clip, section

SEVERITY = {3: "critical", 2: "error", 1: "warning"}  # the runbook's level -> PagerDuty's payload.severity
SUMMARY_LIMIT = 1024  # PagerDuty refuses a longer payload.summary


@dataclass(frozen=True)
class PageView:
    incident_id: str
    environment: str
    level: int
    level_name: str
    status: str  # the alert's status: INVESTIGATING / ROLLING BACK / RESOLVED
    summary: str | None  # what the declarer wrote, if anything
    source: str  # the target database's host
    database: str  # host:port/dbname
    requested_by: str
    current_step: str | None
    link: str  # the alert's permalink in Slack (or its channel while the alert is on its way)
    at: datetime


@dataclass(frozen=True)
class MailText:
    subject: str
    body: str
    attachments: tuple[tuple[str, str], ...] = ()  # (file name, Markdown text)

    def fields(self) -> dict:
        return {"subject": self.subject, "body": self.body,
                "attachments": [{"filename": n, "content": c, "content_type": "text/markdown"}
                                for n, c in self.attachments]}


@dataclass(frozen=True)
class DeliveryView:
    incident_id: str
    transport: str  # pagerduty / email
    kind: str  # trigger / resolve; alert / raised / update / resolved / report / closed
    sent: bool
    severity: str | None = None
    recipients: tuple[str, ...] = field(default_factory=tuple)
    error: str | None = None  # why it was given up: "not reached after 5 tries (HTTP 503)", "refused: …"


def headline(view: PageView) -> str:
    """The alert's first line for a pager: environment, what happened, incident id."""
    what = view.summary or f"database migration issue, {view.status.lower()}"
    head, tail = f"{view.environment.capitalize()}: ", f" (level {view.level}, {view.level_name}) · {view.incident_id}"
    return head + clip(what, SUMMARY_LIMIT - len(head) - len(tail)) + tail  # a long summary never hides the id


def page_trigger(view: PageView) -> dict:
    """An Events API v2 `trigger`, keyed by the incident id (the routing key is added when sending)."""
    return {
        "event_action": "trigger",
        "dedup_key": view.incident_id,
        "payload": {
            "summary": headline(view),
            "source": view.source,
            "severity": SEVERITY[view.level],
            "timestamp": view.at.isoformat(timespec="milliseconds"),
            "component": view.environment,
            "group": "database",
            "class": "migration rollback",
            "custom_details": {
                "incident": view.incident_id, "requested_by": view.requested_by, "status": view.status,
                "current_step": view.current_step or "no rollback running", "level": f"{view.level} — {view.level_name}",
                "database": view.database,
            },
        },
        "client": "rollback-bot",
        "client_url": view.link,
        "links": [{"href": view.link, "text": f"Incident {view.incident_id} in Slack"}],
    }


def page_resolve(incident_id: str) -> dict:
    return {"event_action": "resolve", "dedup_key": incident_id}


# -- mail -------------------------------------------------------------------------------------------

def subject(incident_id: str, environment: str) -> str:
    """One subject for all of an incident's mail (replies add "Re:"), so every client threads it."""
    return f"INCIDENT ALERT: database migration issue in {environment.capitalize()} ({incident_id})"


_SLACK_MARKUP = (
    (re.compile(r"<@([UW][A-Z0-9]+)>"), r"@\1"),
    (re.compile(r"<!subteam\^(S[A-Z0-9]+)(?:\|[^>]*)?>"), r"@\1"),
    (re.compile(r"<#(C[A-Z0-9]+)\|([^>]+)>"), r"#\2"),
    (re.compile(r"<#(C[A-Z0-9]+)>"), r"#\1"),
    (re.compile(r"<(https?://[^|>]+)\|([^>]+)>"), r"\2 (\1)"),
    (re.compile(r"<(https?://[^>]+)>"), r"\1"),
)


def without_slack_markup(text: str, names: dict[str, str] | None = None) -> str:
    """Slack's markup as mail text: mentions by name where known, links spelled out, no `code` ticks."""
    for user, name in (names or {}).items():
        text = text.replace(f"<@{user}>", f"@{name}")
    for pattern, replacement in _SLACK_MARKUP:
        text = pattern.sub(replacement, text)
    return text.replace("`", "")


def _footer(incident_id: str, link: str) -> str:
    return (f"\n\n--\nIn Slack: {link}\nSent by rollback-bot for {incident_id}. Progress, approvals and every "
            "step are in the incident's Slack thread; this mailbox is not read.")


def alert_mail(incident_id: str, environment: str, alert_text: str, link: str) -> MailText:
    """The runbook's INCIDENT ALERT, as the channel shows it when the mail is written."""
    return MailText(subject(incident_id, environment), alert_text + _footer(incident_id, link))


def raised_mail(incident_id: str, environment: str, level: int, level_name: str, by: str | None,
                alert_text: str, link: str) -> MailText:
    who = f" by {by}" if by else ""
    return MailText(subject(incident_id, environment),
                    f"⬆️ {incident_id} was raised to level {level} ({level_name}){who}.\n\n{alert_text}"
                    + _footer(incident_id, link))


def update_mail(incident_id: str, environment: str, update_text: str, link: str) -> MailText:
    return MailText(subject(incident_id, environment), update_text + _footer(incident_id, link))


def resolved_mail(incident_id: str, environment: str, resolved_text: str, report: tuple[str, str] | None,
                  link: str) -> MailText:
    """The runbook's INCIDENT RESOLVED, with the incident report attached."""
    note = (f"\n\nThe incident report is attached ({report[0]})." if report
            else "\n\nThe incident report could not be read; it is in the bot's reports folder.")
    return MailText(subject(incident_id, environment), resolved_text + note + _footer(incident_id, link),
                    (report,) if report else ())


def report_mail(incident_id: str, environment: str, final: bool, report: tuple[str, str], link: str) -> MailText:
    """The report again: once people filled it in (root cause, what failed, prevention), and at the closing."""
    what = ("is closed: every required sign-off is in. The final incident report is attached" if final
            else "has its incident report filled in (root cause, what failed, prevention). The updated report "
                 "is attached")
    return MailText(subject(incident_id, environment), f"📝 {incident_id} {what} ({report[0]})."
                    + _footer(incident_id, link), (report,))


# -- the thread's line ------------------------------------------------------------------------------

MAIL_WHAT = {"alert": "INCIDENT ALERT", "raised": "level raise", "update": "status update",
             "resolved": "INCIDENT RESOLVED", "report": "incident report", "closed": "final incident report"}


def delivery_line(view: DeliveryView) -> SlackMessage:
    """📟 / ✉️ when it was delivered; ⚠️ and what to do by hand when it was given up."""
    to = ", ".join(view.recipients)
    if view.transport == "pagerduty":
        if view.sent:
            text = (f"📟 PagerDuty triggered · {view.incident_id} ({view.severity})" if view.kind == "trigger"
                    else f"📟 PagerDuty resolved · {view.incident_id}")
        else:
            todo = "page by hand" if view.kind == "trigger" else "resolve it by hand in PagerDuty"
            text = f"⚠️ PagerDuty {view.error}: {todo} · {view.incident_id}"
    elif view.sent:
        attached = ", with the incident report attached" if view.kind in ("resolved", "report", "closed") else ""
        text = f"✉️ {MAIL_WHAT.get(view.kind, view.kind)} emailed to {to}{attached}"
    else:
        text = f"⚠️ {MAIL_WHAT.get(view.kind, view.kind)} email to {to} {view.error}: email it by hand"
    return SlackMessage(text, [section(text)])
