"""Where an incident stands right now, for the scheduled status updates: live execution state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from actions.engine.progress import ProgressView
from actions.engine.runner import Runner
from actions.store.records import Incident, Run, RunState, StepRecord, StepState, utcnow
from actions.store.sqlite import AsyncStore


@dataclass(frozen=True)
class Snapshot:
    incident: Incident
    run: Run | None  # the run under way, else the incident's latest
    current: StepRecord | None  # the step running or waiting for approval
    upcoming: tuple[str, ...]  # titles of the steps still to run after it
    progress: ProgressView | None
    app_stopped: bool
    at: datetime

    @property
    def elapsed_seconds(self) -> float:
        return (self.at - self.incident.declared_at).total_seconds()

    @property
    def step_seconds(self) -> float | None:
        if self.current is None or self.current.started_at is None:
            return None
        return (self.at - self.current.started_at).total_seconds()


async def take_snapshot(store: AsyncStore, runner: Runner, incident_id: str) -> Snapshot:
    incident = await store.incident(incident_id)
    runs = await store.runs(incident_id=incident_id)
    run = runs[-1] if runs else None
    current, upcoming, progress = None, (), None
    if run is not None and run.state is RunState.RUNNING:
        steps = await store.steps(run.id)
        current = next((s for s in steps if s.state in (StepState.RUNNING, StepState.WAITING)), None)
        upcoming = tuple(s.title for s in steps if s.state is StepState.PENDING)
        if current is not None and current.state is StepState.RUNNING:
            progress = runner.progress_of(run.id, current.title)
    app_stopped = bool(run and run.facts.get("app_stopped"))
    return Snapshot(incident, run, current, upcoming, progress, app_stopped, utcnow())
