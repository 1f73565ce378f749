"""After the resolution: the report file and its prompt, the checklist, the sign-offs."""

from __future__ import annotations

from actions.config import Settings
from actions.engine.events import ReportWritten
from actions.service import RollbackService
from actions.store.records import IncidentStatus
from bot import presenters
from bot.poster import Poster
from messages.postincident import checklist_message, report_prompt, signoff_message

NOTES = {"root_cause": "Root Cause", "what_failed": "What Failed", "prevention": "Prevention"}


class PostIncident:
    def __init__(self, poster: Poster, settings: Settings, service: RollbackService):
        self.poster = poster
        self.settings = settings
        self.reads = service.reads
        self.sent = service.sent

    async def report_written(self, event: ReportWritten) -> None:
        """Upload the report; keep one prompt to fill it in; after the resolution, the checklist and sign-offs."""
        incident = await self.reads.incident(event.incident.id)
        title = f"Incident report {incident.id}" + (" (final)" if event.final else "")
        await self.poster.upload(incident.id, event.path, title, f"📄 {title}")
        missing = [label for key, label in NOTES.items() if not getattr(incident, key)]
        await self.poster.post_or_update(incident.id, "report_prompt", report_prompt(incident.id, missing))
        if incident.status is not IncidentStatus.OPEN and await self.sent.get(incident.id, "checklist") is None:
            await self.redraw(incident.id, "checklist")
            await self.redraw(incident.id, "signoffs")

    async def redraw(self, incident_id: str, what: str) -> None:
        """Post or update the checklist or the sign-offs from the store (the truth after a restart too)."""
        if what == "checklist":
            message = checklist_message(presenters.checklist_view(incident_id, await self.reads.checklist(incident_id)))
        else:
            incident = await self.reads.incident(incident_id)
            message = signoff_message(presenters.signoff_view(incident, await self.reads.signoffs(incident_id), self.settings))
        await self.poster.post_or_update(incident_id, what, message)
