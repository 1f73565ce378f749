"""The audit trail as a hash chain: each row carries the hash of the one before it.

Triggers already refuse UPDATE and DELETE, but whoever holds the file can drop them. The chain
makes that visible: changing, removing or reordering a row breaks every hash after it, and
`verify` names the first row that does not match. Removing rows from the end is caught too:
SQLite's AUTOINCREMENT counter (`sqlite_sequence`) remembers the highest seq ever written.

A row's hash is SHA-256 over the previous row's hash and the row's own columns, as canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64  # the "previous hash" of the first row
COLUMNS = ("seq", "at", "actor", "action", "outcome", "environment", "incident_id", "run_id", "detail")


def row_hash(previous: str, row: dict[str, Any]) -> str:
    canonical = json.dumps([previous, *(row[c] for c in COLUMNS)], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def append(conn: sqlite3.Connection, row: dict[str, Any]) -> str:
    """Insert `row` (COLUMNS but seq) at the end of the chain; returns its hash.

    BEGIN IMMEDIATE takes the write lock before the last hash is read, so two processes writing
    to the same file (the bot and the CLI) can never both chain onto the same row.
    """
    if conn.in_transaction:  # sqlite3's implicit transaction from an earlier statement of this connection
        conn.commit()
    conn.execute("BEGIN IMMEDIATE")
    try:
        last = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        counter = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit'").fetchone()
        seq = max(last[0] if last else 0, counter[0] if counter else 0) + 1
        full = {**row, "seq": seq}
        digest = row_hash(last[1] if last else GENESIS, full)
        conn.execute("INSERT INTO audit (seq, at, actor, action, outcome, environment, incident_id, run_id, detail, "
                     "prev_hash, hash) VALUES (:seq, :at, :actor, :action, :outcome, :environment, :incident_id, "
                     ":run_id, :detail, :prev_hash, :hash)",
                     {**full, "prev_hash": last[1] if last else GENESIS, "hash": digest})
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return digest


@dataclass(frozen=True)
class ChainCheck:
    rows: int
    head: str | None  # the last row's hash: what the incident report quotes
    head_seq: int | None
    first_bad_seq: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(conn: sqlite3.Connection) -> ChainCheck:
    """Recompute the chain from the first row; stop at the first row that does not match."""
    previous, count, last_seq = GENESIS, 0, 0
    cursor = conn.execute(f"SELECT {', '.join(COLUMNS)}, prev_hash, hash FROM audit ORDER BY seq")
    for values in cursor:
        row = dict(zip((*COLUMNS, "prev_hash", "hash"), values))
        seq = row["seq"]
        if row["prev_hash"] != previous:
            why = ("a row before it was removed or changed" if seq != last_seq + 1
                   else "it does not follow the row before it")
            return ChainCheck(count, previous, last_seq or None, seq, f"row {seq}: {why} (previous hash mismatch)")
        if row_hash(previous, row) != row["hash"]:
            return ChainCheck(count, previous, last_seq or None, seq, f"row {seq}: its content was changed "
                                                                      "(hash mismatch)")
        previous, count, last_seq = row["hash"], count + 1, seq
    counter = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit'").fetchone()
    if counter and counter[0] > last_seq:
        return ChainCheck(count, previous, last_seq or None, last_seq + 1,
                          f"rows {last_seq + 1}–{counter[0]} were removed from the end")
    return ChainCheck(count, previous if count else None, last_seq or None)


def head(conn: sqlite3.Connection) -> tuple[int, str] | None:
    """(seq, hash) of the newest row, without verifying."""
    return conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()


def upgrade(conn: sqlite3.Connection) -> None:
    """Chain a trail written before the chain existed: add the columns and hash the old rows, in
    order, once. The append-only triggers are lifted for exactly this and put back."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(audit)")}
    if "hash" in columns:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("ALTER TABLE audit ADD COLUMN prev_hash TEXT")
        conn.execute("ALTER TABLE audit ADD COLUMN hash TEXT")
        conn.execute("DROP TRIGGER IF EXISTS audit_is_append_only_u")
        previous = GENESIS
        rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM audit ORDER BY seq").fetchall()
        for values in rows:
            row = dict(zip(COLUMNS, values))
            digest = row_hash(previous, row)
            conn.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (previous, digest, row["seq"]))
            previous = digest
        conn.execute("CREATE TRIGGER IF NOT EXISTS audit_is_append_only_u BEFORE UPDATE ON audit "
                     "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
