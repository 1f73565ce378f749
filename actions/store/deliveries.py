"""The store's part for pages and mails: each one is a row until it is delivered or given up.

A row is written before anything is sent, under a key unique to its incident and purpose, so a
restarted bot sends what was due when it stopped, and nothing that was already taken twice.
"""

from __future__ import annotations

import json
from typing import Any

from actions.store.records import Delivery, DeliveryState, iso, utcnow

DELIVERY_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE,
    incident_id TEXT NOT NULL REFERENCES incidents(id), transport TEXT NOT NULL, kind TEXT NOT NULL,
    payload TEXT NOT NULL, state TEXT NOT NULL, created_at TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, done_at TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_by_incident ON deliveries(incident_id, seq);
"""


class DeliveryStore:
    """Mixed into `Store`; uses its `db` (sqlite-utils) and `_one`."""

    db: Any

    def add_delivery(self, key: str, incident_id: str, transport: str, kind: str,
                     payload: dict[str, Any]) -> Delivery | None:
        """Queue a delivery; None if one with this key exists already (queued, sent or given up)."""
        cursor = self.db.execute(
            "INSERT INTO deliveries (key, incident_id, transport, kind, payload, state, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            (key, incident_id, transport, kind, json.dumps(payload, ensure_ascii=False), DeliveryState.PENDING,
             iso(utcnow())))
        if cursor.rowcount != 1:
            return None
        return self.delivery(cursor.lastrowid)

    def delivery(self, seq: int) -> Delivery | None:
        row = self._one("SELECT * FROM deliveries WHERE seq = ?", (seq,))  # type: ignore[attr-defined]
        return row and Delivery.from_row(row)

    def deliveries(self, *, incident_id: str | None = None, state: DeliveryState | None = None,
                   transport: str | None = None) -> list[Delivery]:
        """In the order they were queued."""
        sql, params = "SELECT * FROM deliveries WHERE 1 = 1", []
        for column, value in (("incident_id", incident_id), ("state", state), ("transport", transport)):
            if value is not None:
                sql, params = f"{sql} AND {column} = ?", [*params, value]  # column names from the tuple above
        return [Delivery.from_row(row) for row in self.db.query(sql + " ORDER BY seq", params)]

    def delivery_attempted(self, seq: int) -> int:
        """Count an attempt before it is made (so a restart knows how many were made); returns the count."""
        self.db.execute("UPDATE deliveries SET attempts = attempts + 1 WHERE seq = ?", (seq,))
        return self._one("SELECT attempts FROM deliveries WHERE seq = ?", (seq,))["attempts"]  # type: ignore[attr-defined]

    def delivery_ended(self, seq: int, state: DeliveryState, error: str | None = None) -> Delivery:
        self.db.execute("UPDATE deliveries SET state = ?, last_error = ?, done_at = ? WHERE seq = ?",
                        (state, error, iso(utcnow()), seq))
        return self.delivery(seq)  # type: ignore[return-value]

    def delivery_error(self, seq: int, error: str) -> None:
        """The last attempt's error, while the delivery is still being tried."""
        self.db.execute("UPDATE deliveries SET last_error = ? WHERE seq = ?", (error, seq))
