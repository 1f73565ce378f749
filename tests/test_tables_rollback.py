"""`/rollback tables <env> t1,t2` (runbook Scenario 2) on a real CRM after the Phase 4 migration, through the
real Bolt app and the fake Slack: the named tables get the backup's rows back, row by row, and nothing else
changes; orphans, unknown names, a role that is not superuser and a denial all leave the database as it was."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from actions.backups.manifest import Manifest, write_manifest
from actions.plans.tables import swap as tables_swap
from actions.plans.tables.plan import SPEC
from actions.postgres.catalog import describe
from actions.verbs import PLANS
from demo.fingerprint import fingerprint
from support.harness import (
    APPROVER,
    CHANNEL,
    OPERATOR,
    Harness,
    database_names,
    drop_databases_like,
    dsn_of,
    restore_backup_copy,
    start_harness,
)
from support.slack import WAIT, approval_message, ask, audit_actions, run_failure

assert PLANS["tables"] is SPEC

CHOSEN = ("tickets", "ticket_comments")


async def write_backup_manifest(h: Harness, copy: str) -> None:
    """A manifest beside the fixture's backup (row counts and checksums read from a plain restore of it)."""
    dump = next(h.crm.backup_root.glob("*/staging_full_backup.dump"))
    async with await psycopg.AsyncConnection.connect(dsn_of(copy), autocommit=True) as conn:
        catalog = await describe(conn, contents=True)
    write_manifest(dump, Manifest(datetime.now(UTC), h.crm.dbname, dump.name, dump.stat().st_size, catalog))


