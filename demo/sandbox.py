"""`rollback-bot demo`: a broken CRM on the local PostgreSQL, its backup, a stand-in app, a config.

Everything the demo creates is named here and removed by `clean_demo`: the database (and the
`__rollback_`/`__failed_` copies a rollback makes of it), and the demo's folder (config, backups,
audit database, reports, the stand-in app's files).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

import readable
from demo.backup import take_backup
from demo.crm import create_crm, database_dsn, drop_database
from demo.migration import apply_phase4_migration

CONFIG = "rollback-bot.toml"
USERS = {"U0OPS1": "olivia (operator)", "U0DBA1": "alice (approver)", "U0DBA2": "bob (approver)"}


@dataclass(frozen=True)
class DemoSpec:
    state: Path  # the demo's folder
    admin_dsn: str  # a superuser connection to the maintenance database
    dbname: str = "rollback_demo"
    rows: int = 300_000
    app_port: int | None = None  # the stand-in app's port; default: a free one

    @property
    def config(self) -> Path:
        return self.state / CONFIG


@dataclass(frozen=True)
class DemoSummary:
    lines: tuple[str, ...]
    reused: bool


async def database_exists(admin_dsn: str, dbname: str) -> bool:
    async with await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True) as conn:
        return bool(await (await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))).fetchone())


async def create_demo(spec: DemoSpec) -> DemoSummary:
    """Set the demo up, or reuse the one already there; start its stand-in app either way."""
    state = spec.state.resolve()
    if spec.config.exists() and await database_exists(spec.admin_dsn, spec.dbname):
        await _standin("start", state)
        return DemoSummary((f"reusing the demo in {state} (database {spec.dbname})",
                            "start afresh with: rollback-bot demo --clean, then rollback-bot demo"), reused=True)
    if await database_exists(spec.admin_dsn, spec.dbname):
        raise RuntimeError(f"a database {spec.dbname} exists but is not this demo's (no {spec.config}); "
                           "drop it or pass another --db")
    started = time.monotonic()
    state.mkdir(parents=True, exist_ok=True)
    crm = await create_crm(spec.admin_dsn, spec.dbname, rows=spec.rows)
    dsn = database_dsn(spec.admin_dsn, spec.dbname)
    backup = await take_backup(dsn, state / "backups" / "demo", "demo")
    migration = await apply_phase4_migration(dsn)
    port = spec.app_port or free_port()
    (state / "standin.json").write_text(json.dumps({"port": port, "dsn": dsn}))
    spec.config.write_text(demo_config(state, dsn, port), encoding="utf-8")
    await _standin("start", state)
    return DemoSummary((
        f"database  {spec.dbname}: {crm.total_rows:,} rows in {len(crm.tables)} tables, then broken by the Phase 4 "
        f"migration ({len(migration.columns_dropped)} columns dropped, {len(migration.views_created)} views and "
        f"{len(migration.indexes_created)} indexes added, {sum(migration.rows_deleted.values()):,} rows deleted)",
        f"backup    {backup.relative_to(state.parent) if state.parent in backup.parents else backup} "
        f"({readable.size(backup.stat().st_size)}, taken before the migration)",
        f"app       stand-in CRM on http://127.0.0.1:{port} (/api/sales fails until the rollback)",
        f"config    {spec.config}",
        f"ready in {time.monotonic() - started:.1f} s",
    ), reused=False)


async def clean_demo(spec: DemoSpec) -> list[str]:
    """Stop the stand-in app, drop the demo's databases, remove the demo's folder; say what went."""
    removed = []
    state = spec.state.resolve()
    if (state / "standin.json").exists():
        await _standin("stop", state)
        removed.append("stopped the stand-in app")
    async with await psycopg.AsyncConnection.connect(spec.admin_dsn, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT datname FROM pg_database WHERE datname = %s OR datname LIKE %s OR datname LIKE %s ORDER BY 1",
            (spec.dbname, spec.dbname + r"\_\_rollback\_%", spec.dbname + r"\_\_failed\_%"))
        names = [row[0] for row in await cursor.fetchall()]
    for name in names:
        await drop_database(spec.admin_dsn, name)
        removed.append(f"dropped database {name}")
    if state.exists():
        await asyncio.to_thread(shutil.rmtree, state)
        removed.append(f"removed {state}")
    return removed


async def stop_standin(spec: DemoSpec) -> None:
    """Stop the demo's stand-in app (when the workspace stops); `create_demo` starts it again."""
    if (spec.state / "standin.json").exists():
        await _standin("stop", spec.state.resolve())


async def _standin(action: str, state: Path) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "demo.standin", action, "--state", str(state),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the stand-in app did not {action}: {output.decode().strip()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def demo_config(state: Path, dsn: str, port: int) -> str:
    """The demo's configuration: environment `demo`, three people, the stand-in app."""
    standin = [sys.executable, "-m", "demo.standin"]
    stop = json.dumps([[*standin, "stop", "--state", str(state)]])
    start = json.dumps([[*standin, "start", "--state", str(state)]])
    users = "\n".join(f'{user} = "{name}"' for user, name in USERS.items())
    return textwrap.dedent(f"""\
        # Written by `rollback-bot demo`; removed by `rollback-bot demo --clean`.
        [bot]
        audit_db = "state/rollback-audit.sqlite"
        incident_channel = "C0INCIDENTS"
        operators = ["U0OPS1"]
        approvers = ["U0DBA1", "U0DBA2"]
        two_person_rule = true
        update_interval_seconds = 15   # the runbook says 5 minutes; a demo wants to see some

        [bot.signoffs]
        dba = ["U0DBA1"]
        lead_dev = ["U0OPS1"]
        manager = ["U0DBA2"]

        [local.users]
        {{users}}

        [environments.demo]
        dsn = {json.dumps(dsn)}
        backup_dir = "backups/demo"
        stop = {stop}
        start = {start}
        stop_app = "immediately"
        health_url = "http://127.0.0.1:{port}/api/health"
        health_timeout_seconds = 30
        smoke = [{{ url = "http://127.0.0.1:{port}/api/sales", status = 200 }}]
        restore_jobs = 2
        """).replace("{users}", users)
