"""The test harness: a real PostgreSQL CRM with a backup and a failed migration, the fake Slack,
and the real bot serving HTTP — all on localhost, nothing mocked. `conftest.py` makes fixtures of it.

The admin DSN comes from TEST_PG_ADMIN_DSN (default: postgres on 127.0.0.1:5432, trust auth).
"""

from __future__ import annotations

import asyncio
import os
import textwrap
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from uuid import uuid4

import psycopg
from pydantic import SecretStr

from actions.config import Settings, load_settings
from actions.store.sqlite import Store
from bot.credentials import SlackCredentials
from bot.server import BotRuntime
from demo.backup import take_backup
from demo.crm import create_crm, database_dsn, drop_database
from demo.fingerprint import Fingerprint, fingerprint
from demo.flag_app import FlagFileApp
from demo.migration import apply_phase4_migration
from fake_slack import FakeSlack

ADMIN_DSN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
SIGNING_SECRET = "test-signing-secret-8f3a"
BOT_TOKEN = "xoxb-test-token-1234"
CHANNEL = "C0INCIDENTS"

OPERATOR = "U0OPS1"        # may start rollbacks
LEAD = "U0LEAD1"           # operator and approver: used for the two-person rule
APPROVER = "U0DBA1"
APPROVER_2 = "U0DBA2"
BYSTANDER = "U0DEV1"       # no role
GROUP_MEMBER = "U0GRP1"    # approver through the usergroup S0DBAS


@dataclass
class Crm:
    """A CRM database after a failed migration, with the backup taken before it."""

    dbname: str
    dsn: str
    backup_root: Path
    before: Fingerprint  # content at backup time: what a rollback must bring back
    after: Fingerprint  # content after the migration: what the kept failed copy must hold


@asynccontextmanager
async def crm_database(tmp_path: Path, rows: int = 20_000, *, migrate: bool = True):
    """A fresh CRM, backed up in the runbook's layout, then broken by the Phase 4 migration (unless
    `migrate` is false: a test that prepares a rollback first migrates it itself)."""
    dbname = f"rbtest_{uuid4().hex[:10]}"
    backup_root = tmp_path / "_backups" / "staging"
    try:
        await create_crm(ADMIN_DSN, dbname, rows=rows)
        dsn = database_dsn(ADMIN_DSN, dbname)
        before = await fingerprint(dsn)
        await take_backup(dsn, backup_root, "staging")
        if migrate:
            await apply_phase4_migration(dsn)
        yield Crm(dbname, dsn, backup_root, before, await fingerprint(dsn))
    finally:
        await drop_databases_like(dbname)


async def drop_databases_like(prefix: str) -> None:
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        cursor = await conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",))
        names = [row[0] for row in await cursor.fetchall()]
    for name in names:
        await drop_database(ADMIN_DSN, name)


async def restore_backup_copy(crm: Crm) -> str:
    """The fixture's whole backup restored by the test itself (plain createdb + pg_restore), to
    compare with row by row; dropped with the CRM's databases (its name starts with the CRM's)."""
    name = f"{crm.dbname}_cmp_{uuid4().hex[:6]}"
    dump = next(crm.backup_root.glob("*/staging_full_backup.dump"))
    for argv in (["createdb", "-h", "127.0.0.1", "-U", "postgres", name],
                 ["pg_restore", "-h", "127.0.0.1", "-U", "postgres", "-d", name, str(dump)]):
        assert await (await asyncio.create_subprocess_exec(*argv)).wait() == 0
    return name


def dsn_of(dbname: str) -> str:
    return database_dsn(ADMIN_DSN, dbname)


async def database_names(prefix: str) -> set[str]:
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        cursor = await conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",))
        return {row[0] for row in await cursor.fetchall()}


class StandInApp(FlagFileApp):
    """The application the config stops and starts (see demo.flag_app). Its smoke check counts
    sales, so it passes on the migrated database too (the partial rollbacks keep it)."""


