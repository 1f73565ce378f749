"""What the runner tells the outside world. `bot/` turns these into Slack messages.

Events carry records read back from the store after the transition was written, so what is
announced is what is durable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from actions.plan import Outcome
from actions.records import Approval, Incident, Run, StepRecord


@dataclass(frozen=True)
class IncidentChanged:
    """The incident's alert status or impact changed: the alert message is updated in place."""

    incident: Incident
    run: Run | None
    app_stopped: bool


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
    outcome: Outcome
    error_id: str | None = None


Event = IncidentChanged | RunStarted | StepChanged | ApprovalRequested | ApprovalDecided | RunEnded
Emit = Callable[[Event], None]
