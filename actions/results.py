"""Answers the service gives to `bot/`: typed, Slack-free, one class per case."""

from __future__ import annotations

from dataclasses import dataclass

from actions.store.records import Approval, Incident, Role, Run


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


@dataclass(frozen=True)
class Started:
    incident: Incident
    run: Run


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
class NotPossible:
    """The action does not fit the incident's state; `reason` says why and what to do instead."""

    reason: str


@dataclass(frozen=True)
class IncidentNotFound:
    incident_id: str


DeclareResult = Declared | Refused | UnknownEnvironment
LifecycleResult = Recorded | Refused | NotPossible | IncidentNotFound
