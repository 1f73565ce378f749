"""Restoring a backup into a new database beside the live one: the full rollback's restore aside and
a prepared rollback's copy share it.

The copy is created like live (encoding, collation, template0), then `pg_restore --jobs --exit-on-error
--verbose`, whose lines feed the progress (items of the table of contents done), into a log file.
"""

from __future__ import annotations

from pathlib import Path

from actions.backups.files import BackupFile, read_toc
from actions.config import Environment
from actions.engine.processes import ProcessResult, run_process
from actions.engine.progress import RestoreProgress
from actions.postgres import server as pg


class RestoreFailed(Exception):
    """pg_restore did not finish; the message says how it ended and where its log is."""


async def progress_for(env: Environment, backup: BackupFile) -> RestoreProgress:
    toc = await read_toc(backup)
    return RestoreProgress({entry.dump_id for entry in toc.entries}, env.restore_jobs, backup.size)


async def restore_into(env: Environment, backup: BackupFile, target: str, progress: RestoreProgress,
                       log_path: Path) -> ProcessResult:
    """pg_restore `backup` into the existing, empty database `target`; raises RestoreFailed."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    dbname, secret_env = pg.client_args(env, target)
    result = await run_process(
        ["pg_restore", "--verbose", "--exit-on-error", "--no-password", f"--jobs={env.restore_jobs}",
         f"--dbname={dbname}", str(backup.path)],
        env=secret_env, on_line=progress.feed, log_path=log_path)
    if not result.ok:
        cause = result.cause()
        raise RestoreFailed(f"pg_restore failed ({result.how_it_ended()})"
                            + (f": {cause.removeprefix('pg_restore: ')}" if cause else "") + f" — log: {log_path}")
    progress.finish()
    return result
