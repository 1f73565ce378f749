"""Approvals: deciding (who may, the two-person rule, one winner among racing clicks, no decision
after expiry) and gating (ask, wait at most approval_ttl_seconds, check the approved plan is still
the plan, else void it). Every rule about approvals is here, in one place.

The runner owns one `Approvals` and asks it at each destructive group of steps; a decision (a
click) reaches the waiting run through a future held here.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Awaitable, Callable

from actions.config import Settings
from actions.engine import binding as gate
from actions.engine.events import ApprovalDecided, ApprovalRequested, Emit
from actions.engine.plan import Plan, RunContext, Step, StepFailed, new_approval_id
from actions.permissions import BUTTONS
from actions.redact import Redactor
from actions.results import AlreadyDecided, ApprovalNotFound, Decided, DecideResult, Refused
from actions.store.records import Actor, Approval, ApprovalState, Role, StepState, iso, utcnow
from actions.store.sqlite import AsyncStore


class Denied(Exception):
    """Raised inside the runner when an approval it depends on was denied (or expired, or was void)."""

    def __init__(self, approval: Approval):
        self.approval = approval


StepTransition = Callable[[RunContext, Step, StepState], Awaitable[None]]


class Approvals:
    def __init__(self, settings: Settings, store: AsyncStore, emit: Emit, redact: Redactor,
                 step_transition: StepTransition):
        self.settings = settings
        self.store = store
        self.emit = emit
        self.redact = redact
        self._step_transition = step_transition  # the runner's: a waiting step is saved and announced as such
        self._decisions: dict[str, asyncio.Future[Approval]] = {}

    async def decide(self, approval_id: str, actor: Actor, approve: bool, *, incident_id: str) -> DecideResult:
        """Approve or deny. Authorisation is checked here, and only here; refusals are audited."""
        approval = await self.store.approval(approval_id)
        if approval is None or approval.incident_id != incident_id:
            await self.store.audit(actor.user_id, "approval.unknown", outcome="refused", approval=approval_id,
                                   claimed_incident=incident_id)
            return ApprovalNotFound(approval_id)
        where = {"environment": approval.environment, "incident_id": approval.incident_id, "run_id": approval.run_id}
        action = "approve" if approve else "deny"
        refusal = self._refusal(approval, actor)
        if refusal:
            await self.store.audit(actor.user_id, f"{action}.refused", outcome="refused", **where,
                                   approval=approval_id, reason=refusal.reason)
            return refusal
        state = ApprovalState.APPROVED if approve else ApprovalState.DENIED
        # The claim is one conditional UPDATE: of racing clicks exactly one changes the row.
        if approval.state is not ApprovalState.PENDING or not await self.store.claim_approval(
                approval_id, state, actor.user_id):
            approval = await self.store.approval(approval_id)
            if approval.state is ApprovalState.PENDING and await self.store.claim_approval(
                    approval_id, ApprovalState.EXPIRED, "bot"):  # too late: its time ran out before the click
                approval = await self.store.approval(approval_id)
                await self.store.audit("bot", "approval.expired", outcome="refused", **where, approval=approval_id)
                self.emit(ApprovalDecided(await self.store.incident(approval.incident_id),
                                          await self.store.run(approval.run_id), approval))
            await self.store.audit(actor.user_id, f"{action}.too_late", outcome="refused", **where,
                                   approval=approval_id, state=approval.state, decided_by=approval.decided_by)
            return AlreadyDecided(approval)
        decided = await self.store.approval(approval_id)
        await self.store.audit(actor.user_id, "approved" if approve else "denied", **where,
                               approval=approval_id, steps=approval.step_keys)
        future = self._decisions.get(approval_id)
        if future is not None and not future.done():
            future.set_result(decided)
        run = await self.store.run(approval.run_id)
        self.emit(ApprovalDecided(await self.store.incident(approval.incident_id), run, decided))
        return Decided(decided)

    def _refusal(self, approval: Approval, actor: Actor) -> Refused | None:
        approvers = tuple(self.settings.bot.approvers)
        declared = BUTTONS["approval-approve"]  # the role declared for both buttons (actions/permissions.py)
        if not declared.who.allows(actor):
            return Refused(f"only {declared.who.value} may {declared.what}", Role.APPROVER, approvers)
        if self.settings.bot.two_person_rule and actor.user_id == approval.requested_by:
            others = tuple(a for a in approvers if a != actor.user_id)
            return Refused("the two-person rule is on: the person who asked for the rollback cannot "
                           "approve or deny it; another approver must", Role.APPROVER, others)
        return None

    async def raise_if_denied(self, approvals) -> None:
        """Obey a denial that arrived while an uninterruptible step was running."""
        for approval in approvals:
            future = self._decisions.get(approval.id)
            if future is not None and future.done() and future.result().state is ApprovalState.DENIED:
                raise Denied(future.result())

    async def ask(self, ctx: RunContext, plan: Plan, group: tuple[Step, ...]) -> Approval:
        preview = group[0].preview(ctx)  # type: ignore[misc]  (Plan guarantees it)
        keys = [s.key for s in group]
        approval = await self.store.create_approval(
            approval_id=new_approval_id(), run=ctx.run, step_keys=keys, preview=preview.as_dict(),
            binding=await gate.bind(ctx, plan, keys, preview))
        self._decisions[approval.id] = asyncio.get_running_loop().create_future()
        await self.store.audit("bot", "approval.requested", environment=ctx.run.environment,
                               incident_id=ctx.incident.id, run_id=ctx.run.id, approval=approval.id,
                               steps=approval.step_keys, preview=preview.as_dict())
        self.emit(ApprovalRequested(ctx.incident, await self.store.run(ctx.run.id), approval))
        return approval

    def decision(self, approval_id: str) -> asyncio.Future[Approval]:
        return self._decisions.setdefault(approval_id, asyncio.get_running_loop().create_future())

    async def wait(self, ctx: RunContext, plan: Plan, approval: Approval, group: tuple[Step, ...]) -> Approval:
        """Fail closed: return the approval that opens `group` only if it was approved in time and
        the plan is still exactly the one approved; a changed plan gets a new approval request."""
        while True:
            decided = await self.store.approval(approval.id)
            if decided.state is ApprovalState.PENDING:
                for step in group:
                    await self._step_transition(ctx, step, StepState.WAITING)
                decided = await self._decision_in_time(ctx, decided)
            if decided.state is not ApprovalState.APPROVED:
                raise Denied(decided)
            keys = [s.key for s in group]
            change = await gate.changes(ctx, plan, keys, group[0].preview(ctx), decided.binding)  # type: ignore[misc]
            if change is None:
                return decided
            if await self.store.claim_approval(decided.id, ApprovalState.SUPERSEDED, "bot",
                                               expected=ApprovalState.APPROVED):
                await self.store.audit("bot", "approval.superseded", outcome="refused", environment=ctx.run.environment,
                                       incident_id=ctx.incident.id, run_id=ctx.run.id, approval=decided.id,
                                       reason=self.redact(change.reason))
                self.emit(ApprovalDecided(ctx.incident, await self.store.run(ctx.run.id),
                                          await self.store.approval(decided.id)))
            if change.fatal:
                raise StepFailed(f"{change.reason}; the approval is void and nothing live was changed")
            approval = await self.ask(ctx, plan, group)

    async def _decision_in_time(self, ctx: RunContext, approval: Approval) -> Approval:
        """Wait for the decision at most approval_ttl_seconds from now; then the approval expires."""
        ttl = self.settings.bot.approval_ttl_seconds
        await self.store.set_approval_expiry(approval.id, iso(utcnow() + timedelta(seconds=ttl)))
        try:
            return await asyncio.wait_for(asyncio.shield(self.decision(approval.id)), ttl)
        except TimeoutError:
            if not await self.store.claim_approval(approval.id, ApprovalState.EXPIRED, "bot"):
                return await self.store.approval(approval.id)  # a decision landed at the last moment
        await self.store.audit("bot", "approval.expired", outcome="refused", environment=ctx.run.environment,
                               incident_id=ctx.incident.id, run_id=ctx.run.id, approval=approval.id,
                               ttl_seconds=ttl)
        expired = await self.store.approval(approval.id)
        self.emit(ApprovalDecided(ctx.incident, await self.store.run(ctx.run.id), expired))
        return expired

    def why_not(self, approval: Approval) -> str:
        if approval.state is ApprovalState.EXPIRED:
            minutes = self.settings.bot.approval_ttl_seconds / 60
            return f"the approval expired: nobody decided within {minutes:g} min"
        return f"denied by <@{approval.decided_by}>"

    def forget(self, approvals) -> None:
        """The run no longer waits on these: drop their futures."""
        for approval in approvals:
            self._decisions.pop(approval.id, None)
