"""The store's post-incident part: checklist ticks, sign-offs, and the messages kept per incident."""

from __future__ import annotations

from typing import Any

from actions.store.records import iso, utcnow


class PostIncidentStore:
    """Mixed into `Store`; uses its `db` (sqlite-utils) and `_one`."""

    db: Any

    def set_checklist_item(self, incident_id: str, item: str, checked: bool, by: str) -> None:
        self.db["checklist"].upsert({"incident_id": incident_id, "item": item, "checked": int(checked),
                                     "by": by, "at": iso(utcnow())}, pk=("incident_id", "item"))

    def checklist(self, incident_id: str) -> dict[str, dict[str, Any]]:
        """item -> {checked, by, at} for every item somebody has ever ticked or unticked."""
        rows = self.db.query("SELECT item, checked, by, at FROM checklist WHERE incident_id = ?", (incident_id,))
        return {row["item"]: {**row, "checked": bool(row["checked"])} for row in rows}

    def sign_off(self, incident_id: str, role: str, user: str) -> bool:
        """Record a sign-off; False if the role was already signed (the first signature stands)."""
        cursor = self.db.execute(
            "INSERT INTO signoffs (incident_id, role, user, at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (incident_id, role, user, iso(utcnow())))
        return cursor.rowcount == 1

    def signoffs(self, incident_id: str) -> dict[str, dict[str, Any]]:
        rows = self.db.query("SELECT role, user, at FROM signoffs WHERE incident_id = ?", (incident_id,))
        return {row["role"]: row for row in rows}

    def remember_message(self, incident_id: str, kind: str, channel: str | None = None, ts: str | None = None) -> bool:
        """Record a message of `kind` for the incident; False if one was recorded already."""
        cursor = self.db.execute(
            "INSERT INTO incident_messages (incident_id, kind, channel, ts) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (incident_id, kind, channel, ts))
        return cursor.rowcount == 1

    def set_message(self, incident_id: str, kind: str, channel: str, ts: str) -> None:
        self.db["incident_messages"].upsert({"incident_id": incident_id, "kind": kind, "channel": channel, "ts": ts},
                                            pk=("incident_id", "kind"))

    def message(self, incident_id: str, kind: str) -> dict[str, Any] | None:
        return self._one("SELECT channel, ts FROM incident_messages WHERE incident_id = ? AND kind = ?",  # type: ignore[attr-defined]
                         (incident_id, kind))
