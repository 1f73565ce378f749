"""Backups with a manifest, the schema diff, and the partial rollbacks (views, indexes, columns,
rerun, app) on a real CRM after the breaking Phase 4 migration, through the real Bolt app and the
fake Slack. Each verb must bring back exactly what the backup had, and change nothing else."""

from __future__ import annotations

import json
from uuid import uuid4

import psycopg
from psycopg import sql

from actions.backups.take import take_backup
from actions.config import load_settings
from demo.crm import create_crm, database_dsn
from demo.crm_schema import DENORMALIZED_COLUMNS
from demo.fingerprint import fingerprint
from demo.migration import INDEXES, VIEWS, apply_phase4_migration
from support.cli import run_cli
from support.harness import (
    ADMIN_DSN,
    APPROVER,
    CHANNEL,
    OPERATOR,
    Crm,
    Harness,
    StandInApp,
    drop_databases_like,
    restore_backup_copy,
    start_harness,
    write_config,
)
from support.slack import WAIT, approval_message, approve_and_finish, ask, audit_actions, run_end

KEYS = {"sales": "id", "tickets": "id", "job_works": "id", "products": "id"}


async def rows_by_key(dsn: str, table: str, columns: list[str]) -> dict:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cursor = await conn.execute(sql.SQL("SELECT {}, {} FROM {}").format(
            sql.Identifier(KEYS[table]), sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)))
        return {row[0]: row[1:] for row in await cursor.fetchall()}


async def test_diff_lists_exactly_what_the_migration_changed(harness: Harness):
    h = harness
    answer = await ask(h, "diff staging", "Schema diff of")
    text = answer.all_text()
    assert f"Views added since the backup* ({len(VIEWS)})" in text and all(f"public.{v}" in text for v in VIEWS)
    assert f"Indexes added since the backup* ({len(INDEXES)})" in text and all(f"public.{i}" in text for i in INDEXES)
    dropped = [(t, c) for t, cols in DENORMALIZED_COLUMNS.items() for c in cols]
    assert f"Columns dropped* ({len(dropped)})" in text and all(f"public.{t}.{c}" in text for t, c in dropped)
    for absent in ("Tables added", "Tables dropped", "Functions", "Columns added", "type changed"):
        assert absent not in text
    assert "restored schema" in text  # this backup has no manifest: its schema was read by restoring it
    await h.settle()
    assert h.store().runs() == [] and (OPERATOR, "diff", "ok") in audit_actions(h)


async def test_backup_writes_the_dump_and_a_manifest_and_lists_old_backups(tmp_path, crm, stand_in):
    h = await start_harness(tmp_path, crm, stand_in, env_extra="keep_backups = 1")
    try:
        answer = await ask(h, "backup staging", "Backup of `staging` written")
        assert "1 older backup(s) beyond keep_backups=1, kept" in answer.all_text()
        dumps = sorted(crm.backup_root.glob("*/staging_full_backup.dump"))
        assert len(dumps) == 2  # nothing was deleted
        manifest = json.loads(dumps[-1].with_name("staging_full_backup.manifest.json").read_text())
        live = await fingerprint(crm.dsn)
        for table in live.tables:
            assert manifest["catalog"]["tables"][table.name]["rows"] == table.rows
        assert set(manifest["catalog"]["views"]) >= {f"public.{v}" for v in VIEWS}
        # The diff now reads the manifest, and finds nothing: the backup is of the live database.
        answer = await ask(h, "diff staging", "No difference")
        assert "manifest" in answer.all_text()
        code, out, _ = await run_cli("backup", "--config", str(h.settings.config_path), "staging")
        assert code == 0 and "staging_full_backup.dump" in out and "manifest" in out
    finally:
        await h.close()


async def test_views_and_indexes_rollbacks_leave_the_catalog_equal_to_the_backups(harness: Harness):
    h = harness
    await ask(h, "views staging", "Started the view rollback")
    request = await approval_message(h)
    assert "DROP VIEW `public.sales_with_details`" in request.all_text()
    await approve_and_finish(h, "views")
    await ask(h, "indexes staging", "Started the index rollback")
    await approve_and_finish(h, "indexes")
    now = await fingerprint(h.crm.dsn)
    assert now.views == h.crm.before.views and now.indexes == h.crm.before.indexes
    assert now.tables == h.crm.after.tables and now.constraints == h.crm.after.constraints  # data untouched
    assert "live views now match the backup's" in "\n".join(m.text for m in h.slack.messages(CHANNEL, include_replies=True))


