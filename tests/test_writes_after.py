"""Rows written after the backup (issue 18, part 1): counted exactly after a full rollback swaps, checked
against a brute-force oracle that reads both databases whole; RESOLVED updated in place with the true line,
the report with a table per table."""

from __future__ import annotations

import json

import psycopg
import pytest

from actions.postgres.catalog import describe
from demo.fingerprint import diff, fingerprint
from demo.migration import apply_phase4_migration
from support.harness import (
    APPROVER,
    CHANNEL,
    OPERATOR,
    Harness,
    StandInApp,
    crm_database,
    database_names,
    dsn_of,
    start_harness,
)
from support.slack import STEP_TITLES, WAIT, approval_message, ask, run_end, start_rollback, thread


async def write_after_the_backup(dsn: str) -> None:
    """What the application did on the migrated database before the rollback: inserts into a table the
    migration left alone, updates and deletes elsewhere."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("INSERT INTO suppliers (name, country) VALUES ('Späti GmbH', 'DE'), ('Ōsaka Parts', 'JP'), "
                           "('Lyon Frères', 'FR')")
        await conn.execute("UPDATE customers SET phone = '+49 30 000' WHERE id <= 5")
        await conn.execute("DELETE FROM sale_items WHERE id <= 4")


async def oracle(failed_dsn: str, restored_dsn: str) -> dict[str, tuple[int, int, int]]:
    """Every table with the same primary key in both, read whole: (inserted, updated, deleted) where not all 0."""
    async with await psycopg.AsyncConnection.connect(failed_dsn) as a, \
            await psycopg.AsyncConnection.connect(restored_dsn) as b:
        after, before = await describe(a), await describe(b)
        found = {}
        for name, table in before.tables.items():
            other = after.tables.get(name)
            if other is None or table.partition_of or not table.primary_key or table.primary_key != other.primary_key:
                continue
            common = [c.name for c in table.columns if other.column(c.name)]

            async def rows(conn) -> dict:
                cursor = await conn.execute(f"SELECT row_to_json(t)::text FROM {name} t")  # names from the catalog
                out = {}
                for (text,) in await cursor.fetchall():
                    row = json.loads(text)
                    out[tuple(row[k] for k in table.primary_key)] = {c: row[c] for c in common}
                return out
            new, old = await rows(a), await rows(b)
            counts = (len(new.keys() - old.keys()), sum(1 for k in new.keys() & old.keys() if new[k] != old[k]),
                      len(old.keys() - new.keys()))
            if any(counts):
                found[name] = counts
    return found


async def test_rows_written_after_the_backup_are_counted_exactly_and_said(harness: Harness):
    h = harness
    await write_after_the_backup(h.crm.dsn)
    await start_rollback(h)
    await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
    resolved = await run_end(h, "INCIDENT RESOLVED")
    await h.settle()
    assert diff(h.crm.before, await fingerprint(h.crm.dsn)) == []  # counting changed nothing
    [kept] = [n for n in await database_names(h.crm.dbname) if "__failed_" in n]

    run = h.store().runs()[0]
    counted = {t: (i, u, d) for t, i, u, d in run.facts["writes_after"]["tables"]}
    expected = await oracle(dsn_of(kept), h.crm.dsn)
    assert counted == expected
    assert counted["public.suppliers"] == (3, 0, 0) and counted["public.sale_items"][2] >= 4
    assert counted["public.customers"][1] >= 5
    total = sum(sum(c) for c in expected.values())
    inserted = sum(c[0] for c in expected.values())

    # RESOLVED was posted first, then updated in place with the exact line; the thread has the detail.
    now = next(m for m in h.slack.messages(CHANNEL) if m.ts == resolved.ts)
    line = f"{total:,} rows written after the backup are not in the restored database (inserted {inserted:,} in"
    assert line in now.text and f"they are kept in `{kept}`" in now.text and now.edited
    assert "No data loss" not in now.text
    assert "✅ Count the writes made after the backup" in thread(h) and STEP_TITLES[-2].startswith("Count the writes")
    report = (h.settings.reports_dir / f"INCIDENT_REPORT-{run.incident_id}.md").read_text()
    assert "### Rows written after the backup" in report and "| public.suppliers | 3 | 0 | 0 |" in report


async def test_carry_over_puts_back_exactly_the_inserted_rows_and_nothing_else(harness: Harness):
    h = harness
    await write_after_the_backup(h.crm.dsn)
    async with await psycopg.AsyncConnection.connect(h.crm.dsn, autocommit=True) as conn:
        # A child of a supplier inserted after the backup (carried parent first), on the migrated schema: the
        # columns Phase 4 dropped take live's defaults when it comes back.
        await conn.execute("INSERT INTO products (tenant_id, sku, name, category_id, supplier_id, price) SELECT 1, "
                           "'SKU-AFTER-1', 'Brezel', (SELECT min(id) FROM product_categories), s.id, 2.50 "
                           "FROM suppliers s WHERE s.name = 'Späti GmbH'")
    await start_rollback(h)
    await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
    await run_end(h, "INCIDENT RESOLVED")
    await h.settle()
    incident = h.store().runs()[0].incident_id
    [kept] = [n for n in await database_names(h.crm.dbname) if "__failed_" in n]
    restored = await fingerprint(h.crm.dsn)
    async with await psycopg.AsyncConnection.connect(h.crm.dsn, autocommit=True) as conn:
        # Meanwhile somebody re-created one of the suppliers by hand (under a key of their own): the carried row
        # would break UNIQUE (name).
        await conn.execute("INSERT INTO suppliers (id, name, country) VALUES (900001, 'Lyon Frères', 'FR')")

    # The count's result comes with a button that starts the gated carry-over (as the typed verb does).
    offer = await h.slack.wait_for_message(CHANNEL, "row(s) inserted after the backup are in", timeout=WAIT)
    assert offer.thread_ts and f"`/rollback carry-over staging {incident}`" in offer.text
    await h.slack.click(OPERATOR, offer, "carry-over")
    request = await h.slack.wait_for_message(CHANNEL, "Carry over 4 rows inserted after the backup", timeout=WAIT)
    text = request.all_text()
    assert "INSERT 3 row(s) into `public.suppliers`" in text and "INSERT 1 row(s) into `public.products`" in text
    assert text.index("public.suppliers") < text.index("public.products")  # parents first
    assert "take live's default: " in text and "supplier_name" in text
    # Updated rows are shown, by column with examples, and not carried.
    assert "Not carried: 5 row(s) of `public.customers` updated after the backup (by column: phone 5" in text
    assert "→ '+49 30 000'" in text
    await h.slack.click(APPROVER, request, "approval-approve")
    await h.slack.wait_for_message(CHANNEL, "Carry-over of staging finished", timeout=WAIT)
    await h.settle()

    async with await psycopg.AsyncConnection.connect(h.crm.dsn) as live, \
            await psycopg.AsyncConnection.connect(dsn_of(kept)) as failed:
        async def suppliers(conn):
            return sorted(await (await conn.execute(
                "SELECT id, name, country FROM suppliers WHERE name IN ('Späti GmbH', 'Ōsaka Parts')")).fetchall())
        assert await suppliers(live) == await suppliers(failed)  # carried, equal in every common column
        product = await (await live.execute(
            "SELECT p.name, s.name, p.supplier_name, p.is_active FROM products p JOIN suppliers s ON s.id = p.supplier_id "
            "WHERE p.sku = 'SKU-AFTER-1'")).fetchone()
        assert product == ("Brezel", "Späti GmbH", None, True)
        [(reason, row)] = await (await live.execute(
            "SELECT reason, row_data FROM rollback_quarantine.carried_over WHERE incident_id = %s", (incident,))).fetchall()
        assert "suppliers_name_key" in reason and row["name"] == "Lyon Frères"
        # The updates and deletes made after the backup (the migration's among them) were not applied again.
        phones = await (await live.execute("SELECT count(*) FROM customers WHERE phone = '+49 30 000'")).fetchone()
        assert phones == (0,)
        assert (await (await live.execute("SELECT count(*) FROM sale_items WHERE id <= 4")).fetchone()) == (4,)
        next_id = await (await live.execute("SELECT nextval(pg_get_serial_sequence('suppliers', 'id'))")).fetchone()
        assert next_id[0] > max(i for i, _, _ in await suppliers(live))  # the sequence is past the carried keys
    # Every other table is as the backup restored it: only the carried tables, their sequences and the
    # quarantine differ.
    for line in diff(restored, await fingerprint(h.crm.dsn)):
        assert any(name in line for name in ("suppliers", "products", "rollback_quarantine")), line

    # Again: nothing changes (the conflicting row stays kept, once, and is not tried again).
    before_again = await fingerprint(h.crm.dsn)
    await h.slack.send_command(OPERATOR, f"carry-over staging {incident}")
    await h.slack.wait_for_message(CHANNEL, "Carry-over of staging failed", timeout=WAIT)
    await h.settle()
    text = thread(h)
    assert "nothing to carry over: every row inserted after the backup is in live already (3 row(s)) or kept in " \
           "rollback_quarantine.carried_over by an earlier carry-over (1 row(s))" in text
    assert diff(before_again, await fingerprint(h.crm.dsn)) == []


@pytest.fixture
async def unmigrated(tmp_path):
    async with crm_database(tmp_path, migrate=False) as database:
        yield database


@pytest.fixture
async def window(tmp_path, unmigrated):
    """A harness on a CRM backed up and not migrated yet: the test writes before the migration, migrates,
    and writes again in the migration window (the application keeps running until the swap)."""
    app = StandInApp(tmp_path, unmigrated.dsn)
    await app.start()
    harness = await start_harness(tmp_path, unmigrated, app, stop_app='"at_swap"')
    yield harness
    await harness.close()
    await app.stop()


async def test_updates_are_carried_only_when_asked_and_only_where_live_holds_the_backups_version(window: Harness):
    h = window
    async with await psycopg.AsyncConnection.connect(h.crm.dsn, autocommit=True) as conn:
        # After the backup, before the migration: a new supplier, customers' phones, a contract's note of a
        # table the migration updates too.
        await conn.execute("INSERT INTO suppliers (name, country) VALUES ('Vorher GmbH', 'DE')")
        await conn.execute("UPDATE customers SET phone = '+49 30 111' WHERE id BETWEEN 1 AND 6")
        await conn.execute("UPDATE contracts SET updated_at = timestamptz '2026-01-01 00:00:00+00' WHERE id = 1")
        await apply_phase4_migration(h.crm.dsn)  # updates tickets, sales and contracts, deletes rows itself
        # In the migration window: another supplier, another customer's email.
        await conn.execute("INSERT INTO suppliers (name, country) VALUES ('Fenêtre SA', 'FR')")
        await conn.execute("UPDATE customers SET email = 'fenetre@example.com' WHERE id = 7")
    await start_rollback(h)
    await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
    await run_end(h, "INCIDENT RESOLVED")
    await h.settle()
    incident = h.store().runs()[0].incident_id
    [kept] = [n for n in await database_names(h.crm.dbname) if "__failed_" in n]
    assert diff(h.crm.before, await fingerprint(h.crm.dsn)) == []
    async with await psycopg.AsyncConnection.connect(h.crm.dsn, autocommit=True) as conn:
        # Since the rollback, the application changed customer 6, and inserted a supplier under the key the
        # failed database gave 'Vorher GmbH' (live's sequence came back with the backup).
        await conn.execute("UPDATE customers SET phone = '+33 1 999' WHERE id = 6")
        await conn.execute("INSERT INTO suppliers (name, country) VALUES ('Nachher KG', 'AT')")
    restored = await fingerprint(h.crm.dsn)

    await h.slack.send_command(OPERATOR, f"carry-over staging {incident} suppliers,contracts updates=customers")
    request = await h.slack.wait_for_message(CHANNEL, "Carry over 1 rows inserted and 6 updated", timeout=WAIT)
    text = request.all_text()
    assert "INSERT 1 row(s) into `public.suppliers`" in text
    assert "Kept aside, not inserted: 1 row(s) of `public.suppliers` whose key live has given to another row" in text
    assert "UPDATE 6 row(s) of `public.customers` to the failed database's values, only where live still holds the " \
           "backup's version (by column: phone 6, email 1" in text
    assert "Kept aside, not updated: 1 row(s) of `public.customers` that live has changed" in text
    # The migration's own updates of contracts (and the application's one) are shown, and not carried.
    assert "Not carried: " in text and "of `public.contracts` updated after the backup (by column: " in text
    assert "status" in text and "`updates=public.contracts` would carry them" in text
    await h.slack.click(APPROVER, request, "approval-approve")
    await h.slack.wait_for_message(CHANNEL, "Carry-over of staging finished", timeout=WAIT)
    await h.settle()

    async with await psycopg.AsyncConnection.connect(h.crm.dsn) as live, \
            await psycopg.AsyncConnection.connect(dsn_of(kept)) as failed:
        async def customers(conn, where: str):
            return await (await conn.execute(f"SELECT id, phone, email, updated_at FROM customers WHERE {where} "
                                             "ORDER BY id")).fetchall()
        # Carried where live held the backup's version: equal to the failed database in every column compared.
        assert await customers(live, "id IN (1, 2, 3, 4, 5, 7)") == await customers(failed, "id IN (1, 2, 3, 4, 5, 7)")
        assert (await customers(live, "id = 6"))[0][1] == "+33 1 999"  # live's own change is not overwritten
        names = await (await live.execute("SELECT name FROM suppliers WHERE name IN ('Vorher GmbH', 'Fenêtre SA', "
                                          "'Nachher KG') ORDER BY name")).fetchall()
        assert names == [("Fenêtre SA",), ("Nachher KG",)]
        aside = dict(await (await live.execute(
            "SELECT source_table, reason FROM rollback_quarantine.carried_over WHERE incident_id = %s",
            (incident,))).fetchall())
        assert "suppliers_pkey" in aside["public.suppliers"]
        assert aside["public.customers"].startswith("live changed this row after the rollback")
    # Nothing else moved: the migration's updates and deletes were not re-applied.
    for line in diff(restored, await fingerprint(h.crm.dsn)):
        assert any(name in line for name in ("suppliers", "customers", "rollback_quarantine")), line

    # A second carry-over with the same words changes nothing.
    again = await fingerprint(h.crm.dsn)
    await h.slack.send_command(OPERATOR, f"carry-over staging {incident} suppliers,contracts updates=customers")
    await h.slack.wait_for_message(CHANNEL, "Carry-over of staging failed", timeout=WAIT)
    await h.settle()
    assert "nothing to carry over: every row inserted after the backup and every update asked for is in live " \
           "already (7 row(s)) or kept in rollback_quarantine.carried_over by an earlier carry-over (2 row(s))" \
        in thread(h)
    assert diff(again, await fingerprint(h.crm.dsn)) == []


async def test_carry_over_refuses_bad_words_and_a_changed_backup(harness: Harness):
    h = harness
    for words, says in (("carry-over staging INC-20260101-0001 updates=", "`updates=` names no table"),
                        ("carry-over staging INC-20260101-0001 update=customers", "nknown option `update=`: the only option is `updates=t1,t2`"),
                        ("carry-over staging INC-20260101-0001 a b", "he tables are named twice")):
        before = len(h.store().runs())
        reply = await ask(h, words, says)
        assert "Usage: `/rollback carry-over <env> <incident> [t1,t2] [updates=t3,t4]`" in reply.text
        assert "Nothing was started" in reply.text
        assert len(h.store().runs()) == before
    await start_rollback(h)
    await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
    await run_end(h, "INCIDENT RESOLVED")
    await h.settle()
    incident = h.store().runs()[0].incident_id
    dump = next(h.crm.backup_root.glob("*/staging_full_backup.dump"))
    dump.write_bytes(dump.read_bytes() + b"\0")  # somebody wrote to the backup after the rollback
    before = await fingerprint(h.crm.dsn)
    await h.slack.send_command(OPERATOR, f"carry-over staging {incident}")
    await h.slack.wait_for_message(CHANNEL, "Carry-over of staging failed", timeout=WAIT)
    await h.settle()
    assert f"has changed since {incident} restored it: it no longer says which rows were written after it" in thread(h)
    assert diff(before, await fingerprint(h.crm.dsn)) == []