def write_config(tmp_path: Path, crm: Crm, app: StandInApp, bot_extra: str = "", env_extra: str = "",
                 tables: str = "", **overrides: str) -> Path:
    """A config for one environment, `staging`, pointing at the test CRM; `bot_extra` adds lines to [bot],
    `tables` whole tables at the end ([paging], [email])."""
    values = {
        "stop_app": '"immediately"',
        "stop": f'[["rm", "-f", "{app.flag}"]]',
        "start": f'[["touch", "{app.flag}"]]',
        "backup_dir": f'"{crm.backup_root}"',
        "two_person_rule": "true",
        "health_timeout_seconds": "10",
        "dsn": f'"{crm.dsn}"',
        "update_interval_seconds": "300",
        "restore_jobs": "2",
        # Slack's real pace (1/s, burst 3) would make every test wait on it; the pacing test sets it.
        "slack_posts_per_second": "50",
        "slack_post_burst": "50",
    } | overrides
    path = tmp_path / "rollback-bot.toml"
    path.write_text(textwrap.dedent(f"""\
        [bot]
        audit_db = "state/rollback-audit.sqlite"
        incident_channel = "{CHANNEL}"
        operators = ["{OPERATOR}", "{LEAD}"]
        approvers = ["{APPROVER}", "{APPROVER_2}", "{LEAD}", "S0DBAS"]
        two_person_rule = {values['two_person_rule']}
        update_interval_seconds = {values['update_interval_seconds']}
        slack_posts_per_second = {values['slack_posts_per_second']}
        slack_post_burst = {values['slack_post_burst']}
        {bot_extra}

        [environments.staging]
        dsn = {values['dsn']}
        backup_dir = {values['backup_dir']}
        stop = {values['stop']}
        start = {values['start']}
        stop_app = {values['stop_app']}
        health_url = "http://127.0.0.1:{app.port}/api/health"
        health_timeout_seconds = {values['health_timeout_seconds']}
        smoke = [{{ url = "http://127.0.0.1:{app.port}/api/sales", status = 200 }}]
        restore_jobs = {values['restore_jobs']}
        {env_extra}
        """) + textwrap.dedent(tables), encoding="utf-8")
    return path


def add_people(slack: FakeSlack) -> None:
    """The workspace's people: the roles the test config names, a bystander and a usergroup."""
    for user, name in ((OPERATOR, "ops.olivia"), (LEAD, "lead.lee"), (APPROVER, "dba.alice"),
                       (APPROVER_2, "dba.bob"), (BYSTANDER, "dev.dan"), (GROUP_MEMBER, "dba.gina")):
        slack.add_user(user, name)
    slack.add_usergroup("S0DBAS", [GROUP_MEMBER])


def credentials(api_url: str) -> SlackCredentials:
    return SlackCredentials(SecretStr(BOT_TOKEN), SecretStr(SIGNING_SECRET), None, api_url)


@dataclass
class Harness:
    """The fake Slack and the real bot serving HTTP, wired together."""

    slack: FakeSlack
    runtime: BotRuntime
    settings: Settings
    crm: Crm
    app: StandInApp

    _store: Store | None = None

    def store(self) -> Store:
        """The bot's state, read through a connection of the test's own (as the CLI reads it):
        the bot's connection belongs to its store thread."""
        if self._store is None:
            self._store = Store(self.settings.bot.audit_db)
        return self._store

    async def settle(self, timeout: float = 60.0) -> None:
        """Wait until every run has ended and every message about it has been sent."""
        async with asyncio.timeout(timeout):
            await self.runtime.service.runner.wait_idle()
            await self.runtime.deps.notifier.drain()
            await self.runtime.deps.outreach.drain()  # pages and mail: sent, or given up after their tries
            await self.runtime.deps.notifier.drain()  # and the thread's line about each

    async def close(self) -> None:
        """Stop the bot (cancelling a run still waiting for a decision) and the fake Slack."""
        try:
            await self.settle(timeout=5)
        except TimeoutError:
            pass  # a failed test left a run waiting; stopping the runtime cancels it
        await self.runtime.stop()
        await self.slack.stop()
        if self._store is not None:
            self._store.close()


async def start_harness(tmp_path: Path, crm: Crm, app: StandInApp, bot_extra: str = "", env_extra: str = "",
                        prepare: Callable[[FakeSlack], None] | None = None, tables: str = "", **overrides: str):
    """The fake Slack, then the bot serving HTTP; `prepare` may set the fake up before the bot starts."""
    slack = FakeSlack(SIGNING_SECRET, bot_token=BOT_TOKEN)
    await slack.start()
    if prepare is not None:
        prepare(slack)
    add_people(slack)
    settings = load_settings(write_config(tmp_path, crm, app, bot_extra, env_extra, tables, **overrides))
    runtime = BotRuntime(settings, credentials(slack.api_url))
    port = await runtime.serve_http("127.0.0.1", 0)
    slack.bot_url = f"http://127.0.0.1:{port}/slack/events"
    return Harness(slack, runtime, settings, crm, app)
