"""What the runner tells the outside world. `bot/` turns these into Slack messages.

Events carry records read back from the store after the transition was written, so what is
announced is what is durable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from actions.engine.plan import RunOutcome
from actions.engine.progress import ProgressView
from actions.store.records import Approval, Delivery, Incident, PreparedCopy, Run, StepRecord


@dataclass(frozen=True)
class IncidentChanged:
    """The incident's alert status or impact changed: the alert message is updated in place."""

    incident: Incident
    run: Run | None
    app_stopped: bool
    by: str | None = None  # who changed it, when a person did (not a run's step)


@dataclass(frozen=True)
class IncidentDeclared:
    """A new incident: its channel (if one is made per incident) and its alert come first."""

    incident: Incident
    via: str  # "full" (a rollback opened it), "declare" or "assess"


@dataclass(frozen=True)
class SeverityAsked:
    """`/rollback assess`: the decision tree's question, with its three answers."""

    incident: Incident


@dataclass(frozen=True)
class SeverityChosen:
    incident: Incident
    choice: str  # critical / minor / unsure
    by: str
    approvers: tuple[str, ...]  # who is paged for "unsure"


@dataclass(frozen=True)
class Escalated:
    incident: Incident
    by: str
    approvers: tuple[str, ...]  # who is notified
    level_name: str = ""  # the runbook's name of the new level (Part 2)


@dataclass(frozen=True)
class ReportWritten:
    incident: Incident
    path: str
    final: bool = False  # written when the incident closed, with its sign-offs


@dataclass(frozen=True)
class PostIncidentChanged:
    """A checklist item was ticked or a sign-off recorded: the messages are redrawn from the store."""

    incident: Incident
    what: str  # "checklist" or "signoffs"


@dataclass(frozen=True)
class RunStarted:
    incident: Incident
    run: Run
    plan_title: str
    steps: tuple[StepRecord, ...]


@dataclass(frozen=True)
class StepChanged:
    incident: Incident
    run: Run
    step: StepRecord


@dataclass(frozen=True)
class ApprovalRequested:
    incident: Incident
    run: Run
    approval: Approval


@dataclass(frozen=True)
class ApprovalDecided:
    incident: Incident
    run: Run
    approval: Approval


@dataclass(frozen=True)
class RunEnded:
    incident: Incident
    run: Run
    steps: tuple[StepRecord, ...]
    outcome: RunOutcome
    error_id: str | None = None
    plan_title: str = ""


@dataclass(frozen=True)
class DeliveryEnded:
    """A page or a mail was delivered, or given up (`actions/outreach/`): the thread says which."""

    incident: Incident
    delivery: Delivery


@dataclass(frozen=True)
class PrepareChanged:
    """A prepared rollback moved on: a new phase, the restore's progress, or its end (`ready`, `failed`).
    Not part of an incident: it is shown in the incident channel, before any migration went wrong."""

    copy: PreparedCopy
    phase: str  # preflight / backup / restore / verify / ready / failed
    detail: str = ""
    progress: ProgressView | None = None
    replaced: tuple[str, ...] = ()  # ready: the earlier copies it replaced (dropped)


Event = (IncidentDeclared | SeverityAsked | SeverityChosen | Escalated | IncidentChanged | RunStarted | StepChanged
         | ApprovalRequested | ApprovalDecided | RunEnded | ReportWritten | PostIncidentChanged
         | DeliveryEnded | PrepareChanged)
Emit = Callable[[Event], None]
