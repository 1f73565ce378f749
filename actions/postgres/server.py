"""Server-level PostgreSQL operations: connect, inspect, create aside, copy properties, swap.

All identifiers go through `psycopg.sql`; all calls are async. Database-level DDL runs on a
connection to the maintenance database (`postgres` by default), never on the database it changes.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from actions.config import Environment

MAX_IDENTIFIER_BYTES = 63
DATABASE_PRIVILEGES = {"CONNECT", "CREATE", "TEMPORARY"}
# GUCs whose stored value is a list: they must be re-issued as a list, not as one quoted string.
LIST_SETTINGS = {"search_path", "temp_tablespaces", "session_preload_libraries", "local_preload_libraries"}


def conninfo(env: Environment, dbname: str | None = None) -> str:
    """The environment's DSN, pointed at `dbname` (default: the live database)."""
    return make_conninfo(env.resolved_dsn.get_secret_value(), **({"dbname": dbname} if dbname else {}))


def client_args(env: Environment, dbname: str) -> tuple[str, dict[str, str]]:
    """A conninfo for command-line tools without the password, and the environment carrying it.

    A password on a command line is visible to every user of the machine in `ps`.
    """
    params = conninfo_to_dict(conninfo(env, dbname))
    password = params.pop("password", None)
    return make_conninfo(**params), ({"PGPASSWORD": password} if password else {})


async def connect(env: Environment, dbname: str | None = None, *, timeout: int = 10, name: str | None = None,
                  read_only: bool = False, statement_timeout_ms: int | None = None,
                  lock_timeout_ms: int | None = None) -> psycopg.AsyncConnection:
    """The one way the bot connects (autocommit): to the live database or `dbname`, giving up after
    `timeout` seconds; with `name` as its application_name (watchers recognise their own sessions by
    it), read-only, and its statements and lock waits limited, when asked."""
    settings = [f"-c {key}={value}" for key, value in (
        ("default_transaction_read_only", "on" if read_only else None),
        ("statement_timeout", statement_timeout_ms), ("lock_timeout", lock_timeout_ms)) if value is not None]
    extra = {"application_name": name} if name else {}
    if settings:
        extra["options"] = " ".join(settings)
    return await psycopg.AsyncConnection.connect(conninfo(env, dbname), autocommit=True, connect_timeout=timeout,
                                                 **extra)


async def admin(env: Environment) -> psycopg.AsyncConnection:
    """A connection to the maintenance database, for CREATE/ALTER/DROP DATABASE."""
    return await connect(env, env.maintenance_db)


async def scalar(conn: psycopg.AsyncConnection, query: sql.Composable | str, params: Any = None) -> Any:
    cursor = await conn.execute(query, params)
    row = await cursor.fetchone()
    return None if row is None else row[0]


async def database_exists(conn: psycopg.AsyncConnection, name: str) -> bool:
    return bool(await scalar(conn, "SELECT 1 FROM pg_database WHERE datname = %s", (name,)))


async def may_swap(conn: psycopg.AsyncConnection, live: str) -> bool:
    """Can the connected role create the copy (owned like `live`) and rename both databases?"""
    return bool(await scalar(conn, """
        SELECT r.rolsuper OR (r.rolcreatedb AND pg_has_role(current_user, d.datdba, 'MEMBER'))
          FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = %s""", (live,)))


async def create_database_like(conn: psycopg.AsyncConnection, live: str, name: str) -> None:
    """Create an empty database with the live one's encoding, locale, owner and tablespace."""
    cursor = await conn.execute(
        """SELECT pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, d.datlocprovider,
                  d.daticulocale, pg_get_userbyid(d.datdba), t.spcname
             FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = %s""",
        (live,))
    encoding, collate, ctype, provider, icu_locale, owner, tablespace = await cursor.fetchone()
    parts = [sql.SQL("CREATE DATABASE {} WITH TEMPLATE template0 OWNER {} ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
        sql.Identifier(name), sql.Identifier(owner), sql.Literal(encoding), sql.Literal(collate), sql.Literal(ctype))]
    if provider == "i":
        parts.append(sql.SQL("LOCALE_PROVIDER icu ICU_LOCALE {}").format(sql.Literal(icu_locale)))
    if tablespace != "pg_default":
        parts.append(sql.SQL("TABLESPACE {}").format(sql.Identifier(tablespace)))
    await conn.execute(sql.SQL(" ").join(parts))


