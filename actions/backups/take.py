"""Taking a backup in the runbook's layout, with its manifest, from one consistent snapshot.

`<backup_dir>/<UTC timestamp>/<env>_full_backup.dump` (pg_dump -Fc) and a manifest beside it.
The manifest's counts and checksums are read in the very snapshot pg_dump dumps: the exporting
transaction hands its snapshot to pg_dump (`--snapshot`), so the two agree row for row.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from psycopg import IsolationLevel

from actions.backups.files import BackupFile, all_backups, backup_name
from actions.backups.manifest import Manifest, write_manifest
from actions.config import Environment
from actions.engine.processes import run_process
from actions.postgres import server as pg
from actions.postgres.catalog import describe
from actions.store.records import utcnow


class BackupFailed(Exception):
    """pg_dump or the manifest failed; nothing was left behind."""


@dataclass(frozen=True)
class BackupTaken:
    path: Path
    manifest: Path
    size: int
    seconds: float
    tables: int
    rows: int
    beyond_keep: tuple[BackupFile, ...]  # older than the newest `keep_backups`: listed, not deleted
    environment: str = ""


async def take_backup(env: Environment, *, now: datetime | None = None) -> BackupTaken:
    started = time.monotonic()
    moment = now or utcnow()
    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    env.backup_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 100):  # two backups in one second get -2, -3 …: never write into another's folder
        folder = env.backup_dir / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            folder.mkdir()
            break
        except FileExistsError:
            continue
    else:
        raise BackupFailed(f"too many backups in {env.backup_dir} for {stamp}")
    dump = folder / backup_name(env)
    partial = dump.with_name(dump.name + ".partial")
    target, secret_env = pg.client_args(env, env.database)
    try:
        conn = await pg.connect(env)
        async with conn:
            await conn.set_autocommit(False)
            await conn.set_isolation_level(IsolationLevel.REPEATABLE_READ)
            await conn.set_read_only(True)
            async with conn.transaction():
                snapshot = (await (await conn.execute("SELECT pg_export_snapshot()")).fetchone())[0]
                dumping = asyncio.create_task(run_process(
                    ["pg_dump", "--format=custom", f"--snapshot={snapshot}", "--no-password",
                     f"--file={partial}", f"--dbname={target}"], env=secret_env))
                try:
                    catalog = await describe(conn, contents=True)
                finally:
                    result = await dumping  # the snapshot must outlive pg_dump's start: wait inside
        if not result.ok:
            raise BackupFailed(f"pg_dump failed (exit {result.returncode}): {result.last_line()}")
        partial.rename(dump)
        size = dump.stat().st_size
        manifest = write_manifest(dump, Manifest(moment, env.database, dump.name, size, catalog))
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, folder, True)
        raise
    beyond = tuple((await asyncio.to_thread(all_backups, env))[env.keep_backups:])
    return BackupTaken(dump, manifest, size, time.monotonic() - started, len(catalog.tables),
                       catalog.total_rows, beyond, env.name)
