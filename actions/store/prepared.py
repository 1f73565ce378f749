"""The store's part for prepared rollbacks: one row per `/rollback prepare`, from its start to its end.

A copy is usable only in state `ready`, with the proof recorded when it was closed; a crash during a
prepare leaves its row `preparing`, which the next start turns into `failed` (never `ready`).
"""

from __future__ import annotations

import json
from typing import Any

from actions.store.records import PreparedCopy, PreparedState, iso, utcnow

PREPARED_SCHEMA = """
CREATE TABLE IF NOT EXISTS prepared_copies (
    id TEXT PRIMARY KEY, environment TEXT NOT NULL, database TEXT NOT NULL, state TEXT NOT NULL,
    requested_by TEXT NOT NULL, started_at TEXT NOT NULL, backup_path TEXT, backup_sha256 TEXT,
    backup_created TEXT, backup_size INTEGER, backup_seconds REAL, restore_seconds REAL, size INTEGER,
    ready_at TEXT, ended_at TEXT, proof TEXT NOT NULL DEFAULT '{}', row_counts TEXT NOT NULL DEFAULT '{}', note TEXT
);
-- At most one prepare under way per environment, enforced by the database.
CREATE UNIQUE INDEX IF NOT EXISTS one_prepare_at_a_time ON prepared_copies(environment) WHERE state = 'preparing';
"""

_JSON = ("proof", "row_counts")


class PreparedStore:
    """Mixed into `Store`; uses its `db` (sqlite-utils) and `_one`."""

    db: Any

    def start_prepared(self, copy_id: str, environment: str, database: str, requested_by: str) -> PreparedCopy | None:
        """Record a prepare as under way; None if the environment already has one under way."""
        cursor = self.db.execute(
            "INSERT INTO prepared_copies (id, environment, database, state, requested_by, started_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (copy_id, environment, database, PreparedState.PREPARING, requested_by, iso(utcnow())))
        return self.prepared_copy(copy_id) if cursor.rowcount == 1 else None

    def update_prepared(self, copy_id: str, **values: Any) -> PreparedCopy:
        for key in _JSON:
            if key in values:
                values[key] = json.dumps(values[key], default=str)
        for key, value in list(values.items()):
            if hasattr(value, "isoformat"):
                values[key] = iso(value)
        if values.get("state") in (PreparedState.USED, PreparedState.REPLACED, PreparedState.REMOVED,
                                   PreparedState.FAILED):
            values.setdefault("ended_at", iso(utcnow()))
        self.db["prepared_copies"].update(copy_id, values)
        return self.prepared_copy(copy_id)  # type: ignore[return-value]

    def prepared_copy(self, copy_id: str) -> PreparedCopy | None:
        row = self._one("SELECT * FROM prepared_copies WHERE id = ?", (copy_id,))  # type: ignore[attr-defined]
        return row and PreparedCopy.from_row(row)

    def prepared_copies(self, *, environment: str | None = None,
                        states: tuple[PreparedState, ...] = ()) -> list[PreparedCopy]:
        """Oldest first."""
        sql, params = "SELECT * FROM prepared_copies WHERE 1 = 1", []
        if environment is not None:
            sql, params = sql + " AND environment = ?", [*params, environment]
        if states:
            sql += f" AND state IN ({', '.join('?' for _ in states)})"
            params += list(states)
        return [PreparedCopy.from_row(row) for row in self.db.query(sql + " ORDER BY started_at, id", params)]

    def end_interrupted_prepares(self) -> list[PreparedCopy]:
        """At start-up: prepares left under way by a stopped bot are failed (their copy is a leftover)."""
        interrupted = self.prepared_copies(states=(PreparedState.PREPARING,))
        for copy in interrupted:
            self.update_prepared(copy.id, state=PreparedState.FAILED,
                                 note="interrupted: the bot stopped while it prepared; the copy was never verified")
        return interrupted

    def end_unreplaced_copies(self) -> list[tuple[PreparedCopy, PreparedCopy]]:
        """At start-up: a prepare that stopped after its copy was ready and before it replaced the older one
        leaves two ready copies of an environment. The newest stands; each older one is marked replaced (its
        database becomes a leftover, which the start-up scan offers to drop). Returns (older, newest) pairs."""
        ended = []
        by_environment: dict[str, list[PreparedCopy]] = {}
        for copy in self.prepared_copies(states=(PreparedState.READY,)):
            by_environment.setdefault(copy.environment, []).append(copy)
        for copies in by_environment.values():
            newest = max(copies, key=lambda c: (c.ready_at, c.started_at, c.id))
            for older in copies:
                if older is not newest:
                    self.update_prepared(older.id, state=PreparedState.REPLACED,
                                         note=f"replaced by {newest.database} (the bot stopped before it dropped this)")
                    ended.append((older, newest))
        return ended
