"""Scratch databases: the backup restored beside the live database to be read, never swapped in.

The schema diff reads the backup's schema from one; the column and table rollbacks read the
backup's rows from one. A scratch database is always dropped when its work is done.

When a prepared rollback's copy holds the same backup and is proven unchanged, the scratch database
is a file copy of it (`CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY`) instead of a restore: the copy
is only read, never opened to connections, and its proof stands (`actions/prepared/proof.py`).
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from psycopg import sql

from actions.backups.manifest import load_manifest
from actions.backups.toc import Toc
from actions.config import Environment
from actions.engine.plan import StepFailed
from actions.engine.processes import run_process
from actions.postgres import server as pg
from actions.postgres.catalog import FORMAT as CATALOG_FORMAT
from actions.postgres.catalog import Catalog, describe

_RESTORE = ["pg_restore", "--no-owner", "--exit-on-error", "--no-password"]
IN_USE: set[str] = set()  # the scratch databases this process is reading now: `/rollback cleanup` leaves them
_ROWS_ONLY = [*_RESTORE, "--no-acl"]


@asynccontextmanager
async def scratch_database(env: Environment, purpose: str, *, copy_of: str | None = None) -> AsyncIterator[str]:
    """A new database named after the live one and `purpose`: empty, or a file copy of `copy_of` (a
    prepared copy, which is only read); dropped on the way out."""
    name = f"{env.database}__scratch_{purpose}_{secrets.token_hex(3)}"[: pg.MAX_IDENTIFIER_BYTES]
    IN_USE.add(name)  # before it exists: a clean-up running meanwhile must never take it for a leftover
    try:
        async with await pg.admin(env) as conn:
            if copy_of is None:
                await pg.create_database_like(conn, env.database, name)
            else:
                await conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                    sql.Identifier(name), sql.Identifier(copy_of)))
        try:
            yield name
        finally:
            async with await pg.admin(env) as conn:
                await pg.drop_database(conn, name)
    finally:
        IN_USE.discard(name)


async def restore_schema(env: Environment, dbname: str, dump: Path) -> bool:
    """The backup's schema into a scratch database, without owners, with grants if it can: returns
    False when its grants could not be restored (a role it names does not exist on this server),
    and the schema was restored without them."""
    target, secret_env = pg.client_args(env, dbname)
    result = await run_process([*_RESTORE, f"--dbname={target}", "--schema-only", str(dump)], env=secret_env)
    if result.ok:
        return True
    if "role" not in result.last_line() or "does not exist" not in result.last_line():
        raise StepFailed(f"could not read the backup {dump.name} into a scratch database: {result.last_line()}")
    async with await pg.admin(env) as conn:  # start again from an empty database, without grants
        await pg.drop_database(conn, dbname)
        await pg.create_database_like(conn, env.database, dbname)
    result = await run_process([*_ROWS_ONLY, f"--dbname={target}", "--schema-only", str(dump)], env=secret_env)
    if not result.ok:
        raise StepFailed(f"could not read the backup {dump.name} into a scratch database: {result.last_line()}")
    return False


async def restore_rows(env: Environment, dbname: str, dump: Path, toc: Toc, tables: list[str]) -> None:
    """The backup's definitions (pre-data: tables, sequences, types, functions — no keys, indexes or
    foreign keys) and the rows of `tables` ("schema.table") only, into a scratch database.

    `pg_restore -t` alone fails on a table whose default uses a sequence it does not restore (a
    `nextval('…_seq')` default of a plain sequence), and matches a name in every `-n` schema; the
    rows are chosen by dump id instead.
    """
    data = {f"{e.schema}.{e.tag}": e.dump_id for e in toc.of("TABLE DATA")}
    target, secret_env = pg.client_args(env, dbname)
    base = [*_ROWS_ONLY, "--no-tablespaces", f"--dbname={target}"]
    with tempfile.TemporaryDirectory(prefix="rollback-rows-") as folder:
        listing = Path(folder) / "rows.list"
        listing.write_text("".join(f"{data[t]};\n" for t in tables if t in data), encoding="utf-8")
        for argv, what in (([*base, "--section=pre-data", "--no-publications", "--no-subscriptions"], "definitions"),
                           ([*base, f"--use-list={listing}"], "rows")):
            result = await run_process([*argv, str(dump)], env=secret_env)
            if not result.ok:
                raise StepFailed(f"could not restore the backup's {what} into a scratch database: "
                                 f"{result.last_line().removeprefix('pg_restore: ')}")


async def backup_catalog(env: Environment, dump: Path) -> tuple[Catalog, str]:
    """The backup's catalog, from its manifest if it has one of the current format, else from a
    schema-only restore (exact, where parsing the table of contents could not be)."""
    manifest = await asyncio.to_thread(load_manifest, dump)
    if manifest is not None and manifest.catalog.format >= CATALOG_FORMAT:
        return manifest.catalog, "manifest"
    async with scratch_database(env, "schema") as name:
        with_grants = await restore_schema(env, name, dump)
        async with await pg.connect(env, name) as conn:
            catalog = await describe(conn)
    if not with_grants:
        catalog.grants = None
    return catalog, "table of contents (restored schema)"
