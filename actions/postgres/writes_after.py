"""Rows written after the backup: the kept failed database against the restored one, table by table.

A full rollback restores the backup, so whatever was written after it — by the application before the
migration, during it with `stop_app = "at_swap"`, and by the migration itself (the two cannot be told
apart) — is only in the failed database, which the bot keeps. This counts it exactly, per table:

- inserted: the primary key is only in the failed database;
- updated: the key is in both, and a column present in both differs;
- deleted: the key is only in the restored database.

Only tables with the same primary key in both are compared; the others are named with the reason. A
partitioned table is compared as one table (its partitions hold its rows).

Cost: about one read of each database. Each side sums a 64-bit hash of every row's common columns per
bucket of keys (`BUCKETS` buckets, one scan, a few hundred rows sent back); only the buckets whose count or
sum differ are read again, key by key, to tell inserts, updates and deletes apart. After a typical incident
few buckets differ; a migration that rewrote every row of a table makes all of that table's buckets differ,
and then both sides of that table are read twice. A difference hidden by a 64-bit hash collision is
possible in principle (about one in 10^19 per row) and ignored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import psycopg
from psycopg import sql

from actions.postgres.catalog import Catalog, describe, qualified, stable_session

BUCKETS = 256
Connect = Callable[[], Awaitable[psycopg.AsyncConnection]]


@dataclass(frozen=True)
class TableWrites:
    table: str
    inserted: int
    updated: int
    deleted: int

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.deleted


@dataclass(frozen=True)
class WritesAfter:
    tables: tuple[TableWrites, ...]  # the tables with at least one row written after the backup
    compared: int  # tables compared
    not_compared: tuple[tuple[str, str], ...]  # (table, why not)
    rows_read: int  # rows read on both sides, the second reads included
    seconds: float

    @property
    def inserted(self) -> int:
        return sum(t.inserted for t in self.tables)

    @property
    def updated(self) -> int:
        return sum(t.updated for t in self.tables)

    @property
    def deleted(self) -> int:
        return sum(t.deleted for t in self.tables)

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.deleted

    def as_dict(self) -> dict:
        return {"tables": [[t.table, t.inserted, t.updated, t.deleted] for t in self.tables],
                "compared": self.compared, "not_compared": [list(n) for n in self.not_compared],
                "rows_read": self.rows_read, "seconds": round(self.seconds, 3)}


def comparable(failed: Catalog, restored: Catalog) -> tuple[list[tuple[str, list[str], list[str]]], list[tuple[str, str]]]:
    """([(table, key columns, common columns)], [(table, why not compared)]), in name order."""
    pairs, skipped = [], []
    for name in sorted(set(failed.tables) | set(restored.tables)):
        after, before = failed.tables.get(name), restored.tables.get(name)
        if (after or before).partition_of:
            continue  # counted with its partitioned table
        if before is None:
            skipped.append((name, "only in the failed database (created after the backup)"))
        elif after is None:
            skipped.append((name, "only in the restored database (dropped after the backup)"))
        elif not before.primary_key or not after.primary_key:
            skipped.append((name, "no primary key"))
        elif before.primary_key != after.primary_key:
            skipped.append((name, f"its primary key changed ({', '.join(before.primary_key)} → "
                                  f"{', '.join(after.primary_key)})"))
        else:
            kept = {c.name for c in after.columns}
            common = [c.name for c in before.columns if c.name in kept]
            pairs.append((name, before.primary_key, common))
    return pairs, skipped


def _expressions(key: list[str], common: list[str]) -> tuple[sql.Composable, sql.Composable]:
    """(the key as text, a 64-bit hash of the common columns' values as text)."""
    key_text = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(map(sql.Identifier, key)))
    row_hash = sql.SQL("hashtextextended(ROW({})::text, 0)").format(sql.SQL(", ").join(map(sql.Identifier, common)))
    return key_text, row_hash


