"""Rows written after the backup (issue 18, part 1): counted exactly after a full rollback swaps, checked
against a brute-force oracle that reads both databases whole; RESOLVED updated in place with the true line,
the report with a table per table."""

from __future__ import annotations

import json

import psycopg

from actions.postgres.catalog import describe
from demo.fingerprint import diff, fingerprint
from support.harness import APPROVER, CHANNEL, Harness, database_names, dsn_of
from support.slack import STEP_TITLES, approval_message, run_end, start_rollback, thread


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
