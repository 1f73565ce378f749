"""Steps every partial rollback shares: declare, read the backup and the diff, finish.

A partial rollback changes part of the live database (or only the application) in place, inside
the environment's open incident. It does not resolve the incident: when the application is
healthy again, a person presses *Mark resolved*.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from actions.backups.files import BackupFile, BackupProblem, newest_backup, read_toc
from actions.backups.scratch import backup_catalog
from actions.engine.events import ReportWritten
from actions.engine.plan import RunContext, StepFailed, StepOutcome
from actions.incidents.report import write_report
from actions.postgres import server as pg
from actions.postgres.catalog import Catalog, describe
from actions.postgres.schemadiff import SchemaDiff, compare
from actions.store.records import AlertStatus


async def declare(ctx: RunContext) -> StepOutcome:
    await ctx.announce(alert_status=AlertStatus.ROLLING_BACK)
    args = " ".join(ctx.facts.get("args", []))
    return StepOutcome(f"{ctx.incident.id}: {ctx.run.plan} rollback{' ' + args if args else ''} requested by "
                       f"<@{ctx.run.requested_by}> for {ctx.environment.name} ({ctx.environment.target})")


async def locate_backup(ctx: RunContext) -> BackupFile:
    try:
        backup = await asyncio.to_thread(newest_backup, ctx.environment)
        await read_toc(backup)  # readable, or a clear failure before anything else
    except BackupProblem as problem:
        raise StepFailed(str(problem)) from None
    return backup


async def read_diff(ctx: RunContext) -> tuple[BackupFile, Catalog, Catalog, SchemaDiff, str]:
    """The newest backup, its catalog, the live catalog and the difference (read-only)."""
    backup = await locate_backup(ctx)
    backup_cat, source = await backup_catalog(ctx.environment, backup.path)
    async with await pg.connect(ctx.environment) as conn:
        live = await describe(conn)
    await ctx.remember({"backup_path": str(backup.path), "backup_created": backup.created.isoformat(),
                        "backup_size": backup.size, "diff_source": source})
    return backup, backup_cat, live, compare(live, backup_cat), source


async def finish(ctx: RunContext) -> StepOutcome:
    """Write the incident report with this run in it (the incident stays open)."""
    path = await write_report(ctx.settings, ctx.store, ctx.incident.id)
    ctx.emit(ReportWritten(await ctx.store.incident(ctx.incident.id), str(path)))
    return StepOutcome(f"incident report updated: {path.name}; press Mark resolved on the alert once the "
                       "application is healthy", {"report_path": str(path)})


def diff_facts(diff: SchemaDiff) -> dict:
    return {"diff": asdict(diff)}
