"""What an approval is bound to, so that it can only ever open the plan the approver saw.

The binding is a SHA-256 over the environment and its target, the plan and its arguments, the
steps the approval opens, the preview shown to the approver (which names every action and every
database), and whatever else the plan names as its approval inputs (`Plan.approval_inputs`; a
plan that restores or reads a backup names the file's SHA-256). The runner computes it when it
asks, and again just before the approved steps run: any difference voids the approval (state
`superseded`) and a new one is asked — except when an input the plan marks fatal changed (the
backup file: what was restored from it no longer matches it), then the run stops. Nothing
approved for one plan can run another.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from actions.engine.plan import ApprovalInputs, ApprovalPreview, Plan, RunContext

APPROVED_INPUTS = "approved_inputs"  # the run's fact: the inputs as they were when the approval was asked


async def _inputs(ctx: RunContext, plan: Plan) -> ApprovalInputs:
    return await plan.approval_inputs(ctx) if plan.approval_inputs else ApprovalInputs({})


async def binding(ctx: RunContext, plan: Plan, step_keys: list[str], preview: ApprovalPreview
                  ) -> tuple[str, ApprovalInputs]:
    inputs = await _inputs(ctx, plan)
    bound: dict[str, Any] = {
        "environment": ctx.environment.name, "target": ctx.environment.target, "plan": ctx.run.plan,
        "args": ctx.facts.get("args"), "steps": step_keys, "preview": preview.as_dict(), "inputs": inputs.values,
    }
    return hashlib.sha256(json.dumps(bound, sort_keys=True, default=str).encode()).hexdigest(), inputs


async def bind(ctx: RunContext, plan: Plan, step_keys: list[str], preview: ApprovalPreview) -> str:
    """The binding of a new approval; its inputs are remembered to explain a change later."""
    digest, inputs = await binding(ctx, plan, step_keys, preview)
    await ctx.remember({APPROVED_INPUTS: inputs.values})
    return digest


@dataclass(frozen=True)
class Change:
    reason: str
    fatal: bool  # True: asking again cannot help (the restored copy came from the backup as it was)


async def changes(ctx: RunContext, plan: Plan, step_keys: list[str], preview: ApprovalPreview,
                  approved: str | None) -> Change | None:
    """None when the plan is still exactly the one approved; otherwise what changed."""
    digest, inputs = await binding(ctx, plan, step_keys, preview)
    if approved is not None and digest == approved:
        return None
    before = ctx.facts.get(APPROVED_INPUTS) or {}
    for key, reason in inputs.fatal.items():
        if inputs.values.get(key) != before.get(key):
            return Change(reason, fatal=True)
    return Change("the plan is not the one approved (its binding differs)", fatal=False)
