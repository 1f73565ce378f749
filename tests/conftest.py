"""Fixtures for every test: a CRM after a failed migration, its stand-in app, the bot and the fake
Slack wired together. The helpers themselves are in `tests/support/`."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from support.harness import (
    ADMIN_DSN,
    Crm,
    StandInApp,
    crm_database,
    drop_databases_like,
    start_harness,
)


@pytest.fixture
async def crm(tmp_path: Path):
    async with crm_database(tmp_path) as database:
        yield database


@pytest.fixture
async def app_role(crm: Crm):
    """A login role for database grants; dropped after the test's databases are gone."""
    role = f"{crm.dbname}_app"
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    yield role
    await drop_databases_like(crm.dbname)
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
async def stand_in(tmp_path: Path, crm: Crm):
    app = StandInApp(tmp_path, crm.dsn)
    await app.start()
    yield app
    await app.stop()


@pytest.fixture
async def harness(tmp_path: Path, crm: Crm, stand_in: StandInApp):
    h = await start_harness(tmp_path, crm, stand_in)
    yield h
    await h.close()
