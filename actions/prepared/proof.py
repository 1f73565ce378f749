"""Proving a prepared copy unchanged since it was verified.

Once verified, the copy is closed to connections (`ALLOW_CONNECTIONS false`): from then on nobody, not a
superuser either, can connect to it, so nothing can write to it. Reopening it takes an `ALTER DATABASE`,
which writes a new version of its `pg_database` row, and so do a rename, a new owner or a grant. The proof
kept when it was closed is that row's identity: the database's oid and the row version (`xmin`). A full
rollback uses the copy only if the copy still refuses connections and both are the same: the copy is then
the very database that was verified, and nobody has been able to open it since. (Autovacuum may still freeze
its rows; that changes no row's content and leaves the row version as it was.)
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from actions.store.records import PreparedCopy

ROW_SQL = "SELECT oid::bigint, xmin::text, datallowconn FROM pg_database WHERE datname = %s"


@dataclass(frozen=True)
class Proof:
    oid: int
    row_version: str

    def as_dict(self) -> dict:
        return {"oid": self.oid, "row_version": self.row_version}


async def close_and_prove(conn: psycopg.AsyncConnection, database: str) -> Proof:
    """Refuse connections to `database`, end any session on it, and read the proof (autocommit `conn`)."""
    await conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(database)))
    await conn.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = %s "
                       "AND pid <> pg_backend_pid()", (database,))
    row = await (await conn.execute(ROW_SQL, (database,))).fetchone()
    return Proof(row[0], row[1])


async def unchanged(conn: psycopg.AsyncConnection, copy: PreparedCopy) -> str | None:
    """None when `copy` is proven unchanged since it was verified; else why it is not."""
    row = await (await conn.execute(ROW_SQL, (copy.database,))).fetchone()
    if row is None:
        return f"{copy.database} no longer exists"
    oid, version, allows = row
    if not copy.proof:
        return f"{copy.database} was never closed after its verification"
    if oid != copy.proof.get("oid"):
        return f"{copy.database} is not the database that was verified (it was dropped and made again)"
    if allows:
        return f"{copy.database} accepts connections again, so something may have written to it"
    if version != copy.proof.get("row_version"):
        return (f"{copy.database} was altered after its verification (reopened, renamed or granted: its "
                "pg_database row changed), so something may have written to it")
    return None


async def proven_copy(conn: psycopg.AsyncConnection, copies: list[PreparedCopy], backup_sha256: str) -> PreparedCopy | None:
    """The newest ready copy that holds the backup whose SHA-256 is `backup_sha256` and is proven unchanged."""
    for copy in reversed(copies):
        if copy.backup_sha256 == backup_sha256 and await unchanged(conn, copy) is None:
            return copy
    return None
