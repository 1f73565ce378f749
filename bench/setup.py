"""The bench's databases: one CRM, its backup, the broken state kept as a template, and cleanup.

Every database the bench creates (and every copy the bot makes of one) is named
``rbbench_<random>…``, so ``drop_all`` can find and drop them all without touching other runs'.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import psycopg
from psycopg import sql

from demo.backup import take_backup
from demo.crm import create_crm, database_dsn, drop_database
from demo.migration import apply_phase4_migration

ROWS_PER_SCALE = 10_000  # --scale 30 (the default) is a CRM of about 300,000 rows
ENV = "staging"  # the bot's environment name; the dump is <backup_root>/<stamp>/staging_full_backup.dump


@dataclass
class Workbench:
    """One CRM after the failed migration, and where everything about it lives."""

    admin_dsn: str
    prefix: str  # rbbench_<random>: every database of this run starts with it
    root: Path  # scratch folder: backup, bot state, flag file
    rows: int = 0
    db_bytes: int = 0
    dump: Path | None = None
    dump_bytes: int = 0
    build_seconds: dict[str, float] | None = None

    @property
    def live(self) -> str:
        return self.prefix  # the "crm_staging" of the runbook

    @property
    def template(self) -> str:
        return f"{self.prefix}_tpl"  # the migrated state, copied back before every scenario

    @property
    def clean(self) -> str:
        return f"{self.prefix}_clean"  # the state before the migration: where a prepared rollback starts

    @property
    def backup_root(self) -> Path:
        return self.root / "_backups" / ENV

    def dsn(self, dbname: str | None = None) -> str:
        return database_dsn(self.admin_dsn, dbname or self.live)


def new_workbench(admin_dsn: str, root: Path) -> Workbench:
    return Workbench(admin_dsn, f"rbbench_{uuid4().hex[:10]}", root)


async def build(wb: Workbench, rows: int) -> None:
    """CRM -> pg_dump -Fc backup -> breaking migration -> template copy of the broken state."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    summary = await create_crm(wb.admin_dsn, wb.live, rows=rows)
    seconds["create"] = time.perf_counter() - started
    wb.rows, wb.db_bytes = summary.total_rows, summary.size_bytes
    started = time.perf_counter()
    wb.dump = await take_backup(wb.dsn(), wb.backup_root, ENV)
    wb.dump_bytes = wb.dump.stat().st_size
    seconds["pg_dump"] = time.perf_counter() - started
    await _create_from(wb.admin_dsn, wb.clean, wb.live)
    started = time.perf_counter()
    await apply_phase4_migration(wb.dsn())
    seconds["migrate"] = time.perf_counter() - started
    await _create_from(wb.admin_dsn, wb.template, wb.live)
    wb.build_seconds = seconds


async def reset_live(wb: Workbench, *, migrated: bool = True) -> None:
    """Put the migrated state (or, for a prepared rollback, the state before the migration) back under
    the live name and drop the bot's leftovers of it (``<live>__failed_…``/``__rollback_…``/
    ``__prepared_…``), so every repetition starts from the same place."""
    for name in await database_names(wb.admin_dsn, wb.live):
        if name not in (wb.template, wb.clean):
            await drop(wb.admin_dsn, name)
    await _create_from(wb.admin_dsn, wb.live, wb.template if migrated else wb.clean)
    await settle(wb.admin_dsn)


async def settle(admin_dsn: str) -> None:
    """Write the copy's pages out before a scenario's clock starts. Without it the checkpointer
    flushes hundreds of MB during the next restore, and the scenario that starts its restore
    soonest after the copy (the bot with at_swap) pays for it: 8% at scale 400."""
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as conn:
        try:
            await conn.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            pass  # a role without pg_checkpoint: the figures are only noisier


async def _create_from(admin_dsn: str, target: str, source: str) -> None:
    # a file-level copy: seconds for hundreds of MB, where re-running the migration would take longer
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as conn:
        await conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = %s", (source,))
        await conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(target), sql.Identifier(source)))


async def database_names(admin_dsn: str, prefix: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as conn:
        pattern = prefix.replace("_", r"\_") + "%"
        cur = await conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (pattern,))
        return [row[0] for row in await cur.fetchall()]


async def drop(admin_dsn: str, dbname: str, attempts: int = 12) -> bool:
    """``drop_database``, retried: DROP DATABASE forces a checkpoint, and other test runs on this
    shared server (disk-full fault tests) can make checkpoints fail for a while."""
    for attempt in range(attempts):
        try:
            try:
                return await drop_database(admin_dsn, dbname)
            except psycopg.errors.ObjectNotInPrerequisiteState:
                # a DROP interrupted by such a failure leaves the database "invalid": PostgreSQL then
                # refuses the ALTER that drop_database starts with, and only DROP itself works
                async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as conn:
                    await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(dbname)))
                return True
        except (psycopg.errors.InternalError, psycopg.OperationalError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(min(2.0 * (attempt + 1), 10.0))
    return False


async def drop_all(admin_dsn: str, prefix: str, wait: float = 120.0) -> list[str]:
    """Drop every database of this run, carrying on past one that fails; returns the dropped.
    Waits up to ``wait`` s for the server: other test runs restart it now and then."""
    deadline = time.monotonic() + wait
    while True:
        try:
            names = await database_names(admin_dsn, prefix)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(2)
    dropped, errors = [], []
    for name in names:
        try:
            await drop(admin_dsn, name)
            dropped.append(name)
        except psycopg.Error as exc:
            errors.append(f"{name}: {exc}")
    if errors:
        raise RuntimeError("could not drop: " + "; ".join(errors))
    return dropped


async def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    """Run a command (no shell); returns (exit code, its output tail, seconds)."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        out, _ = await proc.communicate()
    except BaseException:
        if proc.returncode is None:  # cancelled (Ctrl-C): leave no pg_restore behind
            proc.kill()
            await proc.wait()
        raise
    return proc.returncode, out.decode("utf-8", "replace")[-2000:], time.perf_counter() - started


async def machine(admin_dsn: str) -> dict[str, str]:
    """What the figures were measured on."""
    mem_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:")), 0)
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as conn:
        server = (await (await conn.execute("SHOW server_version")).fetchone())[0]
    _, pg_restore, _ = await run("pg_restore", "--version")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    return {"nproc": str(len(os.sched_getaffinity(0))), "cpu": cpu, "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
            "postgresql": server, "pg_restore": pg_restore.strip(), "python": platform.python_version(),
            "os": platform.platform()}
