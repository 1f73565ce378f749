"""Create and drop the demo CRM database (the runbook's crm_staging, at any size)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from demo.crm_data import LOAD_STATEMENTS, load_params
from demo.crm_schema import POST_LOAD_DDL, TABLE_NAMES, TABLES_DDL

# Databases drop_database refuses to touch whatever it is asked.
_PROTECTED = frozenset({"postgres", "template0", "template1"})


@dataclass(frozen=True)
class CrmSummary:
    """What create_crm built."""

    dbname: str
    dsn: str = field(repr=False)  # may carry the admin password: never in a repr or a log
    tables: dict[str, int] = field(default_factory=dict)  # table -> row count, load order
    total_rows: int = 0
    size_bytes: int = 0
    seconds: float = 0.0


def database_dsn(admin_dsn: str, dbname: str) -> str:
    """The admin DSN with its database replaced by ``dbname`` (same host, port, user, password)."""
    return make_conninfo(admin_dsn, dbname=dbname)


async def create_crm(
    admin_dsn: str, dbname: str, rows: int = 20_000, *, analyze: bool = True
) -> CrmSummary:
    """Create database ``dbname`` and fill it with a deterministic CRM of about ``rows`` rows.

    ``admin_dsn`` points at a maintenance database (usually ``postgres``) with the right to
    CREATE DATABASE. The database must not exist yet. The whole load is one transaction of
    server-side ``INSERT ... SELECT FROM generate_series``; if anything fails, the half-built
    database is dropped again and the error propagates. ``analyze=False`` skips the final
    ANALYZE (1-1.5 s of about 4.5 s at 300k rows) and leaves statistics to autovacuum.
    """
    started = time.perf_counter()
    params = load_params(rows)  # validates rows before anything is created
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as admin:
        # CREATE DATABASE cannot run inside a transaction block, hence autocommit
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    dsn = database_dsn(admin_dsn, dbname)
    try:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            await _load(conn, params, analyze)
            summary = await _summarise(conn, dbname, dsn, started)
    except BaseException as exc:
        # only ours to drop because the CREATE above succeeded
        try:
            await drop_database(admin_dsn, dbname)
        except Exception as cleanup:
            exc.add_note(f"the half-built database {dbname!r} could not be dropped: {cleanup}")
        raise
    return summary


async def _load(conn: psycopg.AsyncConnection, params: dict[str, object], analyze: bool) -> None:
    async with conn.transaction():
        # a demo load loses nothing if the server crashes before the WAL flush
        await conn.execute("SET LOCAL synchronous_commit = off")
        # JIT compilation cost ~0.5 s per big INSERT ... SELECT, more than it saved; the
        # larger work_mem keeps the load's sorts and hashes in memory
        await conn.execute("SET LOCAL jit = off")
        await conn.execute("SET LOCAL work_mem = '64MB'")
        await conn.execute(TABLES_DDL)
        for statement in LOAD_STATEMENTS:
            await conn.execute(statement, params)
        await _reset_sequences(conn, params)
        await conn.execute(POST_LOAD_DDL)
    if analyze:
        # fresh statistics so the migration and the benchmark get the plans a live database would
        await conn.execute("ANALYZE")
        await conn.commit()


async def _reset_sequences(conn: psycopg.AsyncConnection, params: dict[str, object]) -> None:
    """Point every id sequence past the explicitly inserted ids, as a real app's would be."""
    for table in TABLE_NAMES:
        await conn.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence({name}, 'id'), max(id)) FROM {table}"
            ).format(name=sql.Literal(table), table=sql.Identifier(table))
        )
    # contract numbers are 'CT-' || (999 + i); the sequence starts at 1000
    await conn.execute(
        "SELECT setval('contract_number_seq', 999 + %(n)s::bigint)", {"n": params["n_contracts"]}
    )


async def _summarise(
    conn: psycopg.AsyncConnection, dbname: str, dsn: str, started: float
) -> CrmSummary:
    counts: dict[str, int] = {}
    for table in TABLE_NAMES:
        cur = await conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        )
        counts[table] = (await cur.fetchone())[0]
    cur = await conn.execute("SELECT pg_database_size(current_database())")
    size = (await cur.fetchone())[0]
    await conn.commit()
    return CrmSummary(
        dbname=dbname,
        dsn=dsn,
        tables=counts,
        total_rows=sum(counts.values()),
        size_bytes=size,
        seconds=time.perf_counter() - started,
    )


async def drop_database(admin_dsn: str, dbname: str) -> bool:
    """Terminate every session on ``dbname`` and drop it if it exists; True if it was dropped.

    Refuses the maintenance and template databases and the one ``admin_dsn`` itself uses.
    """
    admin_db = conninfo_to_dict(admin_dsn).get("dbname")
    if dbname in _PROTECTED or dbname == admin_db:
        raise ValueError(f"refusing to drop database {dbname!r}: it is a maintenance database")
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as admin:
        cur = await admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
        if await cur.fetchone() is None:
            return False
        # stop new logins first so a reconnecting client cannot slip in between the
        # terminate and the drop (see DESIGN, "PostgreSQL facts")
        await admin.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
                sql.Identifier(dbname)
            )
        )
        await admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        )
        # FORCE also waits out backends still exiting after the terminate; IF EXISTS covers
        # a concurrent drop
        await admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )
    return True