async def rows(dsn: str, table: str, columns: list[str] | None = None) -> tuple[list[str], list[tuple]]:
    """(columns, every row over them ordered by id); columns default to all of the table's."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        if columns is None:
            columns = [r[0] for r in await (await conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum", (table,))).fetchall()]
        cursor = await conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY id").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)))
        return columns, await cursor.fetchall()


def public(fp):
    """A fingerprint's public schema only (leaves out the bot's shadow schema while it exists)."""
    keep = [t for t in fp.tables if t.name.startswith("public.")]
    return (keep, [i for i in fp.indexes if i[0].startswith("public.")],
            [c for c in fp.constraints if c[0].startswith("public.")], fp.views, fp.sequences)


async def bot_schemas(dsn: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        return sorted(r[0] for r in await (await conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rollback\\_%'")).fetchall())


async def test_named_tables_get_the_backups_rows_and_the_others_keep_theirs(harness: Harness):
    h, after = harness, harness.crm.after
    copy = await restore_backup_copy(h.crm)
    await write_backup_manifest(h, copy)  # the shadow rows are then checked against the manifest's checksums
    async with await psycopg.AsyncConnection.connect(h.crm.dsn, autocommit=True) as conn:
        await conn.execute("ALTER TABLE tickets ALTER COLUMN id SET GENERATED ALWAYS")  # needs OVERRIDING SYSTEM VALUE
    await ask(h, "tables staging tickets,ticket_comments", "Started the table rollback")
    request = await approval_message(h)
    text = request.all_text()
    for table in CHOSEN:
        assert f"public.{table}: {after.table(table).rows:,} → {h.crm.before.table(table).rows:,}" in text
    assert "customer_name character varying(255)" in text  # a column the migration dropped, re-added
    assert "none orphaned" in text and "ticket_comments(ticket_id) → public.tickets(id)" in text
    assert "rollback_replaced_" in text and "not touched" in text
    await h.slack.click(APPROVER, request, "approval-approve")
    await h.slack.wait_for_message(CHANNEL, "🏁", timeout=WAIT)
    await h.settle()
    assert (OPERATOR, "tables.started", "ok") in audit_actions(h) and (APPROVER, "approved", "ok") in audit_actions(h)

    # Each named table equals the backup row by row, over every column the backup has.
    try:
        for table in CHOSEN:
            columns, expected = await rows(dsn_of(copy), table)
            assert (await rows(h.crm.dsn, table, columns))[1] == expected, table
            assert len(expected) == h.crm.before.table(table).rows
    finally:
        await drop_databases_like(copy)

    # Every other table kept its post-migration rows; views, indexes, constraints are as they were.
    now = await fingerprint(h.crm.dsn)
    others = {t.name for t in after.tables} - {f"public.{t}" for t in CHOSEN}
    assert {t for t in now.tables if t.name in others} == {t for t in after.tables if t.name in others}
    assert (now.views, now.indexes, now.constraints) == (after.views, after.indexes, after.constraints)
    sequences = {name: value for name, _, value in now.sequences}
    assert all(sequences[name] == value for name, _, value in after.sequences)  # never lowered

    # The rows the tables had are kept, whole; the shadow schema and the scratch database are gone.
    kept = await bot_schemas(h.crm.dsn)
    assert len(kept) == 1 and kept[0].startswith("rollback_replaced_inc_")
    for table in CHOSEN:
        assert now.table(f"{kept[0]}.{table}").content_hash == after.table(table).content_hash
        assert now.table(f"{kept[0]}.{table}").rows == after.table(table).rows
    assert await database_names(h.crm.dbname) == {h.crm.dbname}
    thread = "\n".join(m.text for m in h.slack.messages(CHANNEL, include_replies=True))
    assert "each table equals the backup row by row" in thread and f"schema {kept[0]} is kept" in thread
    assert "shadow rows equal the backup's (manifest)" in thread


async def test_cascading_foreign_keys_do_not_fire_and_computed_columns_come_back(harness: Harness):
    h, after = harness, harness.crm.after
    async with await psycopg.AsyncConnection.connect(h.crm.dsn, autocommit=True) as conn:
        await conn.execute("SELECT setval('sales_id_seq', 5)")  # a sequence behind its ids must be raised
    # sale_items references sales ON DELETE CASCADE: replacing the sales rows must not delete a single item.
    await ask(h, "tables staging sales", "Started the table rollback")
    await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
    await h.slack.wait_for_message(CHANNEL, "🏁 Table rollback of staging finished", timeout=WAIT)
    await h.settle()
    now = await fingerprint(h.crm.dsn)
    assert now.table("sale_items") == after.table("sale_items")
    assert dict((n, v) for n, _, v in now.sequences)["public.sales_id_seq"] == h.crm.before.table("sales").rows
    # sale_items.line_total is GENERATED: not inserted, computed again, and equal to the backup's.
    await ask(h, "tables staging sale_items", "Started the table rollback")
    await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
    await h.slack.wait_for(lambda: len([m for m in h.slack.messages(CHANNEL, include_replies=True)
                                        if m.text.startswith("🏁")]) == 2, timeout=WAIT)
    await h.settle()
    copy = await restore_backup_copy(h.crm)
    try:
        for table in ("sales", "sale_items"):
            columns, expected = await rows(dsn_of(copy), table)
            assert (await rows(h.crm.dsn, table, columns))[1] == expected, table
    finally:
        await drop_databases_like(copy)
    now = await fingerprint(h.crm.dsn)
    others = {t.name for t in after.tables} - {"public.sales", "public.sale_items"}
    assert {t for t in now.tables if t.name in others} == {t for t in after.tables if t.name in others}
    assert "sequences raised: public.sales_id_seq" in "\n".join(
        m.text for m in h.slack.messages(CHANNEL, include_replies=True))


async def test_rows_that_would_be_orphaned_stop_the_run_before_any_approval(harness: Harness):
    h = harness
    # The migration deleted old closed tickets: the backup's comments on them would have no ticket.
    await ask(h, "tables staging ticket_comments", "Started the table rollback")
    ending = await run_failure(h, "backup's row(s) would reference public.tickets(id)")
    text = ending.all_text()
    assert "ORPHANS public.ticket_comments" in text and "ticket_comments_ticket_id_fkey" in text
    assert "failed at “Check the shadow rows" in text and "untouched" in text
    assert "/rollback tables staging ticket_comments,tickets" in text  # the advice names the table to add
    await h.settle()
    assert await fingerprint(h.crm.dsn) == h.crm.after

    # A ticket newer than the backup, with a comment: restoring tickets alone would orphan the comment.
    async with await psycopg.AsyncConnection.connect(h.crm.dsn, autocommit=True) as conn:
        ticket = (await (await conn.execute(
            "INSERT INTO tickets (tenant_id, ticket_number, customer_id, reported_by, subject) SELECT tenant_id, "
            "'TK-AFTER-BACKUP', customer_id, reported_by, 'newer than the backup' FROM tickets LIMIT 1 RETURNING id"
        )).fetchone())[0]
        await conn.execute("INSERT INTO ticket_comments (tenant_id, ticket_id, author_id, body) "
                           "SELECT tenant_id, id, reported_by, 'a comment' FROM tickets WHERE id = %s", (ticket,))
    changed = await fingerprint(h.crm.dsn)
    await ask(h, "tables staging tickets", "Started the table rollback")
    ending = await run_failure(h, "live row(s) would reference public.tickets(id)")
    assert f"ticket_id = {ticket}" in ending.all_text() and "untouched" in ending.all_text()
    await h.settle()
    assert await fingerprint(h.crm.dsn) == changed
    assert "approval.requested" not in [action for _, action, _ in audit_actions(h)]
    assert await bot_schemas(h.crm.dsn) == [] and await database_names(h.crm.dbname) == {h.crm.dbname}


async def test_the_swap_rechecks_inside_its_transaction_and_gives_up_on_a_busy_table(harness: Harness, monkeypatch):
    h = harness
    # Checked and approved, but before the swap a ticket newer than the backup gets a comment: restoring tickets
    # would orphan it. The swap's own anti-join finds it and rolls everything back.
    await ask(h, "tables staging tickets", "Started the table rollback")
    request = await approval_message(h)
    async with await psycopg.AsyncConnection.connect(h.crm.dsn, autocommit=True) as conn:
        await conn.execute(
            "WITH t AS (INSERT INTO tickets (tenant_id, ticket_number, customer_id, reported_by, subject) SELECT "
            "tenant_id, 'TK-LATE', customer_id, reported_by, 'late' FROM tickets LIMIT 1 RETURNING *) "
            "INSERT INTO ticket_comments (tenant_id, ticket_id, author_id, body) "
            "SELECT tenant_id, id, reported_by, 'x' FROM t")
    changed = public(await fingerprint(h.crm.dsn))
    await h.slack.click(APPROVER, request, "approval-approve")
    ending = await run_failure(h, "rolled back, nothing was changed: ORPHANS public.ticket_comments")
    assert "failed at “Swap the backup's rows in" in ending.all_text() and "untouched" in ending.all_text()
    await h.settle()
    assert public(await fingerprint(h.crm.dsn)) == changed
    assert await bot_schemas(h.crm.dsn) == [] and await database_names(h.crm.dbname) == {h.crm.dbname}

    # A session holding a row of the table: the swap waits lock_timeout, then gives up without changing anything.
    monkeypatch.setattr(tables_swap, "LOCK_TIMEOUT", "1s")
    await ask(h, "tables staging ticket_comments,tickets", "Started the table rollback")
    request = await approval_message(h)
    async with await psycopg.AsyncConnection.connect(h.crm.dsn) as busy:
        await busy.execute("SELECT 1 FROM tickets WHERE id = 1 FOR UPDATE")
        await h.slack.click(APPROVER, request, "approval-approve")
        ending = await run_failure(h, "could not lock public.ticket_comments, public.tickets within 1s")
    assert "untouched" in ending.all_text()
    await h.settle()
    assert public(await fingerprint(h.crm.dsn)) == changed
    assert await bot_schemas(h.crm.dsn) == []


async def test_unknown_tables_are_refused_with_the_tables_the_backup_has(harness: Harness):
    h = harness
    answer = await ask(h, "tables staging tickets,no_such_table", "The backup has no table public.no_such_table")
    text = answer.all_text()
    assert all(f"public.{t}" in text for t in ("sales", "tickets", "ticket_comments", "users")) and "Usage" in text
    await ask(h, "tables staging", "Name the tables as one comma-separated list")
    h.crm.backup_root.rename(h.crm.backup_root.with_name("moved"))
    try:
        await ask(h, "tables staging tickets", "No backup found: the backup folder")
    finally:
        h.crm.backup_root.with_name("moved").rename(h.crm.backup_root)
    await h.settle()
    assert h.store().runs() == [] and h.store().open_incidents() == []
    assert (OPERATOR, "tables.invalid", "refused") in audit_actions(h)


async def test_a_role_that_is_not_superuser_fails_preflight(tmp_path, crm, stand_in, app_role):
    h = await start_harness(tmp_path, crm, stand_in, dsn=f'"{make_conninfo(crm.dsn, user=app_role)}"')
    try:
        await ask(h, "tables staging tickets", "Started the table rollback")
        ending = await run_failure(h, "is not a superuser")
        assert "session_replication_role" in ending.all_text() and "untouched" in ending.all_text()
        await h.settle()
        assert await fingerprint(crm.dsn) == crm.after
    finally:
        await h.close()


async def test_deny_changes_nothing_and_drops_the_shadow(harness: Harness):
    h = harness
    await ask(h, "tables staging tickets,ticket_comments", "Started the table rollback")
    request = await approval_message(h)
    assert len(await bot_schemas(h.crm.dsn)) == 1  # the shadow, checked, waits for the decision
    await h.slack.click(APPROVER, request, "approval-deny")
    ending = await run_failure(h, f"was denied by <@{APPROVER}>")
    assert "untouched" in ending.all_text() and "shadow schema" in ending.all_text()
    await h.settle()
    assert await fingerprint(h.crm.dsn) == h.crm.after
    assert await bot_schemas(h.crm.dsn) == [] and await database_names(h.crm.dbname) == {h.crm.dbname}
