"""The engine's pure rules, without a database or Slack: plan validation, approval groups, the
approval binding and its fatal inputs, who may decide, restore progress. Runs in well under a second."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from actions.config import load_settings
from actions.engine import binding
from actions.engine.approvals import Approvals
from actions.engine.plan import ApprovalInputs, ApprovalPreview, Plan, RunContext, RunOutcome, Step, StepOutcome
from actions.engine.progress import RestoreProgress
from actions.store.records import (
    Actor,
    AlertStatus,
    Approval,
    ApprovalState,
    Incident,
    IncidentStatus,
    Role,
    Run,
    RunState,
)


async def _step(ctx: RunContext) -> StepOutcome:
    return StepOutcome("done")


def _preview(ctx: RunContext) -> ApprovalPreview:
    return ApprovalPreview("Do it", ("DROP it",), (("Target", "x"),), "Sure?")


def _outcome(ctx: RunContext, state: RunState, failed: str | None) -> RunOutcome:
    return RunOutcome("fine")


async def _nothing(ctx: RunContext):
    return ""


def plan(*steps: Step, inputs=None) -> Plan:
    return Plan("p", "A plan", steps, abort=_nothing, reconcile=_nothing, outcome=_outcome, approval_inputs=inputs)


def test_a_plan_with_repeated_keys_or_an_unpreviewed_destructive_step_is_refused():
    with pytest.raises(ValueError, match="unique"):
        plan(Step("a", "A", _step), Step("a", "A again", _step))
    with pytest.raises(ValueError, match="needs a preview"):
        plan(Step("a", "A", _step), Step("b", "B", _step, destructive=True))
    with pytest.raises(ValueError, match="unknown or later step"):
        plan(Step("a", "A", _step), Step("b", "B", _step, destructive=True, preview=_preview, ask_approval_after="c"))


def test_consecutive_destructive_steps_share_one_approval():
    p = plan(Step("a", "A", _step), Step("b", "B", _step, destructive=True, preview=_preview),
             Step("c", "C", _step, destructive=True), Step("d", "D", _step),
             Step("e", "E", _step, destructive=True, preview=_preview))
    assert {i: [s.key for s in group] for i, group in p.approval_groups().items()} == {1: ["b", "c"], 4: ["e"]}


@pytest.fixture
def settings(tmp_path: Path):
    path = tmp_path / "bot.toml"
    path.write_text(textwrap.dedent(f"""\
        [bot]
        incident_channel = "C0INC"
        operators = ["U0OPS1"]
        approvers = ["U0DBA1", "U0DBA2"]
        [environments.staging]
        dsn = "postgresql://app@127.0.0.1:5432/crm"
        backup_dir = "{tmp_path}"
        """))
    return load_settings(path)


def context(settings, facts: dict) -> RunContext:
    now = datetime.now(UTC)
    incident = Incident("INC-20261125-0001", "staging", IncidentStatus.OPEN, AlertStatus.ROLLING_BACK, "U0OPS1", now,
                        "C0INC")
    run = Run("INC-20261125-0001-R1", incident.id, "staging", "p", "U0OPS1", RunState.RUNNING, now, facts=facts)

    async def remember(values: dict) -> None:
        ctx.facts.update(values)

    ctx = RunContext(settings=settings, environment=settings.environments["staging"], store=None, incident=incident,
                     run=run, facts=dict(facts), remember=remember, announce=None, track=None, emit=None)
    return ctx


async def test_the_binding_changes_with_the_preview_and_a_fatal_input_stops_the_run(settings):
    checksum = {"value": "aaa"}

    async def inputs(ctx: RunContext) -> ApprovalInputs:
        return ApprovalInputs({"backup_sha256": checksum["value"]}, fatal={"backup_sha256": "the backup changed"})

    p = plan(Step("a", "A", _step, destructive=True, preview=_preview), inputs=inputs)
    ctx = context(settings, {"args": []})
    approved = await binding.bind(ctx, p, ["a"], _preview(ctx))
    assert await binding.changes(ctx, p, ["a"], _preview(ctx), approved) is None
    other = ApprovalPreview("Do something else", ("DROP more",), (), "Sure?")
    change = await binding.changes(ctx, p, ["a"], other, approved)
    assert change is not None and not change.fatal  # asked again
    checksum["value"] = "bbb"
    change = await binding.changes(ctx, p, ["a"], _preview(ctx), approved)
    assert change is not None and change.fatal and change.reason == "the backup changed"


def test_only_approvers_decide_and_never_the_requester_under_the_two_person_rule(settings):
    approvals = Approvals(settings, store=None, emit=None, redact=None, step_transition=None)
    approval = Approval("ap_x", "R1", "INC-1", "staging", "a", {}, ApprovalState.PENDING, "U0DBA1",
                        datetime.now(UTC))
    assert approvals._refusal(approval, Actor("U0OPS1", frozenset({Role.OPERATOR}))).reason.startswith("only approvers")
    assert "two-person rule" in approvals._refusal(approval, Actor("U0DBA1", frozenset({Role.APPROVER}))).reason
    assert approvals._refusal(approval, Actor("U0DBA2", frozenset({Role.APPROVER}))) is None


def test_restore_progress_counts_items_in_both_job_modes():
    serial = RestoreProgress({1, 2, 3}, jobs=1)
    for line in ("pg_restore: creating TABLE public.a", "pg_restore: processing data for table public.a",
                 "pg_restore: executing SEQUENCE SET a_seq"):
        serial.feed(line)
    assert serial.done == 2  # the third is under way
    serial.finish()
    assert serial.done == 3
    parallel = RestoreProgress({10, 11, 12, 13}, jobs=2)
    for line in ("pg_restore: processing item 10 TABLE a", "pg_restore: entering main parallel loop",
                 "pg_restore: finished item 11 TABLE DATA a", "pg_restore: finished item 99 unknown"):
        parallel.feed(line)
    assert parallel.done == 2 and parallel.view("Restore").fraction == 0.5
