"""Who may do what: every slash verb (`verbs.py`) and every button and form (`BUTTONS`), declared once,
checked in one place (`Permissions.check`).

A refusal is written to the audit trail before it is answered, and the answer names who may. The
names in `BUTTONS` are the Slack side's action ids (`messages/ids.py`), which `actions/` does not
import; a test holds the two lists together, so a new button cannot come without a declared role.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from actions.config import SIGNOFF_ROLES, Settings
from actions.results import Refused
from actions.store.records import Actor, Role
from actions.store.sqlite import AsyncStore


class Who(StrEnum):
    """Who may use a verb or a button."""

    OPERATORS = "operators"
    RESPONDERS = "operators and approvers"
    APPROVERS = "approvers"
    POST_INCIDENT = "operators, approvers and sign-off people"
    SIGNER = "the sign-off role it names"
    ANYONE = "anyone"

    def allows(self, actor: Actor, signoff_role: str | None = None) -> bool:
        match self:
            case Who.OPERATORS:
                return actor.has(Role.OPERATOR)
            case Who.RESPONDERS:
                return actor.responder
            case Who.APPROVERS:
                return actor.has(Role.APPROVER)
            case Who.POST_INCIDENT:
                return actor.responder or any(actor.has(Role(r)) for r in SIGNOFF_ROLES)
            case Who.SIGNER:
                return signoff_role in SIGNOFF_ROLES and actor.has(Role(signoff_role))
        return True


@dataclass(frozen=True)
class Button:
    name: str  # its action id (or the prefix of a family of ids), or a form's callback id
    who: Who
    what: str  # "may …", in the refusal


BUTTONS: dict[str, Button] = {b.name: b for b in (
    Button("approval-approve", Who.APPROVERS, "approve or deny a destructive step"),
    Button("approval-deny", Who.APPROVERS, "approve or deny a destructive step"),
    Button("severity-critical", Who.RESPONDERS, "answer the decision tree"),
    Button("severity-minor", Who.RESPONDERS, "answer the decision tree"),
    Button("severity-unsure", Who.RESPONDERS, "answer the decision tree"),
    Button("incident-escalate", Who.RESPONDERS, "raise the incident's level"),
    Button("incident-resolve", Who.RESPONDERS, "mark the incident resolved"),
    Button("start-full-rollback", Who.OPERATORS, "start a rollback"),
    Button("carry-over", Who.OPERATORS, "start a rollback"),
    Button("remedy", Who.OPERATORS, "start a rollback"),
    Button("run-again", Who.OPERATORS, "start a rollback"),
    Button("retry-app", Who.OPERATORS, "start a rollback"),
    Button("clean-up", Who.OPERATORS, "start a rollback"),
    Button("checklist-", Who.POST_INCIDENT, "tick the post-incident checklist"),
    Button("signoff-", Who.SIGNER, "sign off"),
    Button("report-edit", Who.POST_INCIDENT, "edit the incident report"),
    Button("incident-report", Who.POST_INCIDENT, "edit the incident report"),  # the report form, saved
)}

# The buttons that start a plan: the plan's verb decides (the same check as typing it).
STARTS_PLAN = {"start-full-rollback": "full", "carry-over": "carry-over", "remedy": "remedy", "run-again": None,
               "retry-app": "restart", "clean-up": "cleanup"}


class Permissions:
    """The one role check: for a verb's or a button's `Who`, audited when it refuses."""

    def __init__(self, settings: Settings, store: AsyncStore):
        self.settings, self.store = settings, store

    def holders(self, who: Who, signoff_role: str | None = None) -> tuple[str, ...]:
        """The user and usergroup ids the config gives the role (the refusal's "Who may")."""
        bot = self.settings.bot
        signers = [s for role in SIGNOFF_ROLES for s in bot.signers(role)]
        ids = {Who.OPERATORS: bot.operators, Who.RESPONDERS: [*bot.operators, *bot.approvers],
               Who.APPROVERS: bot.approvers, Who.POST_INCIDENT: [*bot.operators, *bot.approvers, *signers],
               Who.SIGNER: bot.signers(signoff_role) if signoff_role in SIGNOFF_ROLES else [],
               Who.ANYONE: []}[who]
        return tuple(dict.fromkeys(ids))

    async def check(self, actor: Actor, who: Who, action: str, what: str, *, signoff_role: str | None = None,
                    **where) -> Refused | None:
        """None when `who` allows the actor; else the refusal, audited as `<action>.refused`."""
        if who.allows(actor, signoff_role):
            return None
        holder = (f"the configured {SIGNOFF_ROLES[signoff_role]}" if who is Who.SIGNER and signoff_role in SIGNOFF_ROLES
                  else who.value)
        await self.store.audit(actor.user_id, f"{action}.refused", outcome="refused", reason=f"not {holder}",
                               **{k: v for k, v in where.items() if v is not None})
        role = {Who.OPERATORS: Role.OPERATOR, Who.APPROVERS: Role.APPROVER}.get(who)
        if who is Who.SIGNER and signoff_role in SIGNOFF_ROLES:
            role = Role(signoff_role)
        return Refused(f"only {holder} may {what}", role, self.holders(who, signoff_role))

    async def button(self, actor: Actor, name: str, action: str, *, signoff_role: str | None = None,
                     **where) -> Refused | None:
        """A button's or form's declared `Who` (`name` as in BUTTONS), checked; a refusal is audited as
        `<action>.refused`."""
        button = BUTTONS[name]
        return await self.check(actor, button.who, action, button.what, signoff_role=signoff_role, **where)
