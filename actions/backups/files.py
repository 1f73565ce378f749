"""Finding and checking backups in the runbook's layout: `<backup_dir>/<timestamp>/<env>_full_backup.dump`."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import readable
from actions.backups.toc import Toc, parse_toc
from actions.config import Environment
from actions.engine.processes import capture_process, run_process


class BackupProblem(Exception):
    """The backup cannot be used; the message says what was found and what to do."""


@dataclass(frozen=True)
class BackupFile:
    path: Path
    created: datetime  # file modification time, as the runbook's `ls -t` and `stat` use
    size: int

    def describe(self) -> str:
        return f"{self.path.name} in {self.path.parent.name}/ (created {self.created:%Y-%m-%d %H:%M:%S} UTC, {readable.size(self.size)})"


def backup_name(env: Environment) -> str:
    return env.backup_name.format(env=env.name)


def backup_file(path: Path) -> BackupFile:
    """A dump as the bot describes it: its modification time is its creation (the runbook's `ls -t`)."""
    stat = path.stat()
    return BackupFile(path, datetime.fromtimestamp(stat.st_mtime, UTC), stat.st_size)


def all_backups(env: Environment) -> list[BackupFile]:
    """Every `<backup_dir>/*/<name>`, newest first by modification time (the runbook's `ls -t`)."""
    if not env.backup_dir.is_dir():
        return []
    files = [backup_file(path) for path in env.backup_dir.glob(f"*/{backup_name(env)}") if path.is_file()]
    return sorted(files, key=lambda b: (b.created, b.path.as_posix()), reverse=True)


def newest_backup(env: Environment) -> BackupFile:
    """The most recent backup (the runbook's `ls -t | head -1`), or BackupProblem saying why none."""
    if not env.backup_dir.is_dir():
        raise BackupProblem(f"No backup found: the backup folder {env.backup_dir} does not exist. "
                            f"Check `backup_dir` for {env.name} in the config.")
    backups = all_backups(env)
    if not backups:
        raise BackupProblem(f"No backup found: no {env.backup_dir}/*/{backup_name(env)}. Without a backup there is "
                            f"nothing to roll back to; take one (`/rollback backup {env.name}`) or check `backup_dir`.")
    if backups[0].size == 0:
        raise BackupProblem(f"The newest backup {backups[0].path} is empty (0 bytes): it cannot be restored.")
    return backups[0]


def file_identity(path: Path | str) -> list[int]:
    """What changes when a file is replaced or written to: device, inode, size, modification and
    change times. A list, so that it survives a JSON round trip through a run's facts; OSError
    when the file is gone."""
    stat = Path(path).stat()
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def sha256(path: Path | str) -> str:
    """The file's SHA-256, read in 1 MiB chunks (call it in a thread: it reads the whole dump)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def fingerprint(path: Path | str) -> tuple[list[int], str]:
    """(identity, SHA-256) of a dump. The identity is taken first: a file written to while it is
    hashed differs from it afterwards, so the pair never vouches for content it did not hash."""
    identity = await asyncio.to_thread(file_identity, path)
    return identity, await asyncio.to_thread(sha256, path)


def _identity_or_none(path: Path) -> tuple[int, ...] | None:
    try:
        return tuple(file_identity(path))
    except OSError:
        return None


# A run reads its dump's table of contents in preflight, the restore and the verification; each
# `pg_restore --list` re-reads the file's header and TOC (tens of ms, more for big schemas). The
# parsed TOC is kept per file identity, so a file replaced or written to in between is read
# again, never served stale.
_TOC_CACHE: dict[tuple[int, ...], Toc] = {}
_TOC_CACHE_SIZE = 16


async def read_toc(backup: BackupFile | Path) -> Toc:
    """The dump's table of contents; fails clearly when the file is not a readable custom-format dump."""
    backup = backup if isinstance(backup, BackupFile) else BackupFile(backup, datetime.now(UTC), 0)
    identity = await asyncio.to_thread(_identity_or_none, backup.path)
    if identity is not None and identity in _TOC_CACHE:
        return _TOC_CACHE[identity]
    returncode, listing, errors = await capture_process(["pg_restore", "--list", str(backup.path)], timeout=120)
    if returncode != 0:
        raise BackupProblem(f"The backup {backup.path} is not readable by pg_restore: "
                            f"{_error_line(tuple(errors.splitlines()))}. Use another backup.")
    toc = parse_toc(listing)
    if not toc.entries:
        raise BackupProblem(f"The backup {backup.path} has an empty table of contents: nothing to restore.")
    # Kept only if the file did not change while pg_restore read it.
    if identity is not None and identity == await asyncio.to_thread(_identity_or_none, backup.path):
        while len(_TOC_CACHE) >= _TOC_CACHE_SIZE:
            _TOC_CACHE.pop(next(iter(_TOC_CACHE)))
        _TOC_CACHE[identity] = toc
    return toc


async def read_all_data(backup: BackupFile) -> float:
    """Read and decompress the whole dump without a database; return the seconds it took.

    `pg_restore --list` reads only the table of contents and misses truncation and flipped
    bytes; writing the full script to /dev/null reads every data block and finds them.
    """
    result = await run_process(["pg_restore", "--file=/dev/null", str(backup.path)], timeout=None)
    if not result.ok:
        raise BackupProblem(f"The backup {backup.path} is damaged (truncated or corrupt): "
                            f"{_error_line(result.output_tail)}. Use another backup.")
    return result.seconds


def _error_line(lines: tuple[str, ...]) -> str:
    errors = [line for line in lines if "error" in line.lower()]
    return (errors[-1] if errors else (lines[-1] if lines else "no output")).removeprefix("pg_restore: ")
