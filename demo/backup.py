"""Take a pre-migration backup in the runbook's layout.

``<backup_root>/<UTC timestamp>/<env>_full_backup.dump``, e.g.
``_backups/staging/20261124T061500Z/staging_full_backup.dump``, which is what the runbook's
Step 3 (``ls -t _backups/staging/*/staging_full_backup.dump``) and the bot look for.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timezone
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"

# libpq connection keywords pg_dump cannot take as flags, passed as their environment variables
# (https://www.postgresql.org/docs/15/libpq-envars.html). host/port/user/dbname become flags.
_ENV_FOR_KEYWORD = {
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
    "hostaddr": "PGHOSTADDR",
}
_STDERR_TAIL_LINES = 20


class BackupError(RuntimeError):
    """pg_dump failed; carries its exit code and the tail of its stderr."""

    def __init__(self, message: str, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


def backup_path(backup_root: str | Path, env: str, when: datetime) -> Path:
    """Where a backup of ``env`` taken at ``when`` lives (``when`` is converted to UTC)."""
    if when.tzinfo is None:
        raise ValueError("when must be timezone-aware (naive datetimes are ambiguous)")
    stamp = when.astimezone(timezone.utc).strftime(TIMESTAMP_FORMAT)
    return Path(backup_root) / stamp / f"{env}_full_backup.dump"


def pg_command_args(dsn: str) -> tuple[list[str], dict[str, str], str]:
    """Split ``dsn`` into libpq flags, environment additions and the database name.

    The password only ever goes into the environment (PGPASSWORD), never into argv, where any
    local user could read it from the process list.
    """
    params = conninfo_to_dict(dsn)
    dbname = params.pop("dbname", None)
    if not dbname:
        raise ValueError("the DSN names no database (add dbname=... or /<dbname>)")
    args: list[str] = []
    for keyword, flag in (("host", "--host"), ("port", "--port"), ("user", "--username")):
        value = params.pop(keyword, None)
        if value:
            args.append(f"{flag}={value}")
    env: dict[str, str] = {}
    for keyword, value in params.items():
        if keyword not in _ENV_FOR_KEYWORD:
            raise ValueError(
                f"connection parameter {keyword!r} cannot be passed to pg_dump; "
                "use a service file (service=...) for it instead"
            )
        env[_ENV_FOR_KEYWORD[keyword]] = str(value)
    return args, env, str(dbname)


async def take_backup(
    dsn: str,
    backup_root: str | Path,
    env: str,
    *,
    when: datetime | None = None,
    pg_dump: str = "pg_dump",
) -> Path:
    """Dump the database at ``dsn`` with ``pg_dump -Fc`` into the runbook layout; return the path.

    ``when`` (default: now) names the timestamp directory. The dump is written under a
    ``.partial`` name and renamed only once pg_dump succeeded, so a failed or interrupted
    backup never looks like a usable ``*_full_backup.dump``. An existing backup is never
    overwritten. Raises BackupError with pg_dump's stderr tail on failure.
    """
    target = backup_path(backup_root, env, when or datetime.now(timezone.utc))
    partial = target.with_name(target.name + ".partial")
    args, extra_env, dbname = pg_command_args(dsn)
    await asyncio.to_thread(_prepare, target)
    argv = [pg_dump, "--format=custom", f"--file={partial}", *args, "--no-password", "--", dbname]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **extra_env},
        )
    except FileNotFoundError as exc:
        raise BackupError(f"{pg_dump!r} not found: install the PostgreSQL client tools") from exc
    try:
        _, stderr_bytes = await proc.communicate()
    except BaseException:
        # cancelled: do not leave pg_dump running on its own
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await asyncio.to_thread(_discard, partial)
        raise
    stderr = stderr_bytes.decode("utf-8", "replace")
    if proc.returncode != 0:
        await asyncio.to_thread(_discard, partial)
        tail = "\n".join(stderr.strip().splitlines()[-_STDERR_TAIL_LINES:])
        raise BackupError(
            f"pg_dump of database {dbname!r} failed with exit code {proc.returncode}; "
            f"no backup was written to {target}. pg_dump said:\n{tail}",
            returncode=proc.returncode,
            stderr=stderr,
        )
    await asyncio.to_thread(os.replace, partial, target)
    return target


def _prepare(target: Path) -> None:
    if target.exists():
        raise FileExistsError(f"backup {target} already exists; refusing to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)


def _discard(partial: Path) -> None:
    """Remove a failed dump and its timestamp directory, unless something else lives there."""
    partial.unlink(missing_ok=True)
    if not any(partial.parent.iterdir()):
        partial.parent.rmdir()
