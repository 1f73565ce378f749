"""Diagnose checks on the server: connectivity (Contingency 2, "Connection Lost") and disk space
with the newest backup (Contingency 3, "Out of Disk Space")."""

from __future__ import annotations

import asyncio
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

import readable
from actions.backups.files import BackupFile, all_backups
from actions.diagnose.base import Check, CheckOutcome, Context, check_connection, error_line, worst_of
from actions.diagnose.base import age as human_age
from actions.diagnose.model import Finding, Status

CONTINGENCY_2 = ("Contingency 2 — Connection Lost: check the server and whether the migration's backend still runs "
                 "(pg_stat_activity); if the database does not answer, do a full rollback.")
CONTINGENCY_3 = "Contingency 3 — Out of Disk Space"

CONNECTIONS_WARN, CONNECTIONS_FAIL = 0.80, 0.95
BACKUP_MAX_AGE_SECONDS = 24 * 3600
LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}

SERVER_SQL = """
SELECT current_setting('server_version'), current_setting('max_connections')::int,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'
                                              AND application_name IS DISTINCT FROM %(tag)s),
       (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'
                                              AND state <> 'idle' AND application_name IS DISTINCT FROM %(tag)s),
       pg_is_in_recovery()"""


def connections_status(used: int, limit: int) -> Status:
    """FAIL at 95% of max_connections, WARN at 80%."""
    share = used / limit if limit > 0 else 1.0
    return Status.FAIL if share >= CONNECTIONS_FAIL else Status.WARN if share >= CONNECTIONS_WARN else Status.OK


async def connectivity(ctx: Context) -> CheckOutcome:
    started = time.monotonic()
    try:
        conn = await check_connection(ctx.env, ctx.tag, ctx.deadline)
    except psycopg.OperationalError as exc:
        return await _unreachable(ctx, exc)
    connect_ms = (time.monotonic() - started) * 1000
    async with conn:
        started = time.monotonic()
        await conn.execute("SELECT 1")
        round_trip_ms = (time.monotonic() - started) * 1000
        cursor = await conn.execute(SERVER_SQL, {"tag": ctx.tag})
        version, limit, used, busy, standby = await cursor.fetchone()
    status = connections_status(used, limit)
    findings = [Finding(f"{used} of max_connections {limit} in use ({used / limit:.0%}; "
                        f"this diagnosis's own connections not counted)")]
    if status != Status.OK:
        findings.append(Finding(f"Connections at {used / limit:.0%} (warn at {CONNECTIONS_WARN:.0%}, fail at "
                                f"{CONNECTIONS_FAIL:.0%}): new application connections may be refused"))
    if standby:
        status = worst_of(status, Status.WARN)
        findings.append(Finding("The server is in recovery (a standby): it accepts no writes"))
    findings.append(Finding(f"{readable.count(busy, 'other session')} busy in {ctx.env.database} "
                            "(a migration still running shows here)"))
    summary = (f"Connected in {connect_ms:.0f} ms, round trip {round_trip_ms:.1f} ms · PostgreSQL {version} · "
               f"{used} of {limit} connections ({used / limit:.0%})")
    return CheckOutcome(status, summary, tuple(findings))


async def _unreachable(ctx: Context, exc: psycopg.OperationalError) -> CheckOutcome:
    """The database refuses us: does the server answer at all (on the maintenance database)?"""
    findings = [Finding(f"Connecting to {ctx.env.target} failed: {error_line(exc)}")]
    if ctx.env.maintenance_db != ctx.env.database and ctx.remaining() > 1:
        try:
            async with await check_connection(ctx.env, ctx.tag, ctx.deadline, ctx.env.maintenance_db):
                pass
            findings.append(Finding(f"The server answers on the maintenance database {ctx.env.maintenance_db}: "
                                    f"{ctx.env.database} itself refuses connections (missing, renamed, or closed?)"))
        except psycopg.OperationalError as other:
            findings.append(Finding(f"The server does not answer on {ctx.env.maintenance_db} either: "
                                    f"{error_line(other)}"))
    return CheckOutcome(Status.FAIL, f"Cannot connect to {ctx.env.target}: {error_line(exc)}", tuple(findings))


