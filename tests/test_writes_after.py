"""Rows written after the backup (issue 18, part 1): counted exactly after a full rollback swaps, checked
against a brute-force oracle that reads both databases whole; RESOLVED updated in place with the true line,
the report with a table per table."""

from __future__ import annotations

import json

import psycopg

from actions.postgres.catalog import describe
from demo.fingerprint import diff, fingerprint
from support.harness import APPROVER, CHANNEL, OPERATOR, Harness, database_names, dsn_of
from support.slack import STEP_TITLES, WAIT, approval_message, run_end, start_rollback, thread


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

    # Again: nothing changes (the conflicting row is kept once).
    before_again = await fingerprint(h.crm.dsn)
    await h.slack.send_command(OPERATOR, f"carry-over staging {incident}")
    request = await h.slack.wait_for(lambda: [m for m in h.slack.messages(CHANNEL) if "Carry over 1 rows" in m.text],
                                     timeout=WAIT)
    await h.slack.click(APPROVER, request[-1], "approval-approve")
    await h.slack.wait_for(lambda: len([m for m in h.slack.messages(CHANNEL, include_replies=True)
                                        if "Carry-over of staging finished" in m.text]) == 2, timeout=WAIT)
    await h.settle()
    assert diff(before_again, await fingerprint(h.crm.dsn)) == []