async def _buckets(conn: psycopg.AsyncConnection, table: str, key: list[str], common: list[str]) -> dict[int, tuple]:
    key_text, row_hash = _expressions(key, common)
    query = sql.SQL("SELECT mod(abs(hashtextextended({k}, 1)), {n}) AS b, count(*), sum({h}::numeric) "
                    "FROM {t} GROUP BY b").format(k=key_text, n=sql.Literal(BUCKETS), h=row_hash, t=qualified(table))
    rows = await (await conn.execute(query)).fetchall()
    return {b: (count, total) for b, count, total in rows}


async def _rows_in(conn: psycopg.AsyncConnection, table: str, key: list[str], common: list[str],
                   buckets: list[int]) -> dict[str, int]:
    key_text, row_hash = _expressions(key, common)
    query = sql.SQL("SELECT {k}, {h} FROM {t} WHERE mod(abs(hashtextextended({k}, 1)), {n}) = ANY(%s)").format(
        k=key_text, h=row_hash, t=qualified(table), n=sql.Literal(BUCKETS))
    rows = await (await conn.execute(query, (buckets,))).fetchall()
    return dict(rows)


@dataclass(frozen=True)
class TableDiff:
    """One table's rows that differ: `after` (failed) and `before` (restored) key -> row hash, for the
    buckets whose count or sum differ only; `read` rows read on both sides to find them."""

    after: dict[str, int]
    before: dict[str, int]
    read: int

    @property
    def inserted(self) -> list[str]:
        return sorted(k for k in self.after if k not in self.before)

    @property
    def updated(self) -> list[str]:
        return sorted(k for k, h in self.after.items() if k in self.before and self.before[k] != h)

    @property
    def deleted(self) -> list[str]:
        return sorted(k for k in self.before if k not in self.after)


async def table_diff(failed: psycopg.AsyncConnection, restored: psycopg.AsyncConnection, table: str,
                     key: list[str], common: list[str]) -> TableDiff:
    """Bucket sums on both sides (one scan each), then the differing buckets key by key (stable sessions on
    both, as `compare` sets them)."""
    after, before = await _buckets(failed, table, key, common), await _buckets(restored, table, key, common)
    read = sum(c for c, _ in after.values()) + sum(c for c, _ in before.values())
    differing = sorted(b for b in set(after) | set(before) if after.get(b) != before.get(b))
    if not differing:
        return TableDiff({}, {}, read)
    new, old = await _rows_in(failed, table, key, common, differing), await _rows_in(restored, table, key, common,
                                                                                    differing)
    return TableDiff(new, old, read + len(new) + len(old))


async def hashes_of(conn: psycopg.AsyncConnection, table: str, key: list[str], common: list[str],
                    keys: list[str]) -> dict[str, int]:
    """key -> row hash of the rows of `table` under `keys` (those that exist): one read of the table."""
    if not keys:
        return {}
    key_text, row_hash = _expressions(key, common)
    query = sql.SQL("SELECT r.k, r.h FROM (SELECT {k} AS k, {h} AS h FROM {t}) AS r WHERE r.k = ANY(%s)").format(
        k=key_text, h=row_hash, t=qualified(table))
    return dict(await (await conn.execute(query, (keys,))).fetchall())


@dataclass(frozen=True)
class CarryCandidates:
    """One table's rows written after the backup, set against live as it is now (the carry-over's view).

    Decided from three sides: the failed database (F), the backup's rows (B, restored aside) and live (L).
    Inserted after the backup means in F and not in B; updated means in both and different. Whether live
    still holds the backup's version is asked of L, never assumed: since the rollback, the application may
    have changed or deleted a row, or inserted another under a key the backup had not used yet (live's
    sequences came back with the backup)."""

    inserts: list[str]  # inserted after the backup; the key is free in live
    taken: list[str]  # inserted after the backup; live has another row under that key
    updates: dict[str, int]  # updated after the backup; live still holds the backup's version (key -> its hash)
    changed: list[str]  # updated after the backup; live changed or deleted the row since the rollback
    already: int  # in live as the failed database has them (an earlier carry-over)
    updated: list[str]  # every key updated after the backup
    read: int  # rows read to decide


