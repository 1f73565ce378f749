"""Answers the service gives to `bot/`: typed, Slack-free, one class per case."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from actions.store.records import Approval, Incident, PreparedCopy, Role, Run


def new_error_id() -> str:
    """A short id shown to the user and written to the log, to find one in the other."""
    return "E-" + secrets.token_hex(3)


@dataclass(frozen=True)
class Refused:
    """The actor may not do this. Always audited; the reply names who may."""

    reason: str
    role: Role | None = None
    allowed: tuple[str, ...] = ()  # user and usergroup ids that hold the role


@dataclass(frozen=True)
class UnknownEnvironment:
    environment: str
    known: tuple[str, ...]


@dataclass(frozen=True)
class AlreadyRunning:
    incident: Incident
    run: Run
    current_step: str | None


@dataclass(frozen=True)
class InvalidArguments:
    """The verb's arguments do not fit (an unknown table, say); nothing was opened."""

    reason: str
    usage: str | None = None  # the verb's usage line, when it is one people type


@dataclass(frozen=True)
class UnknownVerb:
    verb: str
    known: tuple[str, ...]


@dataclass(frozen=True)
class Help:
    verbs: tuple[tuple[str, str, str], ...]  # (usage, what it does, who may)
    environments: tuple[str, ...]
    outreach: tuple[str, ...] = ()  # whether and when PagerDuty and the mail recipients are told


@dataclass(frozen=True)
class Problem:
    """The verb ran into something in the world (no backup, a failed pg_dump); nothing was changed."""

    text: str


@dataclass(frozen=True)
class StatusReport:
    """`/rollback status`: one row per open incident (actions.incidents.reads.StatusRow), and the pages
    and mails of incidents not yet closed that were given up or are still being tried after a failure."""

    rows: tuple
    undelivered: tuple = ()  # actions.incidents.reads.Undelivered
    prepared: tuple = ()  # actions.incidents.reads.PreparedRow


@dataclass(frozen=True)
class ReportRegenerated:
    incident: Incident


@dataclass(frozen=True)
class WatchOn:
    environment: str
    minutes: float
    channel: str  # where its alerts go


@dataclass(frozen=True)
class WatchOff:
    environment: str
    channel: str  # where its summary is posted
    seconds: float | None  # how long it ran; None when it had not ended yet
    reason: str | None  # why it ended (who stopped it, or that its time ran out just before)


@dataclass(frozen=True)
class Started:
    incident: Incident
    run: Run
    title: str = ""  # the plan's title: "Full rollback"


@dataclass(frozen=True)
class Decided:
    approval: Approval


@dataclass(frozen=True)
class AlreadyDecided:
    approval: Approval


@dataclass(frozen=True)
class ApprovalNotFound:
    approval_id: str


StartResult = Started | AlreadyRunning | Refused | UnknownEnvironment | InvalidArguments
DecideResult = Decided | AlreadyDecided | Refused | ApprovalNotFound


@dataclass(frozen=True)
class Declared:
    incident: Incident
    new: bool  # False: the environment already had this open incident


@dataclass(frozen=True)
class Recorded:
    """A lifecycle action was recorded; `note` is a short confirmation for the person who acted."""

    incident: Incident
    note: str


@dataclass(frozen=True)
class PrepareStarted:
    """`/rollback prepare`: under way; its progress and "Rollback ready" are posted in `channel`."""

    copy: PreparedCopy
    channel: str


@dataclass(frozen=True)
class NotPossible:
    """The action does not fit the incident's state; `reason` says why and what to do instead."""

    reason: str


@dataclass(frozen=True)
class IncidentNotFound:
    incident_id: str


DeclareResult = Declared | Refused | UnknownEnvironment
LifecycleResult = Recorded | Refused | NotPossible | IncidentNotFound