def space_status(free: int, database_size: int) -> Status:
    """The runbook wants twice the database size free: WARN below 2×, FAIL below 1× (no room to restore aside)."""
    if free < database_size:
        return Status.FAIL
    return Status.WARN if free < 2 * database_size else Status.OK


def backup_status(newest: BackupFile | None, now: datetime) -> tuple[Status, str]:
    """WARN without a usable backup or when the newest is older than a day."""
    if newest is None:
        return Status.WARN, "No backup found"
    text = f"Newest backup {newest.path.parent.name}/{newest.path.name}: {human_age((now - newest.created).total_seconds())} old, {readable.size(newest.size)}"
    if newest.size == 0:
        return Status.WARN, text + " (empty: it cannot be restored)"
    if (now - newest.created).total_seconds() > BACKUP_MAX_AGE_SECONDS:
        return Status.WARN, text + " (older than a day)"
    return Status.OK, text


def existing_folder(path: Path) -> Path:
    """`path` or its nearest existing parent: where a new file in `path` would take its space."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path("/")


def _space(path: Path) -> tuple[Path, Any, int]:
    folder = existing_folder(path)
    return folder, shutil.disk_usage(folder), folder.stat().st_dev


def _space_line(label: str, folder: Path, usage, size: int, status: Status) -> str:
    verdict = {Status.OK: "enough", Status.WARN: "less than the runbook's 2×",
               Status.FAIL: "less than the database itself: a full rollback cannot restore aside"}[status]
    return (f"{label} {folder}: {readable.size(usage.free)} free of {readable.size(usage.total)} "
            f"(need 2 × {readable.size(size)} = {readable.size(2 * size)}; {verdict})")


async def disk(ctx: Context) -> CheckOutcome:
    size = (await (await ctx.db.execute("SELECT pg_database_size(current_database())")).fetchone())[0]
    data_dir = await _data_directory(ctx)
    folder, usage, device = await asyncio.to_thread(_space, ctx.env.backup_dir)
    worst = space_status(usage.free, size)
    findings = [Finding(_space_line("Backup folder", folder, usage, size, worst))]
    summary = f"{readable.size(usage.free)} free for backups, database {readable.size(size)}"
    if data_dir is not None:
        try:
            data_folder, data_usage, data_device = await asyncio.to_thread(_space, Path(data_dir))
        except OSError:
            data_usage = None
        if data_usage is not None and data_folder == Path(data_dir):
            data_state = space_status(data_usage.free, size)
            worst = worst_of(worst, data_state)
            same = " (same filesystem as the backups)" if data_device == device else ""
            findings.append(Finding(_space_line("Data directory", data_folder, data_usage, size, data_state) + same))
            summary += f", {readable.size(data_usage.free)} free in the data directory"
    backups = await asyncio.to_thread(all_backups, ctx.env)
    backup_state, backup_text = backup_status(backups[0] if backups else None, datetime.now(UTC))
    findings.append(Finding(backup_text + (f" ({readable.count(len(backups), 'backup')} in {ctx.env.backup_dir})" if backups
                                           else f" in {ctx.env.backup_dir}")))
    summary += "; " + backup_text[0].lower() + backup_text[1:]
    advice = []
    if worst == Status.FAIL:
        advice.append("free space or add storage before a full rollback (it needs the database's size again)")
    elif worst == Status.WARN:
        advice.append("free space: the runbook wants twice the database size free")
    if backup_state != Status.OK:
        advice.append(f"take a fresh backup (/rollback backup {ctx.env.name})")
    status = worst_of(worst, backup_state)
    hint = f"{CONTINGENCY_3}: {'; '.join(advice)}." if advice else None
    return CheckOutcome(status, summary, tuple(findings), hint)


async def _data_directory(ctx: Context) -> str | None:
    """The server's data directory when the server runs on this host and this role may read the setting."""
    host = ctx.db.info.host or ""
    if not (host in LOCAL_HOSTS or host.startswith("/")):
        return None
    try:
        cursor = await ctx.db.execute("SELECT current_setting('data_directory')")
    except psycopg.errors.InsufficientPrivilege:
        return None
    return (await cursor.fetchone())[0]


CHECKS = (
    Check("connectivity", "Connectivity", CONTINGENCY_2, connectivity, own_connection=True),
    Check("disk", "Disk space and backups", CONTINGENCY_3 + ": free space or add storage; the runbook wants "
          "twice the database size free.", disk),
)
