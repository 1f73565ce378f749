"""The read-only and non-destructive verbs: `/rollback diff` and `/rollback backup`."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass

from actions.backups.files import BackupProblem, newest_backup
from actions.backups.scratch import backup_catalog
from actions.backups.take import BackupFailed, BackupTaken, take_backup
from actions.config import Environment
from actions.engine.plan import StepFailed
from actions.postgres import server as pg
from actions.postgres.catalog import describe
from actions.postgres.schemadiff import compare


@dataclass(frozen=True)
class DiffReport:
    environment: str
    database: str
    backup: str  # "folder/file (created …, size)"
    source: str  # manifest, or the restored schema
    diff: dict  # SchemaDiff as a dict


async def schema_diff(env: Environment) -> DiffReport | str:
    """The live schema against the newest backup's, or a problem in words."""
    try:
        backup = await asyncio.to_thread(newest_backup, env)
        backup_cat, source = await backup_catalog(env, backup.path)
        async with await pg.connect(env) as conn:
            live = await describe(conn)
    except (BackupProblem, StepFailed) as problem:
        return str(problem)
    return DiffReport(env.name, env.database, backup.describe(), source, asdict(compare(live, backup_cat)))


async def backup_now(env: Environment) -> BackupTaken | str:
    try:
        return await take_backup(env)
    except BackupFailed as problem:
        return str(problem)
