"""What a runbook scenario is made of: steps, plans, and the context a step runs in.

A plan is an ordered tuple of steps. A step is `destructive` when it must not run before an
authorised second person approves it; consecutive destructive steps share one approval. The
approval can be asked early (`ask_approval_after`) so that slow, harmless work (restoring a copy
aside) runs while the approver reads the request: the runner still waits for the decision before
the first destructive step.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable

from actions.config import Environment, Settings
from actions.engine.progress import RestoreProgress
from actions.store.records import Incident, Run, RunState
from actions.store.sqlite import AsyncStore


class StepFailed(Exception):
    """A step could not do its work. The message says what was expected, what was found, what next."""


@dataclass(frozen=True)
class StepOutcome:
    """A finished step: one line for the channel, and facts later steps (and a restart) can read."""

    detail: str
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ApprovalPreview:
    """Exactly what an approval lets happen, for the approval message and the audit trail."""

    title: str
    actions: tuple[str, ...]
    facts: tuple[tuple[str, str], ...]
    confirm: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ApprovalPreview:
        return cls(title=data["title"], actions=tuple(data["actions"]),
                   facts=tuple(tuple(pair) for pair in data["facts"]), confirm=data["confirm"])


@dataclass
class RunContext:
    """Everything a step may use. Steps record what they learn with `remember`."""

    settings: Settings
    environment: Environment
    store: AsyncStore
    incident: Incident
    run: Run
    facts: dict[str, Any]
    remember: Callable[[dict[str, Any]], Awaitable[None]]
    announce: Callable[..., Awaitable[None]]  # incident changes: alert_status=…, app_stopped=…
    track: Callable[[RestoreProgress], None]  # a long step's progress, read by the status updates
    emit: Callable[[Any], None]  # other events for the channel (a report written, say)

    @property
    def database_suffix(self) -> str:
        """The incident id as it appears in database names: INC-20261124-0001 -> inc_20261124_0001."""
        return self.incident.id.lower().replace("-", "_")


StepRun = Callable[[RunContext], Awaitable[StepOutcome]]


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    run: StepRun
    destructive: bool = False
    # A denial may stop this step midway: it only touches what `Plan.abort` cleans up (the aside
    # copy). Other steps (stopping the app, say) always run to their end before a denial is obeyed.
    interruptible: bool = False
    # For the first step of a destructive group: when to ask (the key of an earlier step) and
    # what to show. Without `ask_approval_after` the approval is asked right before the group.
    ask_approval_after: str | None = None
    preview: Callable[[RunContext], ApprovalPreview] | None = None


@dataclass(frozen=True)
class ApprovalInputs:
    """What else an approval is bound to, named by the plan (see engine/binding.py): `values` go
    into the binding; when one named in `fatal` changed since the approval was asked, asking again
    cannot help and the run stops, with that reason."""

    values: dict[str, Any]
    fatal: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended, as told to the channel: the state of the live database and what to do."""

    live_state: str
    next_steps: str = ""


@dataclass(frozen=True)
class Plan:
    name: str
    title: str
    steps: tuple[Step, ...]
    # Clean up after a denial or a failure, as far as the facts allow (drop an aside copy that
    # was never swapped in, restart an app this run stopped); returns one line saying what it did.
    abort: Callable[[RunContext], Awaitable[str]]
    # Before `abort` and `outcome` after a failure or a crash: refresh the facts from the real
    # world (which databases exist), so the message about the live database is true.
    reconcile: Callable[[RunContext], Awaitable[None]]
    # Where the live database stands when the run ended (how, and at which step if it failed),
    # with the advice to give.
    outcome: Callable[[RunContext, RunState, str | None], RunOutcome]
    # What an approval is bound to besides the plan and its preview (a backup's SHA-256, say).
    approval_inputs: Callable[[RunContext], Awaitable[ApprovalInputs]] | None = None

    def __post_init__(self) -> None:
        keys = [step.key for step in self.steps]
        if len(set(keys)) != len(keys):
            raise ValueError(f"plan {self.name}: step keys must be unique: {keys}")
        for index, group in self.approval_groups().items():
            first = self.steps[index]
            if first.preview is None:
                raise ValueError(f"plan {self.name}: destructive step {first.key} needs a preview")
            if first.ask_approval_after and first.ask_approval_after not in keys[:index]:
                raise ValueError(f"plan {self.name}: {first.key} asks approval after an unknown or later step")

    def approval_groups(self) -> dict[int, tuple[Step, ...]]:
        """Index of each group's first step -> the consecutive destructive steps it approves."""
        groups: dict[int, tuple[Step, ...]] = {}
        index = 0
        while index < len(self.steps):
            if not self.steps[index].destructive:
                index += 1
                continue
            end = index
            while end < len(self.steps) and self.steps[end].destructive:
                end += 1
            groups[index] = self.steps[index:end]
            index = end
        return groups


def new_approval_id() -> str:
    """An unguessable id: a button value cannot be forged to approve another run."""
    return "ap_" + secrets.token_urlsafe(12)


async def no_arguments(env: Environment, args: tuple[str, ...]) -> str | None:
    return f"unexpected words after the environment: {' '.join(args)}" if args else None


@dataclass(frozen=True)
class PlanSpec:
    """A verb's scenario: how to build its plan, how to check its arguments before anything opens."""

    name: str
    title: str
    build: Callable[[Environment, tuple[str, ...]], Plan]
    # A problem with the arguments, said to the user (nothing is opened), or None.
    check_args: Callable[[Environment, tuple[str, ...]], Awaitable[str | None]] = no_arguments
    level: int = 2  # the escalation level a run of it implies (runbook Part 2: partial failure)


async def nothing_to_undo(ctx: RunContext) -> str:
    """`abort` for a plan whose one destructive step is a single transaction: a failure leaves nothing."""
    return ""


async def nothing_to_reconcile(ctx: RunContext) -> None:
    """`reconcile` for a plan whose outcome does not depend on re-reading the databases after a crash."""
    return None
