"""What is due to the pager and the mail recipients when an incident changes: pure rules.

- A page (`trigger`) when the incident reaches `page_at_level`, and again each time its level rises
  (same `dedup_key`: PagerDuty updates the one incident); `resolve` once it is resolved.
- The INCIDENT ALERT mail when it reaches `email_at_level`, a mail each time its level rises after
  that, the status updates if `email_updates`, INCIDENT RESOLVED with the report, and the report
  again once people filled it in (the report modal) and once it is closed with its sign-offs.

Every delivery has a key unique to its incident and purpose. The courier never queues a key twice,
so these rules may be asked as often as anything changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from actions.config import EmailConfig, PagingConfig
from actions.store.records import Incident, IncidentStatus


class Transport(StrEnum):
    PAGERDUTY = "pagerduty"
    EMAIL = "email"


class Moment(StrEnum):
    CHANGED = "changed"  # anything about the incident changed: its level, its status
    UPDATE = "update"  # the five-minute status update is due
    REPORT = "report"  # the incident report was (re)written


@dataclass(frozen=True)
class Due:
    key: str
    transport: Transport
    kind: str  # pagerduty: trigger / resolve; email: alert / raised / update / resolved / report / closed
    level: int


@dataclass(frozen=True)
class Occasion:
    """What happened, beyond the incident's own state."""

    moment: Moment
    update_number: int = 0  # UPDATE: which update since the incident was declared
    final: bool = False  # REPORT: written at the closing, with the sign-offs
    notes: str = ""  # REPORT: a digest of what people wrote into the report ("" when nothing yet)


def due(incident: Incident, queued: set[str], occasion: Occasion, paging: PagingConfig | None,
        email: EmailConfig | None) -> list[Due]:
    """The deliveries `occasion` makes due, given the keys already queued for the incident."""
    found: list[Due] = []
    if paging is not None and occasion.moment is Moment.CHANGED:
        found += _pages(incident, queued, paging)
    if email is not None:
        found += _mails(incident, queued, occasion, email)
    return [d for d in found if d.key not in queued]


def key(incident_id: str, transport: Transport, kind: str, detail: object = "") -> str:
    return ":".join(str(part) for part in (incident_id, transport.value, kind, detail) if part != "")


def _levels(queued: set[str], prefix: str) -> list[int]:
    return [int(k.rsplit(":", 1)[1]) for k in queued if k.startswith(prefix)]


def _pages(incident: Incident, queued: set[str], paging: PagingConfig) -> list[Due]:
    triggered = _levels(queued, key(incident.id, Transport.PAGERDUTY, "trigger") + ":")
    if incident.status is IncidentStatus.OPEN:
        if incident.level >= paging.page_at_level and incident.level > max(triggered, default=0):
            return [Due(key(incident.id, Transport.PAGERDUTY, "trigger", incident.level), Transport.PAGERDUTY,
                        "trigger", incident.level)]
        return []
    if triggered:
        return [Due(key(incident.id, Transport.PAGERDUTY, "resolve"), Transport.PAGERDUTY, "resolve", incident.level)]
    return []


def _mails(incident: Incident, queued: set[str], occasion: Occasion, email: EmailConfig) -> list[Due]:
    def mail(kind: str, detail: object = "") -> Due:
        return Due(key(incident.id, Transport.EMAIL, kind, detail), Transport.EMAIL, kind, incident.level)

    alerted = _levels(queued, key(incident.id, Transport.EMAIL, "alert") + ":")
    mailed_level = max(alerted + _levels(queued, key(incident.id, Transport.EMAIL, "raised") + ":"), default=0)
    is_open = incident.status is IncidentStatus.OPEN
    match occasion.moment:
        case Moment.CHANGED if is_open and incident.level >= email.email_at_level:
            if not alerted:
                return [mail("alert", incident.level)]
            if incident.level > mailed_level:
                return [mail("raised", incident.level)]
        case Moment.UPDATE if is_open and alerted and email.email_updates:
            return [mail("update", occasion.update_number)]
        case Moment.REPORT if not is_open and alerted:
            if key(incident.id, Transport.EMAIL, "resolved") not in queued:
                return [mail("resolved")]
            if occasion.final:
                return [mail("closed")]
            if occasion.notes:
                return [mail("report", occasion.notes)]
    return []
