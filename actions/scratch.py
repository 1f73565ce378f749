"""Scratch databases: the backup restored beside the live database to be read, never swapped in.

The schema diff reads the backup's schema from one; the column and table rollbacks read the
backup's rows from one. A scratch database is always dropped when its work is done.
"""

from __future__ import annotations

import secrets
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

from actions import pg
from actions.catalog import Catalog, describe
from actions.config import Environment
from actions.manifest import load_manifest
from actions.plan import StepFailed
from actions.processes import run_process


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


async def restore(env: Environment, dbname: str, dump: Path, *, schema_only: bool = False,
                  tables: list[str] | None = None) -> None:
    """pg_restore into a scratch database: no owners or grants (only shape and rows matter here);
    `tables` ("schema.table") limits it to those tables' definitions and rows."""
    target, secret_env = pg.client_args(env, dbname)
    argv = ["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", "--no-password", f"--dbname={target}"]
    if schema_only:
        argv.append("--schema-only")
    for name in tables or []:
        schema, _, table = name.partition(".")
        argv += ["--schema", schema, "--table", table]
    result = await run_process([*argv, str(dump)], env=secret_env)
    if not result.ok:
        raise StepFailed(f"could not read the backup {dump.name} into a scratch database: {result.last_line()}")


async def backup_catalog(env: Environment, dump: Path) -> tuple[Catalog, str]:
    """The backup's catalog, from its manifest if it has one, else from a schema-only restore."""
    manifest = load_manifest(dump)
    if manifest is not None:
        return manifest.catalog, "manifest"
    async with scratch_database(env, "schema") as name:
        await restore(env, name, dump, schema_only=True)
        async with await pg.connect(env, name) as conn:
            return await describe(conn), "table of contents (restored schema)"