async def carry_candidates(failed: psycopg.AsyncConnection, backup: psycopg.AsyncConnection,
                           live: psycopg.AsyncConnection, table: str, key: list[str], common: list[str]
                           ) -> CarryCandidates:
    """F against B as `table_diff` does, then live's rows under the differing keys (stable sessions on all three)."""
    rows = await table_diff(failed, backup, table, key, common)
    inserted, updated = rows.inserted, rows.updated
    now = await hashes_of(live, table, key, common, inserted + updated)
    return CarryCandidates(
        inserts=[k for k in inserted if k not in now],
        taken=[k for k in inserted if k in now and now[k] != rows.after[k]],
        updates={k: rows.before[k] for k in updated if now.get(k) == rows.before[k]},
        changed=[k for k in updated if now.get(k) not in (rows.before[k], rows.after[k])],
        already=sum(1 for k in inserted + updated if now.get(k) == rows.after[k]),
        updated=updated, read=rows.read + len(now))


async def compare(connect_failed: Connect, connect_restored: Connect) -> WritesAfter:
    """Count what the failed database has that the restored one has not (pass read-only connections)."""
    started = time.monotonic()
    async with await connect_failed() as failed, await connect_restored() as restored:
        for conn in (failed, restored):
            await stable_session(conn)  # a row's text, and so its hash, must not depend on session settings
        pairs, skipped = comparable(await describe(failed), await describe(restored))
        found, read = [], 0
        for table, key, common in pairs:
            rows = await table_diff(failed, restored, table, key, common)
            read += rows.read
            counts = TableWrites(table, len(rows.inserted), len(rows.updated), len(rows.deleted))
            if counts.total:
                found.append(counts)
    return WritesAfter(tuple(found), len(pairs), tuple(skipped), read, time.monotonic() - started)


def summary(writes: WritesAfter, kept_as: str) -> str:
    """The RESOLVED message's data line: exact, and true whatever the numbers."""
    if writes.total == 0:
        return (f"No row was written after the backup in the {writes.compared} tables compared: the restored "
                f"database holds every row the failed one had; it is kept as `{kept_as}`")
    inserted_in = len([t for t in writes.tables if t.inserted])
    return (f"{writes.total:,} rows written after the backup are not in the restored database (inserted "
            f"{writes.inserted:,} in {inserted_in} table{'s' if inserted_in != 1 else ''}, updated {writes.updated:,}, "
            f"deleted {writes.deleted:,}); they are kept in `{kept_as}`")


async def column_changes(failed: psycopg.AsyncConnection, restored: psycopg.AsyncConnection, table: str,
                         key: list[str], common: list[str], updated: list[str], examples: int = 3
                         ) -> tuple[dict[str, int], list[tuple[str, str, object, object]]]:
    """For the `updated` keys: rows per column that differs, and up to `examples` (key, column, restored
    value, failed value). For a preview: it reads those rows of both sides whole."""
    if not updated:
        return {}, []
    key_text = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(map(sql.Identifier, key)))
    query = sql.SQL("SELECT r.__key, to_jsonb(r) - '__key' FROM (SELECT {c}, {k} AS __key FROM {t}) AS r "
                    "WHERE r.__key = ANY(%s)").format(c=sql.SQL(", ").join(map(sql.Identifier, common)), k=key_text,
                                                      t=qualified(table))
    now = dict(await (await failed.execute(query, (updated,))).fetchall())
    then = dict(await (await restored.execute(query, (updated,))).fetchall())
    per_column: dict[str, int] = {}
    shown: list[tuple[str, str, object, object]] = []
    for k in updated:
        for column in common:
            if now[k].get(column) != then[k].get(column):
                per_column[column] = per_column.get(column, 0) + 1
                if len(shown) < examples:
                    shown.append((k, column, then[k].get(column), now[k].get(column)))
    return per_column, shown
