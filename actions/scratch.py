"""Scratch databases: the backup restored beside the live database to be read, never swapped in.

The schema diff reads the backup's schema from one; the column and table rollbacks read the
backup's rows from one. A scratch database is always dropped when its work is done.
"""

from __future__ import annotations

import secrets
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from actions import pg
from actions.catalog import Catalog, describe
from actions.config import Environment
from actions.manifest import load_manifest
from actions.plan import StepFailed
from actions.processes import run_process
from actions.toc import Toc

_RESTORE = ["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", "--no-password"]


@asynccontextmanager
async def scratch_database(env: Environment, purpose: str) -> AsyncIterator[str]:
    """A new empty database named after the live one and `purpose`; dropped on the way out."""
    name = f"{env.database}__scratch_{purpose}_{secrets.token_hex(3)}"[: pg.MAX_IDENTIFIER_BYTES]
    async with await pg.admin(env) as conn:
        await pg.create_database_like(conn, env.database, name)
    try:
        yield name
    finally:
        async with await pg.admin(env) as conn:
            await pg.drop_database(conn, name)


async def restore(env: Environment, dbname: str, dump: Path, *, schema_only: bool = False) -> None:
    """pg_restore a whole backup into a scratch database, without owners or grants (only shape and
    rows matter here)."""
    target, secret_env = pg.client_args(env, dbname)
    argv = [*_RESTORE, f"--dbname={target}", *(["--schema-only"] if schema_only else []), str(dump)]
    result = await run_process(argv, env=secret_env)
    if not result.ok:
        raise StepFailed(f"could not read the backup {dump.name} into a scratch database: {result.last_line()}")


async def restore_rows(env: Environment, dbname: str, dump: Path, toc: Toc, tables: list[str]) -> None:
    """The backup's definitions (pre-data: tables, sequences, types, functions — no keys, indexes or
    foreign keys) and the rows of `tables` ("schema.table") only, into a scratch database.

    `pg_restore -t` alone fails on a table whose default uses a sequence it does not restore (a
    `nextval('…_seq')` default of a plain sequence), and matches a name in every `-n` schema; the
    rows are chosen by dump id instead.
    """
    data = {f"{e.schema}.{e.tag}": e.dump_id for e in toc.of("TABLE DATA")}
    target, secret_env = pg.client_args(env, dbname)
    base = [*_RESTORE, "--no-tablespaces", f"--dbname={target}"]
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
    """The backup's catalog, from its manifest if it has one, else from a schema-only restore."""
    manifest = load_manifest(dump)
    if manifest is not None:
        return manifest.catalog, "manifest"
    async with scratch_database(env, "schema") as name:
        await restore(env, name, dump, schema_only=True)
        async with await pg.connect(env, name) as conn:
            return await describe(conn), "table of contents (restored schema)"
