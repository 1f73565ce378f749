"""What the bot says on its own, on a clock (APScheduler): status updates and checklist reminders.

- Status updates every `update_interval_seconds` while an incident is open, counted from the
  moment it was declared, written from the live state (current step, restore progress, ETA).
- Reminders of unticked post-incident items: the immediate ones an hour after the resolution,
  the 24-hour ones a day after. Each reminder is sent at most once (recorded in the store).

Nothing here lives only in memory: after a restart, `resume()` schedules again from the store.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from typing import Callable

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from actions.config import Settings
from actions.results import new_error_id
from actions.service import RollbackService
from actions.store.records import Incident, IncidentStatus, utcnow
from bot.notifier import UpdateDue
from bot.poster import Poster
from messages.postincident import reminder

log = logging.getLogger(__name__)


class Schedule:
    def __init__(self, settings: Settings, service: RollbackService, poster: Poster,
                 emit: Callable[[UpdateDue], None]):
        self.settings = settings
        self.service = service
        self.reads = service.reads
        self.poster = poster
        self.emit = emit  # to the notifier (the channel's update) and to outreach (the mailed one)
        self.scheduler = AsyncIOScheduler(timezone="UTC")

    async def resume(self) -> None:
        """Start the clock and schedule what the store says is due (also after a restart)."""
        self.scheduler.start()
        for incident in await self.reads.incidents(IncidentStatus.OPEN):
            self.watch(incident)
        for incident in await self.reads.incidents(IncidentStatus.RESOLVED):
            self.plan_reminders(incident)

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def incident_changed(self, incident: Incident) -> None:
        """Follow the incident's status: updates while open, reminders once resolved, nothing once closed."""
        if incident.status is IncidentStatus.OPEN:
            self.watch(incident)
            return
        self._drop(f"update:{incident.id}")
        if incident.status is IncidentStatus.RESOLVED:
            self.plan_reminders(incident)
        else:
            for job in self.scheduler.get_jobs():
                if job.id.startswith(f"remind:{incident.id}:"):
                    self._drop(job.id)

    def watch(self, incident: Incident) -> None:
        """Status updates on the incident's own clock: declared_at + k × interval."""
        job_id = f"update:{incident.id}"
        if self.scheduler.get_job(job_id):
            return
        interval = self.settings.bot.update_interval_seconds
        periods = max(1, math.ceil((utcnow() - incident.declared_at).total_seconds() / interval))
        first = incident.declared_at + timedelta(seconds=periods * interval)
        self.scheduler.add_job(self.update_due, "interval", seconds=interval, next_run_time=first, id=job_id,
                               args=[incident.id], max_instances=1, coalesce=True, misfire_grace_time=None)

    def plan_reminders(self, incident: Incident) -> None:
        for group, when in self.service.desk.reminder_times(incident):
            self.scheduler.add_job(self.remind, "date", run_date=when, id=f"remind:{incident.id}:{group}",
                                   args=[incident.id, group], replace_existing=True, misfire_grace_time=None)

    def _drop(self, job_id: str) -> None:
        try:
            self.scheduler.remove_job(job_id)
        except JobLookupError:
            pass

    async def update_due(self, incident_id: str) -> None:
        """The clock struck: queue the update behind the events already waiting, so an update
        never lands after the RESOLVED message (the notifier checks the status when it posts)."""
        self.emit(UpdateDue(incident_id))

    async def remind(self, incident_id: str, group_key: str) -> None:
        """Remind the channel of the group's unticked items, once (the desk decides whether it is due)."""
        try:
            due = await self.service.desk.reminder(incident_id, group_key)
            if due is not None:
                await self.poster.to_incident(incident_id, reminder(
                    incident_id, due.group_title, list(due.open_items), due.people))
        except Exception:
            log.exception("reminder %s for %s failed [%s]", group_key, incident_id, new_error_id())
