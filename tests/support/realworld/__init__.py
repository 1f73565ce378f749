"""A real-world-shaped schema the bot was not designed around (`schema.sql`), and the failed migration
that touches every kind of object in it (`migration.sql`): partitions detached and dropped, views on
views, an index on the partitioned table, a dropped trigger, an enum label, a domain constraint, a
policy, a grant, columns of an extension's type and of a non-ASCII domain, rows deleted.

`realworld_database` makes it under a unique name and drops it (and every database named after it)
at the end. The backup is taken by the caller, as a plain `pg_dump -Fc` or with `/rollback backup`,
between `create` and `migrate`.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator
from uuid import uuid4

import psycopg
from psycopg import sql

from demo.crm import database_dsn
from demo.fingerprint import Fingerprint, fingerprint

SCHEMA_SQL = Path(__file__).with_name("schema.sql").read_text(encoding="utf-8")
MIGRATION_SQL = Path(__file__).with_name("migration.sql").read_text(encoding="utf-8")

# What the migration does that the tests check for by name.
VIEWS_ADDED = ("public.film_rating_counts", "public.top_customers", "public.top_customers_by_city")
INDEXES_ADDED = ("public.film_title_trgm", "public.payment_amount_idx", "public.payment_p2022_01_amount_idx")
COLUMNS_DROPPED = {"public.customer": "email", "public.address": "postal_code", "public.film": "description",
                   "public.payment": "note"}
KEYS = {"public.customer": ["customer_id"], "public.address": ["address_id"], "public.film": ["film_id"],
        "public.payment": ["payment_date", "payment_id"]}


@dataclass
class RealWorld:
    """Shaped like the CRM fixture (conftest.Crm), so the same config and harness serve both."""

    dbname: str
    dsn: str
    backup_root: Path
    before: Fingerprint | None = None  # at backup time: what a rollback brings back
    after: Fingerprint | None = None  # after the migration

    async def execute(self, statements: str) -> None:
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await conn.execute(statements.encode())  # several statements: simple query protocol

    async def backed_up(self) -> None:
        self.before = await fingerprint(self.dsn)

    async def migrate(self) -> None:
        await self.execute(MIGRATION_SQL)
        self.after = await fingerprint(self.dsn)


@asynccontextmanager
async def realworld_database(admin_dsn: str, tmp_path: Path) -> AsyncIterator[RealWorld]:
    dbname = f"rbtest_rw_{uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    world = RealWorld(dbname, database_dsn(admin_dsn, dbname), tmp_path / "_backups" / "staging")
    try:
        await world.execute(SCHEMA_SQL)
        yield world
    finally:
        async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as conn:
            names = [r[0] for r in await (await conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (dbname + "%",))).fetchall()]
            for name in names:
                await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


async def rows(dsn: str, table: str, columns: list[str] | None = None) -> tuple[list[str], list[tuple]]:
    """(columns, every row of the table, over those columns, sorted): equal lists are equal tables
    row by row, duplicates included (a table without a primary key has them). A table's own rows,
    or for a partitioned table all of its partitions' rows."""
    schema, name = table.split(".", 1)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        relation = sql.Identifier(schema, name).as_string(conn)
        if columns is None:
            columns = [r[0] for r in await (await conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum", (relation,))).fetchall()]
        partitioned = (await (await conn.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = %s::regclass",
                                                 (relation,))).fetchone())[0]
        cursor = await conn.execute(sql.SQL("SELECT {} FROM {}{}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL("" if partitioned else "ONLY "),
            sql.Identifier(schema, name)))
        return columns, sorted(await cursor.fetchall(), key=repr)


def changed_entries(a: Fingerprint, b: Fingerprint) -> set[str]:
    """Every entry (table, column list, view, index, constraint, sequence, object) that differs
    between two fingerprints, as "kind name". The rows a table rollback keeps (its
    `rollback_replaced_*` schema, the way back) are left out: the tests check them on their own."""
    def entries(fp: Fingerprint) -> dict[str, object]:
        out: dict[str, object] = {f"table {t.name}": (t.rows, t.content_hash) for t in fp.tables}
        out |= {f"columns {t.name}": t.columns for t in fp.tables}
        out |= {f"view {n}": d for n, d in fp.views} | {f"index {n}": d for n, d in fp.indexes}
        out |= {f"constraint {n}": d for n, d in fp.constraints} | {f"sequence {n}": (d, v) for n, d, v in fp.sequences}
        out |= dict(fp.objects)
        return out

    ea, eb = entries(a), entries(b)
    return {key for key in ea.keys() | eb.keys() if ea.get(key) != eb.get(key) and " rollback_replaced_" not in key}