async def test_named_views_only_and_nothing_to_do(harness: Harness):
    h = harness
    await ask(h, "views staging public.customers_with_stats", "Started the view rollback")
    await approve_and_finish(h, "views")
    now = await fingerprint(h.crm.dsn)
    assert "public.customers_with_stats" not in dict(now.views) and "public.sales_with_details" in dict(now.views)
    await ask(h, "views staging no_such_view", "Started")
    ending = await h.slack.wait_for(lambda: [m for m in h.slack.messages(CHANNEL, include_replies=True)
                                             if m.reply_broadcast and "no such view" in m.text], timeout=WAIT)
    assert "untouched" in ending[0].all_text()


async def test_columns_come_back_with_every_value_equal_to_the_backups(harness: Harness):
    h = harness
    async with await psycopg.AsyncConnection.connect(h.crm.dsn, autocommit=True) as conn:  # a row newer than the backup
        await conn.execute("INSERT INTO tickets (tenant_id, ticket_number, customer_id, reported_by, subject, status, "
                           "priority) SELECT tenant_id, 'T-NEW-1', customer_id, reported_by, 'new after backup', 'open', "
                           "'low' FROM tickets LIMIT 1")
    await ask(h, "columns staging", "Started the column rollback")
    request = await approval_message(h)
    assert "ADD COLUMN `customer_name`" in request.all_text()
    await approve_and_finish(h, "columns")
    copy = await restore_backup_copy(h.crm)
    try:
        for table, columns in DENORMALIZED_COLUMNS.items():
            live = await rows_by_key(h.crm.dsn, table, list(columns))
            backup = await rows_by_key(f"{ADMIN_DSN.rsplit('/', 1)[0]}/{copy}", table, list(columns))
            both = set(live) & set(backup)
            assert both and all(live[key] == backup[key] for key in both), table
            assert all(live[key] == (None,) * len(columns) for key in set(live) - set(backup)) or table == "products"
    finally:
        await drop_databases_like(copy)
    now = await fingerprint(h.crm.dsn)
    untouched = {t.name for t in now.tables} - {f"public.{t}" for t in DENORMALIZED_COLUMNS}
    assert {t for t in now.tables if t.name in untouched} == {t for t in h.crm.after.tables if t.name in untouched}
    thread = "\n".join(m.text for m in h.slack.messages(CHANNEL, include_replies=True))
    assert "every re-added value equals the backup's, row by row" in thread and "1 newer than the backup" in thread
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN) as conn:
        schemas = await (await conn.execute("SELECT 1")).fetchall()
    assert schemas  # the admin connection still works; the scratch database was dropped:
    assert not [n for n in await _databases(h) if "__scratch_" in n]


async def _databases(h: Harness) -> list[str]:
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN) as conn:
        rows = await (await conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                         (h.crm.dbname + "%",))).fetchall()
    return [row[0] for row in rows]


async def test_rerun_drops_what_the_migration_creates_and_runs_it_again(tmp_path, crm, stand_in):
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "20250322000024_create_job_works_views.sql").write_text(
        "-- Phase 4, migration 24\nCREATE VIEW job_work_summary AS SELECT id, status FROM job_works;\n"
        "CREATE INDEX idx_job_works_status_rerun ON job_works (status);\n")
    (migrations / "20250322000025_concurrent.sql").write_text("CREATE INDEX CONCURRENTLY idx_x ON sales (id);\n")
    async with await psycopg.AsyncConnection.connect(crm.dsn, autocommit=True) as conn:  # a half-done, wrong first run
        await conn.execute("CREATE VIEW job_work_summary AS SELECT 1 AS id")
    h = await start_harness(tmp_path, crm, stand_in, env_extra=f'migrations_dir = "{migrations}"')
    try:
        await ask(h, "rerun staging 20250322000025", "CONCURRENTLY, which cannot run inside the one transaction")
        await ask(h, "rerun staging 2099", "No migration matches '2099'")
        await ask(h, "rerun staging 20250322000024", "Started the migration re-run")
        request = await approval_message(h)
        assert "DROP VIEW `public.job_work_summary`" in request.all_text()
        await approve_and_finish(h, "rerun")
        async with await psycopg.AsyncConnection.connect(crm.dsn) as conn:
            definition = (await (await conn.execute("SELECT pg_get_viewdef('job_work_summary')")).fetchone())[0]
            index = (await (await conn.execute("SELECT to_regclass('idx_job_works_status_rerun')")).fetchone())[0]
        assert "status" in definition and index is not None
        assert "now present: public.job_work_summary, public.idx_job_works_status_rerun" in "\n".join(
            m.text for m in h.slack.messages(CHANNEL, include_replies=True))
    finally:
        await h.close()


