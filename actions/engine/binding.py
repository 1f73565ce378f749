"""What an approval is bound to, so that it can only ever open the plan the approver saw.

The binding is a SHA-256 over the environment and its target, the plan, the steps the approval
opens, the preview shown to the approver (which names every action, the backup, the names of the
databases), and the backup file's own SHA-256 when the plan restores one. The runner computes it
when it asks, and again just before the approved steps run: any difference voids the approval
(state `superseded`) and a new one is asked — except when the backup file changed: the copy
restored from it no longer matches it, so the run stops instead. Nothing approved for one plan
can run another.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from actions.backups.files import file_identity
from actions.engine.plan import ApprovalPreview, RunContext

CHUNK = 1 << 20


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def backup_fingerprint(path: str) -> dict[str, Any]:
    """The facts `backup_checksum` reuses: computed by a step (preflight) at the same time as its
    other checks, so asking for the approval afterwards costs a stat, not a read of the dump.
    The identity is taken first: a file written to while it is hashed differs from it later."""
    identity = await asyncio.to_thread(file_identity, path)
    return {"backup_identity": identity, "backup_sha256": await asyncio.to_thread(_sha256, path)}


async def backup_checksum(ctx: RunContext) -> str | None:
    """The SHA-256 of the run's backup file, or None for a plan without one.

    Hashed once and remembered with the file's identity; hashed again only when the identity
    changed, so the check before the swap costs a stat, not another read of the dump. A file
    that is gone has no checksum: the binding then differs and the approval is void.
    """
    path = ctx.facts.get("backup_path")
    if not path:
        return None
    try:
        identity = await asyncio.to_thread(file_identity, path)
    except OSError:
        return "missing"
    if ctx.facts.get("backup_identity") == identity and ctx.facts.get("backup_sha256"):
        return ctx.facts["backup_sha256"]
    checksum = await asyncio.to_thread(_sha256, path)
    await ctx.remember({"backup_identity": identity, "backup_sha256": checksum})
    return checksum


async def binding(ctx: RunContext, step_keys: list[str], preview: ApprovalPreview) -> str:
    bound: dict[str, Any] = {
        "environment": ctx.environment.name, "target": ctx.environment.target, "plan": ctx.run.plan,
        "args": ctx.facts.get("args"), "steps": step_keys, "preview": preview.as_dict(),
        "backup_sha256": await backup_checksum(ctx),
    }
    return hashlib.sha256(json.dumps(bound, sort_keys=True, default=str).encode()).hexdigest()


async def bind(ctx: RunContext, step_keys: list[str], preview: ApprovalPreview) -> str:
    """The binding of a new approval; the backup's checksum is remembered to explain a change later."""
    digest = await binding(ctx, step_keys, preview)
    if ctx.facts.get("backup_path"):
        await ctx.remember({"approved_backup_sha256": ctx.facts.get("backup_sha256")})
    return digest


@dataclass(frozen=True)
class Change:
    reason: str
    fatal: bool  # True: asking again cannot help (the restored copy came from the backup as it was)


async def changes(ctx: RunContext, step_keys: list[str], preview: ApprovalPreview, approved: str | None) -> Change | None:
    """None when the plan is still exactly the one approved; otherwise what changed."""
    if approved is not None and await binding(ctx, step_keys, preview) == approved:
        return None
    if ctx.facts.get("backup_path") and await backup_checksum(ctx) != ctx.facts.get("approved_backup_sha256"):
        return Change(f"the backup file {ctx.facts['backup_path']} changed after the approval was asked: what was "
                      "restored and verified is no longer what the file holds", fatal=True)
    return Change("the plan is not the one approved (its binding differs)", fatal=False)
