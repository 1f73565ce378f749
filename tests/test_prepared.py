"""Prepared rollbacks (`/rollback prepare`): before the migration, a backup restored aside, verified and
closed; after it, a full rollback that is an approval and a swap, exact by fingerprint. A copy that may
have changed, or holds an older backup, is never used, and the message says why.

Each test starts from a CRM that is not migrated yet: it prepares, then runs the Phase 4 migration itself.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from demo.fingerprint import diff, fingerprint
from demo.migration import apply_phase4_migration
from support.cli import run_cli
from support.harness import (
    ADMIN_DSN,
    APPROVER,
    CHANNEL,
    OPERATOR,
    StandInApp,
    crm_database,
    database_names,
    dsn_of,
    start_harness,
)
from support.slack import WAIT, approval_message, ask, audit_actions, run_end, start_rollback, thread


@pytest.fixture
async def fresh(tmp_path):
    async with crm_database(tmp_path, migrate=False) as database:
        yield database


@pytest.fixture
async def h(tmp_path, fresh):
    app = StandInApp(tmp_path, fresh.dsn)
    await app.start()
    harness = await start_harness(tmp_path, fresh, app, stop_app='"at_swap"')
    yield harness
    await harness.close()
    await app.stop()


async def prepare(h, expected: str = "Rollback ready"):
    await ask(h, "prepare staging", "Preparing a rollback of `staging`")
    return await h.slack.wait_for_message(CHANNEL, expected, timeout=WAIT)


async def allows_connections(name: str) -> bool:
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        row = await (await conn.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (name,))).fetchone()
    return row[0]


async def test_a_prepared_full_rollback_is_an_approval_and_a_swap_and_exact(h):
    ready = await prepare(h)
    [copy] = h.store().prepared_copies()
    assert copy.state == "ready" and copy.proof and copy.backup_sha256
    text = ready.all_text()
    assert copy.database in text and copy.backup_path.split("/")[-2] in text and "nothing is restored" in text
    assert "restored into" in text and "taken in" in text
    assert not await allows_connections(copy.database)  # closed: nobody can write to it
    status = await ask(h, "status", "Prepared rollbacks")
    assert copy.database in status.text and "ready for" in status.text

    await apply_phase4_migration(h.crm.dsn)
    migrated = await fingerprint(h.crm.dsn)
    await start_rollback(h)
    request = await approval_message(h)
    assert f"Use the prepared copy `{copy.database}`" in request.all_text() and "nothing to restore" in request.all_text()
    await h.slack.click(APPROVER, request, "approval-approve")
    await run_end(h, "INCIDENT RESOLVED")
    await h.settle()

    # Exactly the backup's content under the live name; the failed database kept; nothing left over.
    assert diff(h.crm.before, await fingerprint(h.crm.dsn)) == []
    names = await database_names(h.crm.dbname)
    [kept] = [n for n in names if "__failed_" in n]
    assert diff(migrated, await fingerprint(dsn_of(kept))) == []
    assert not [n for n in names if "__rollback_" in n or "__prepared_" in n]
    assert await allows_connections(h.crm.dbname)  # the new live takes connections, as live did
    assert h.store().prepared_copy(copy.id).state == "used"
    lines = thread(h)
    assert "nothing to restore: the prepared copy" in lines and "is unchanged since it was verified" in lines
    report = (h.settings.reports_dir / f"INCIDENT_REPORT-{h.store().incidents('resolved')[0].id}.md").read_text()
    assert "- Migration start: 20" in report
    actions = [a for _, a, _ in audit_actions(h)]
    assert {"prepare.started", "prepare.backup", "prepare.ready"} <= set(actions)


async def test_a_reopened_copy_is_never_used_and_unprepare_removes_it_after_an_approval(h):
    await prepare(h)
    [copy] = h.store().prepared_copies()
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        for allowed in (True, False):  # opened and closed again: the row's version tells
            await conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(copy.database), sql.Literal(allowed)))
    await apply_phase4_migration(h.crm.dsn)
    await start_rollback(h)
    request = await approval_message(h)
    assert "Wait until the restored copy" in request.all_text()
    await h.slack.click(APPROVER, request, "approval-approve")
    await run_end(h, "INCIDENT RESOLVED")
    await h.settle()
    assert "the prepared copy is not used: " in thread(h) and "was altered after its verification" in thread(h)
    assert diff(h.crm.before, await fingerprint(h.crm.dsn)) == []  # restored from the backup as usual
    assert ("bot", "prepared.not_used", "ok") in audit_actions(h)

    await h.slack.send_command(OPERATOR, "unprepare staging")
    request = await h.slack.wait_for_message(CHANNEL, "Remove the prepared copy of staging", timeout=WAIT)
    assert copy.database in request.all_text()
    await h.slack.click(APPROVER, request, "approval-approve")
    await h.slack.wait_for_message(CHANNEL, "Prepared copy removal of staging finished", timeout=WAIT)
    assert copy.database not in await database_names(h.crm.dbname)
    assert h.store().prepared_copy(copy.id).state == "removed"


async def test_a_newer_backup_makes_the_copy_stale_and_a_second_prepare_replaces_the_first(h):
    await prepare(h)
    [first] = h.store().prepared_copies()
    # A second prepare from the command line (the bot keeps running): the first is dropped only once it is ready.
    code, out, err = await run_cli("prepare", "--config", str(h.settings.config_path), "staging")
    assert code == 0, err
    assert out.splitlines()[-1].startswith("Rollback ready: ") and "verify" in out
    second = h.store().prepared_copies()[-1]
    assert second.state == "ready" and h.store().prepared_copy(first.id).state == "replaced"
    assert first.database not in await database_names(h.crm.dbname)

    await apply_phase4_migration(h.crm.dsn)
    await ask(h, "backup staging", "manifest")  # newer than the prepared copy's, and of other content
    await start_rollback(h)
    request = await approval_message(h)
    assert "Use the prepared copy" not in request.all_text()
    assert "a newer backup is the newest now" in thread(h)
    await h.slack.click(APPROVER, request, "approval-deny")
    await h.settle()
    assert h.store().prepared_copy(second.id).state == "ready"  # still there for the next window


async def test_an_interrupted_prepare_is_never_ready_and_its_copy_is_offered_for_clean_up(tmp_path, fresh):
    app = StandInApp(tmp_path, fresh.dsn)
    await app.start()
    h = await start_harness(tmp_path, fresh, app)
    try:
        # What a crash mid-restore leaves: a row under way and a half-made copy.
        name = f"{fresh.dbname}__prepared_20991231t000000"
        assert h.store().start_prepared("20991231t000000", "staging", name, OPERATOR)
        async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        await h.runtime.stop()
        await h.slack.stop()
        h = await start_harness(tmp_path, fresh, app)
        offer = await h.slack.wait_for_message(CHANNEL, "Found at start-up", timeout=WAIT)
        assert name in offer.all_text()
        said = await h.slack.wait_for_message(CHANNEL, "❌ The prepare of staging failed", timeout=WAIT)
        assert "the bot stopped while it prepared" in said.text
        assert h.store().prepared_copy("20991231t000000").state == "failed"
        assert ("bot", "prepare.interrupted", "failed") in audit_actions(h)
        await apply_phase4_migration(fresh.dsn)
        await start_rollback(h)
        request = await approval_message(h)
        assert "Use the prepared copy" not in request.all_text()  # a copy never verified is never used
        await h.slack.click(APPROVER, request, "approval-deny")
    finally:
        await h.close()
        await app.stop()


async def test_partial_rollbacks_read_the_backup_from_the_prepared_copy_and_leave_it_as_it_was(h):
    await prepare(h)
    [copy] = h.store().prepared_copies()
    await apply_phase4_migration(h.crm.dsn)
    await h.slack.send_command(OPERATOR, "columns staging")
    request = await approval_message(h)
    await h.slack.click(APPROVER, request, "approval-approve")
    await h.slack.wait_for_message(CHANNEL, "Column rollback of staging finished", timeout=WAIT)
    await h.settle()
    assert f"read from a file copy of the prepared copy {copy.database}, which is left as it was" in thread(h)
    assert not await allows_connections(copy.database)
    assert not [n for n in await database_names(h.crm.dbname) if "__scratch_" in n]

    # The copy is still proven unchanged: the full rollback swaps it in, and live is the backup exactly.
    await start_rollback(h)
    request = await h.slack.wait_for(lambda: next((m for m in h.slack.messages(CHANNEL) if "Approval needed: Full"
                                                   in m.text), None), timeout=WAIT)
    assert f"Use the prepared copy `{copy.database}`" in request.all_text()
    await h.slack.click(APPROVER, request, "approval-approve")
    await run_end(h, "INCIDENT RESOLVED")
    await h.settle()
    assert diff(h.crm.before, await fingerprint(h.crm.dsn)) == []
    assert h.store().prepared_copy(copy.id).state == "used"