async def test_app_rollback_deploys_the_previous_release_and_checks_it(tmp_path, crm, stand_in):
    marker = tmp_path / "deployed"
    h = await start_harness(tmp_path, crm, stand_in, env_extra=(
        f'deploy = [["sh", "-c", "echo {{ref}} > {marker}"]]\nprevious_release = ["echo", "v1.4.2"]'))
    try:
        await ask(h, "app staging", "Started the application rollback")
        request = await approval_message(h)
        assert "v1.4.2" in request.all_text() and "The database is not touched" in request.all_text()
        await approve_and_finish(h, "app")
        assert marker.read_text().strip() == "v1.4.2"
        await ask(h, "app staging v1.3.0", "Started")
        await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
        await h.slack.wait_for(lambda: marker.read_text().strip() == "v1.3.0", timeout=WAIT)
        assert await fingerprint(crm.dsn) == crm.after  # the database was not touched
    finally:
        await h.close()


async def test_full_rollback_checks_the_restored_copy_against_the_manifest(tmp_path):
    dbname = f"rbtest_{uuid4().hex[:10]}"
    try:
        await create_crm(ADMIN_DSN, dbname, rows=20_000)
        dsn = database_dsn(ADMIN_DSN, dbname)
        crm = Crm(dbname, dsn, tmp_path / "_backups" / "staging", await fingerprint(dsn), None)
        app = StandInApp(tmp_path, dsn)
        await app.start()
        settings = load_settings(write_config(tmp_path, crm, app))
        await take_backup(settings.environments["staging"])  # with its manifest
        await apply_phase4_migration(dsn)
        h = await start_harness(tmp_path, crm, app)
        try:
            await h.slack.send_command(OPERATOR, "full staging")
            await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
            await run_end(h, "INCIDENT RESOLVED")
            verify = await h.slack.wait_for_message(CHANNEL, "✅ Verify the restored copy", timeout=WAIT)
            assert "manifest: 12 tables, row counts and content checksums equal the backup's" in verify.text
            assert await fingerprint(dsn) == crm.before
            await h.settle()

            # A manifest that disagrees with its dump stops the next rollback before anything is swapped.
            await apply_phase4_migration(dsn)
            broken = await fingerprint(dsn)
            manifest = next(crm.backup_root.glob("*/staging_full_backup.manifest.json"))
            data = json.loads(manifest.read_text())
            tables = data["catalog"]["tables"]
            tables["public.sales"]["checksum"] = "1:1"
            tables["public.customers"]["rows"] += 1
            tables["public.ghost"] = dict(tables["public.products"])  # a table the dump does not have
            manifest.write_text(json.dumps(data))
            await h.slack.send_command(OPERATOR, "full staging")
            await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
            ending = await h.slack.wait_for(lambda: [m for m in h.slack.messages(CHANNEL, include_replies=True)
                                                     if m.reply_broadcast and "manifest" in m.text], timeout=WAIT)
            text = ending[0].text
            assert "differs from the backup's manifest in 3 table(s)" in text
            assert "public.sales (content differs)" in text and "public.ghost (missing from the restored copy)" in text
            claimed = tables["public.customers"]["rows"]
            assert f"public.customers ({claimed - 1:,} rows, backup {claimed:,})" in text
            assert "untouched" in ending[0].all_text()
            await h.settle()
            assert await fingerprint(dsn) == broken
        finally:
            await h.close()
            await app.stop()
    finally:
        await drop_databases_like(dbname)
