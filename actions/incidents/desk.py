"""The incident's life around the rollbacks: declare, assess, escalate, resolve, post-incident, close.

Runbook Parts 1 (decision tree), 2 (escalation levels) and 10 (post-incident actions), and the
sign-offs. Like the runner, every action checks who may do it (the button's declared role,
`actions/permissions.py`), writes the store and the audit trail, then emits events for `bot/` to show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from actions.config import SIGNOFF_ROLES, Settings
from actions.engine.events import (
    Emit,
    Escalated,
    IncidentChanged,
    IncidentDeclared,
    PostIncidentChanged,
    ReportWritten,
    SeverityAsked,
    SeverityChosen,
)
from actions.incidents.checklist import CHECKLIST, GROUPS, unchecked
from actions.incidents.report import write_report
from actions.permissions import Permissions
from actions.results import (
    Declared,
    DeclareResult,
    IncidentNotFound,
    LifecycleResult,
    NotPossible,
    Recorded,
)
from actions.store.records import Actor, AlertStatus, Incident, IncidentStatus, utcnow
from actions.store.sqlite import AsyncStore


@dataclass(frozen=True)
class Reminder:
    incident_id: str
    group_title: str
    open_items: tuple[str, ...]
    people: tuple[str, ...]  # who is named: the declarer and the approvers


SEVERITIES = {"critical": 3, "minor": None, "unsure": None}  # the level each answer sets, if any
LEVELS = {1: "Issue detection", 2: "Partial failure", 3: "Critical failure"}


class IncidentDesk:
    def __init__(self, settings: Settings, store: AsyncStore, emit: Emit, permissions: Permissions):
        self.settings = settings
        self.store = store
        self.emit = emit
        self.permissions = permissions

    async def _may(self, actor: Actor, button: str, action: str, incident: Incident, **detail):
        """None if the actor holds the button's declared role; else its refusal (audited)."""
        return await self.permissions.button(actor, button, action, incident_id=incident.id,
                                             environment=incident.environment, **detail)

    async def _audit(self, actor: Actor, action: str, incident: Incident, **detail) -> None:
        await self.store.audit(actor.user_id, action, incident_id=incident.id, environment=incident.environment, **detail)

    async def _open_incident(self, actor: Actor, button: str, action: str, incident_id: str
                             ) -> Incident | LifecycleResult:
        """The incident if the actor may act on it while it is open; else the answer to give."""
        incident = await self.store.incident(incident_id)
        if incident is None:
            return IncidentNotFound(incident_id)
        if refused := await self._may(actor, button, action, incident):
            return refused
        if incident.status is not IncidentStatus.OPEN:
            return NotPossible(f"{incident.id} is already {incident.status.value}")
        return incident

    # -- opening ------------------------------------------------------------------------------

    async def declare(self, actor: Actor, environment: str, summary: str | None, *, assess: bool = False) -> DeclareResult:
        """`/rollback declare` (and `assess`, which then asks the decision tree's question). The
        service has checked the environment and who may (`actions/verbs.py`)."""
        action = "assess" if assess else "declare"
        incident, new = await self.store.declare_incident(
            environment=environment, declared_by=actor.user_id, channel=self.settings.bot.incident_channel,
            summary=summary)
        if new:
            await self._audit(actor, "incident.declared", incident, summary=summary, via=action)
            self.emit(IncidentDeclared(incident, action))
        if assess:
            await self._audit(actor, "severity.asked", incident)
            self.emit(SeverityAsked(incident))
        return Declared(incident, new)

    # -- decision tree and escalation -----------------------------------------------------------

    async def choose_severity(self, actor: Actor, incident_id: str, choice: str) -> LifecycleResult:
        """CRITICAL → level 3 and a full rollback proposed; MINOR → continue and fix; UNSURE → pause, page."""
        if choice not in SEVERITIES:
            return NotPossible(f"unknown answer {choice!r}")
        incident = await self._open_incident(actor, f"severity-{choice}", "severity", incident_id)
        if not isinstance(incident, Incident):
            return incident
        values = {"severity": choice}
        if SEVERITIES[choice] and incident.level < SEVERITIES[choice]:
            values["level"] = SEVERITIES[choice]
        incident = await self.store.update_incident(incident.id, **values)
        await self._audit(actor, f"severity.{choice}", incident, level=incident.level)
        self.emit(SeverityChosen(incident, choice, actor.user_id, tuple(self.settings.bot.approvers)))
        self.emit(IncidentChanged(incident, None, await self._app_stopped(incident)))
        note = {"critical": "Recorded CRITICAL: the full rollback is proposed in the channel.",
                "minor": "Recorded MINOR: continue and fix.",
                "unsure": "Recorded UNSURE: paused, approvers paged."}[choice]
        return Recorded(incident, note)

    async def escalate(self, actor: Actor, incident_id: str) -> LifecycleResult:
        incident = await self._open_incident(actor, "incident-escalate", "escalate", incident_id)
        if not isinstance(incident, Incident):
            return incident
        if incident.level >= 3:
            return NotPossible(f"{incident.id} is already at level 3 ({LEVELS[3]})")
        incident = await self.store.update_incident(incident.id, level=incident.level + 1)
        await self._audit(actor, "escalated", incident, level=incident.level)
        self.emit(Escalated(incident, actor.user_id, tuple(self.settings.bot.approvers), LEVELS[incident.level]))
        self.emit(IncidentChanged(incident, None, await self._app_stopped(incident)))
        return Recorded(incident, f"Raised {incident.id} to level {incident.level} ({LEVELS[incident.level]}); "
                                  "approvers notified.")

    async def resolve(self, actor: Actor, incident_id: str) -> LifecycleResult:
        """Resolve by hand: a minor issue fixed forward, or an app fixed after a rollback's swap."""
        incident = await self._open_incident(actor, "incident-resolve", "resolve", incident_id)
        if not isinstance(incident, Incident):
            return incident
        if await self.store.runs(incident_id=incident.id, active=True):
            return NotPossible(f"a rollback of {incident.environment} is running; it resolves the incident when it succeeds")
        incident = await self.store.update_incident(incident.id, status=IncidentStatus.RESOLVED,
                                                    alert_status=AlertStatus.RESOLVED)
        await self._audit(actor, "incident.resolved", incident)
        self.emit(IncidentChanged(incident, None, False, by=actor.user_id))
        await self.write_report(incident.id)
        return Recorded(incident, f"Resolved {incident.id}.")

    async def _app_stopped(self, incident: Incident) -> bool:
        runs = await self.store.runs(incident_id=incident.id)
        return bool(runs and runs[-1].facts.get("app_stopped"))

    # -- post-incident --------------------------------------------------------------------------

    async def tick(self, actor: Actor, incident_id: str, group: str, selected: set[str]) -> LifecycleResult:
        """The checkboxes of one checklist group now show `selected`: record every change."""
        incident = await self.store.incident(incident_id)
        if incident is None or group not in GROUPS:
            return IncidentNotFound(incident_id)
        if refused := await self._may(actor, "checklist-", "checklist", incident, group=group):
            return refused
        state = await self.store.checklist(incident.id)
        changed = []
        for key, _ in GROUPS[group].items:
            checked = key in selected
            if checked != bool(state.get(key, {}).get("checked")):
                await self.store.set_checklist_item(incident.id, key, checked, actor.user_id)
                await self._audit(actor, "checklist.checked" if checked else "checklist.unchecked", incident, item=key)
                changed.append(key)
        if changed:
            self.emit(PostIncidentChanged(incident, "checklist"))
        return Recorded(incident, f"{len(changed)} checklist item(s) updated.")

    async def sign_off(self, actor: Actor, incident_id: str, role: str) -> LifecycleResult:
        incident = await self.store.incident(incident_id)
        if incident is None or role not in SIGNOFF_ROLES:
            return IncidentNotFound(incident_id)
        if refused := await self.permissions.button(actor, "signoff-", "sign_off", signoff_role=role,
                                                    incident_id=incident.id, environment=incident.environment):
            return refused
        if incident.status is IncidentStatus.OPEN:
            return NotPossible(f"{incident.id} is not resolved yet: sign-offs come after the resolution")
        if not await self.store.sign_off(incident.id, role, actor.user_id):
            signed = (await self.store.signoffs(incident.id))[role]
            return NotPossible(f"{SIGNOFF_ROLES[role]} was already signed off by <@{signed['user']}>")
        await self._audit(actor, "signed_off", incident, role=role)
        self.emit(PostIncidentChanged(incident, "signoffs"))
        missing = [r for r in self.settings.bot.required_signoffs if r not in await self.store.signoffs(incident.id)]
        if missing or incident.status is IncidentStatus.CLOSED:
            return Recorded(incident, f"Signed off as {SIGNOFF_ROLES[role]}.")
        incident = await self.store.update_incident(incident.id, status=IncidentStatus.CLOSED)
        await self.store.audit("bot", "incident.closed", incident_id=incident.id, environment=incident.environment,
                               reason="all required sign-offs are in")
        self.emit(IncidentChanged(incident, None, False))
        await self.write_report(incident.id, final=True)
        return Recorded(incident, f"Signed off as {SIGNOFF_ROLES[role]}; {incident.id} is closed.")

    async def save_notes(self, actor: Actor, incident_id: str, *, root_cause: str, what_failed: str,
                         prevention: str) -> LifecycleResult:
        """Root cause, what failed and prevention, from the report modal; the report is rewritten."""
        incident = await self.store.incident(incident_id)
        if incident is None:
            return IncidentNotFound(incident_id)
        if refused := await self._may(actor, "incident-report", "report_notes", incident):
            return refused
        incident = await self.store.update_incident(
            incident.id, root_cause=root_cause.strip() or None, what_failed=what_failed.strip() or None,
            prevention=prevention.strip() or None)
        await self._audit(actor, "report.edited", incident)
        await self.write_report(incident.id)
        return Recorded(incident, f"Saved; the report of {incident.id} was regenerated.")

    # -- reminders ------------------------------------------------------------------------------

    def reminder_times(self, incident: Incident) -> list[tuple[str, datetime]]:
        """(checklist group, when) of the reminders a resolved incident is due: the immediate items an
        hour after the resolution, the 24-hour items a day after (now, if that is past)."""
        delays = {"immediate": self.settings.bot.remind_immediate_after_seconds,
                  "day": self.settings.bot.remind_day_after_seconds}
        if incident.resolved_at is None:
            return []
        return [(group.key, max(incident.resolved_at + timedelta(seconds=delays[group.remind]), utcnow()))
                for group in CHECKLIST if group.remind is not None]

    async def reminder(self, incident_id: str, group_key: str) -> Reminder | None:
        """The reminder of a group's unticked items, once per incident and group (also across
        restarts); None when it is not due (the incident moved on, every item is ticked, or it was sent)."""
        incident = await self.store.incident(incident_id)
        group = GROUPS[group_key]
        open_items = unchecked(group, await self.store.checklist(incident_id))
        if incident is None or incident.status is not IncidentStatus.RESOLVED or not open_items:
            return None
        if not await self.store.remember_message(incident_id, f"reminder:{group_key}"):
            return None
        await self.store.audit("bot", "reminder.sent", incident_id=incident_id, environment=incident.environment,
                               group=group_key, open=len(open_items))
        people = tuple(dict.fromkeys([incident.declared_by, *self.settings.bot.approvers]))
        return Reminder(incident_id, group.title, tuple(open_items), people)

    async def write_report(self, incident_id: str, *, final: bool = False) -> str:
        path = await write_report(self.settings, self.store, incident_id)
        self.emit(ReportWritten(await self.store.incident(incident_id), str(path), final))
        return str(path)