async def copy_database_properties(conn: psycopg.AsyncConnection, source: str, target: str) -> list[str]:
    """Give `target` the grants, settings, connection limit and comment of `source`.

    pg_dump without --create carries none of these, and an app whose role relies on a database
    grant or a per-database search_path would fail against the restored copy.
    """
    done: list[str] = []
    cursor = await conn.execute(
        "SELECT oid, datacl IS NULL, datconnlimit, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        (source,))
    oid, default_acl, connlimit, comment = await cursor.fetchone()
    target_id = sql.Identifier(target)
    if not default_acl:
        await conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(target_id))
        cursor = await conn.execute(
            """SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
                      a.privilege_type, a.is_grantable
                 FROM pg_database d, aclexplode(d.datacl) a WHERE d.oid = %s""", (oid,))
        grants = await cursor.fetchall()
        for grantee, privilege, grantable in grants:
            if privilege not in DATABASE_PRIVILEGES:
                raise ValueError(f"unexpected database privilege {privilege!r} on {source}")
            await conn.execute(sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                sql.SQL(privilege), target_id,
                sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee),
                sql.SQL(" WITH GRANT OPTION") if grantable else sql.SQL("")))
        done.append(f"{len(grants)} grant(s)")
    cursor = await conn.execute(
        "SELECT CASE WHEN setrole = 0 THEN NULL ELSE pg_get_userbyid(setrole) END, setconfig "
        "FROM pg_db_role_setting WHERE setdatabase = %s", (oid,))
    settings = 0
    for role, config in await cursor.fetchall():
        for item in config:
            name, _, value = item.partition("=")
            prefix = (sql.SQL("ALTER DATABASE {}").format(target_id) if role is None else
                      sql.SQL("ALTER ROLE {} IN DATABASE {}").format(sql.Identifier(role), target_id))
            await conn.execute(sql.SQL("{} SET {} TO {}").format(prefix, sql.Identifier(name), _setting_value(name, value)))
            settings += 1
    if settings:
        done.append(f"{settings} setting(s)")
    if connlimit != -1:
        await conn.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(target_id, sql.Literal(connlimit)))
        done.append(f"connection limit {connlimit}")
    if comment:
        await conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(target_id, sql.Literal(comment)))
        done.append("comment")
    return done


def _setting_value(name: str, value: str) -> sql.Composable:
    if name.lower() not in LIST_SETTINGS:
        return sql.Literal(value)
    items = [item.strip().strip('"') for item in value.split(",") if item.strip()]
    return sql.SQL(", ").join(sql.Literal(item) for item in items)


async def free_space(conn: psycopg.AsyncConnection, live: str) -> tuple[int, str] | None:
    """(bytes free, folder) where a copy of `live` would be written — its tablespace, which the copy
    inherits, else the data directory — when this host can see it (a local server); else None."""
    try:
        folder = await scalar(
            conn, "SELECT coalesce(nullif(pg_tablespace_location(d.dattablespace), ''), "
                  "current_setting('data_directory')) FROM pg_database d WHERE d.datname = %s", (live,))
    except psycopg.Error:
        return None  # the role may not read data_directory
    if not folder or not Path(folder).exists():
        return None
    return (await asyncio.to_thread(shutil.disk_usage, folder)).free, folder


async def drop_database(conn: psycopg.AsyncConnection, name: str) -> None:
    """Drop a database this bot created (an aside copy). Never called on a user's database."""
    await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


async def database_identities(conn: psycopg.AsyncConnection, names: list[str]) -> dict[str, dict]:
    """name -> its oid and whether it allows connections, for the names that exist (JSON-ready)."""
    cursor = await conn.execute("SELECT datname, oid::bigint, datallowconn FROM pg_database WHERE datname = ANY(%s)",
                                (names,))
    return {name: {"oid": oid, "allow_connections": allowed} for name, oid, allowed in await cursor.fetchall()}


@dataclass(frozen=True)
class SwapResult:
    sessions_terminated: int
    window_seconds: float  # from closing the live database to the renames committed


async def swap_databases(conn: psycopg.AsyncConnection, *, live: str, restored: str, keep_as: str,
                         terminate_timeout_ms: int = 5000, attempts: int = 5) -> SwapResult:
    """Put `restored` under the live name and keep the live database as `keep_as`.

    Both renames commit in one transaction: after any failure or crash the live name holds
    either the failed database or the fully restored one, never something in between. New
    connections are refused first (a reconnecting client would make the rename fail); if the
    swap fails, connections to the live database are allowed again.
    """
    live_id, restored_id, kept_id = (sql.Identifier(n) for n in (live, restored, keep_as))
    allowed = await scalar(conn, "SELECT datallowconn FROM pg_database WHERE datname = %s", (live,))
    started = time.monotonic()
    await conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(live_id))
    terminated = 0
    try:
        for attempt in range(attempts):
            terminated += await _terminate_sessions(conn, (live, restored), terminate_timeout_ms)
            try:
                async with conn.transaction():
                    await conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(live_id, kept_id))
                    await conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(restored_id, live_id))
                    # The new live takes the old one's setting (a prepared copy was kept closed until now).
                    await conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                        live_id, sql.Literal(bool(allowed))))
                    # The kept copy stays reachable for forensics under its new name.
                    await conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                        kept_id, sql.Literal(bool(allowed))))
                break
            except psycopg.errors.ObjectInUse:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.2)
    except BaseException:
        await conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(live_id, sql.Literal(bool(allowed))))
        raise
    return SwapResult(terminated, time.monotonic() - started)


async def _terminate_sessions(conn: psycopg.AsyncConnection, databases: tuple[str, ...], timeout_ms: int) -> int:
    cursor = await conn.execute(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, %s)) FROM pg_stat_activity "
        "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()", (timeout_ms, list(databases)))
    return (await cursor.fetchone())[0]
