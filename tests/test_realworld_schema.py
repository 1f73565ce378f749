"""Every verb on a schema nobody on this project designed for (tests/realworld): a table partitioned
by month with a default partition and a partitioned index, views on views, a materialized view,
triggers that stamp and triggers that write, enum and domain types (one with a non-ASCII name), a
generated and an identity column, a table without a primary key, a composite foreign key, row level
security, grants and extensions — after a migration that touches each of them.

Through the real Bolt app and the fake Slack. Each verb must produce exactly what its preview says:
what it restores equals the backup row by row, and every other entry of a whole-database
fingerprint is unchanged. What it cannot do, it refuses before the approval, with the true reason.
"""

from __future__ import annotations

import psycopg
import pytest
from conftest import ADMIN_DSN, APPROVER, CHANNEL, OPERATOR, Harness, StandInApp, restore_backup_copy, start_harness
from realworld import (
    COLUMNS_DROPPED,
    INDEXES_ADDED,
    KEYS,
    VIEWS_ADDED,
    RealWorld,
    changed_entries,
    realworld_database,
    rows,
)
from test_full_rollback import WAIT, approval_message, audit_actions, run_end

from demo.backup import take_backup
from demo.crm import database_dsn
from demo.fingerprint import diff, fingerprint


@pytest.fixture
async def world(tmp_path):
    async with realworld_database(ADMIN_DSN, tmp_path) as made:
        yield made


@pytest.fixture
async def h(tmp_path, world: RealWorld):
    app = StandInApp(tmp_path, world.dsn, "SELECT count(*) FROM payment")
    await app.start()
    harness = await start_harness(tmp_path, world, app)
    yield harness
    await harness.close()
    await app.stop()


async def ask(h: Harness, text: str, expected: str):
    reply = await h.slack.send_command(OPERATOR, text)
    assert reply.status == 200 and reply.elapsed_ms < 3000
    return await h.slack.wait_for_ephemeral(OPERATOR, expected, timeout=WAIT)


async def plain_backup_then_migrate(world: RealWorld) -> None:
    await take_backup(world.dsn, world.backup_root, "staging")
    await world.backed_up()
    await world.migrate()


async def bot_backup_then_migrate(h: Harness, world: RealWorld) -> str:
    """`/rollback backup` (with its manifest), then the migration; returns the backup's reply."""
    answer = await ask(h, "backup staging", "Backup of `staging` written")
    await world.backed_up()
    await world.migrate()
    return answer.all_text()


async def approve_and_finish(h: Harness, verb: str):
    request = await approval_message(h)
    await h.slack.click(APPROVER, request, "approval-approve")
    await h.slack.wait_for_message(CHANNEL, "🏁", timeout=WAIT)
    await h.settle()
    assert (OPERATOR, f"{verb}.started", "ok") in audit_actions(h) and (APPROVER, "approved", "ok") in audit_actions(h)
    return request


async def run_failure(h: Harness, contains: str):
    """The message that ends a refused or failed run and contains `contains` (posted in the thread
    and to the channel)."""
    found = await h.slack.wait_for(lambda: [m for m in h.slack.messages(CHANNEL, include_replies=True)
                                            if m.reply_broadcast and contains in m.all_text()],
                                   timeout=WAIT, what=f"a run end with {contains!r}")
    return found[-1]


def thread(h: Harness) -> str:
    return "\n".join(m.all_text() for m in h.slack.messages(CHANNEL, include_replies=True))


async def own_rows_total(dsn: str) -> int:
    """Every row of every table once (a partitioned table's rows are its partitions')."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        tables = await (await conn.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname = 'public'")).fetchall()
        total = 0
        for (table,) in tables:
            total += (await (await conn.execute(f"SELECT count(*) FROM ONLY {table}")).fetchone())[0]
        return total


@pytest.mark.parametrize("backup", ["pg_dump", "/rollback backup"])
async def test_diff_reports_every_kind_of_change_and_counts_each_row_once(h: Harness, world: RealWorld, backup: str):
    if backup == "pg_dump":
        await plain_backup_then_migrate(world)
    else:
        reply = await bot_backup_then_migrate(h, world)
    answer = await ask(h, "diff staging", "Schema diff of")
    text = answer.all_text()
    assert ("read from its manifest" if backup == "/rollback backup" else "read from its table of contents (restored schema)") in text, text[:300]
    expected = {
        f"Views added since the backup* ({len(VIEWS_ADDED)})": VIEWS_ADDED,
        f"Indexes added since the backup* ({len(INDEXES_ADDED)})": INDEXES_ADDED,  # not one per partition
        "Columns dropped* (4)": ["public.customer.email", "public.address.postal_code", "public.film.description",
                                 "public.payment.note"],
        "Triggers dropped* (1)": ["public.film.last_update"],
        "Enum labels added* (1)": ["public.mpaa_rating: 'X'"],
        "Types changed": ["public.year: constraint year_check"],
        "Extensions added* (1)": ["pg_trgm"],
        "Partitions the backup has that live no longer has attached* (2)": [
            "public.payment_p2022_01 of public.payment FOR VALUES FROM ('2022-01-01 00:00:00+00') TO "
            "('2022-02-01 00:00:00+00'): detached, now a table of its own",
            "public.payment_p2022_02 of public.payment FOR VALUES FROM ('2022-02-01 00:00:00+00') TO "
            "('2022-03-01 00:00:00+00'): dropped"],
        "Policies changed* (1)": ["public.customer_note.store_isolation"],
        "Grants changed": ["TABLE public.film: -PUBLIC:SELECT"],
        "Columns changed": ["public.country.country_id: integer NOT NULL GENERATED ALWAYS AS IDENTITY → integer NOT NULL "
                            "GENERATED BY DEFAULT AS IDENTITY"],
        "Views whose definition changed* (1)": ["public.customer_list"],
    }
    for label, names in expected.items():
        assert label in text, label
        assert all(name in text for name in names), (label, names)
    assert "payment_p2022_03_amount_idx" not in text  # a partition's index is part of the partitioned one
    for absent in ("Tables added", "Tables dropped", "Functions", "Sequences", "Constraints added", "Indexes the backup has"):
        assert absent not in text, absent
    if backup == "/rollback backup":  # the backup's own reply counted every row once
        copy = await restore_backup_copy(world)
        assert f"{await own_rows_total(database_dsn(ADMIN_DSN, copy)):,} rows" in reply


async def test_views_are_dropped_in_dependency_order_and_nothing_else_changes(h: Harness, world: RealWorld):
    await plain_backup_then_migrate(world)
    await ask(h, "views staging", "Started the view rollback")
    request = await approve_and_finish(h, "views")
    text = request.all_text()
    # top_customers_by_city is built on top_customers: it goes first, whatever the names say.
    assert text.index("DROP VIEW `public.top_customers_by_city`") < text.index("DROP VIEW `public.top_customers`")
    assert "DROP MATERIALIZED VIEW `public.film_rating_counts`" in text
    now = await fingerprint(world.dsn)
    assert {n for n, _ in now.views} == {n for n, _ in world.after.views} - set(VIEWS_ADDED)
    assert changed_entries(world.after, now) == {
        *(f"view {v}" for v in VIEWS_ADDED), *(f"relation {v}" for v in VIEWS_ADDED),
        "table public.film_rating_counts", "columns public.film_rating_counts"}  # a matview has rows and columns
    assert "live views now match the backup's" in thread(h)


async def test_an_index_on_a_partitioned_table_is_one_index(h: Harness, world: RealWorld):
    await plain_backup_then_migrate(world)
    await ask(h, "indexes staging", "Started the index rollback")
    request = await approve_and_finish(h, "indexes")
    text = request.all_text()
    assert text.count("DROP INDEX") == len(INDEXES_ADDED) and all(f"`{i}`" in text for i in INDEXES_ADDED)
    assert "PostgreSQL drops along with them" in text and "payment_p2022_03_amount_idx" in text
    now = await fingerprint(world.dsn)
    gone = {n for n, _ in world.after.indexes} - {n for n, _ in now.indexes}
    assert gone >= set(INDEXES_ADDED) and all(n.endswith("_amount_idx") or n in INDEXES_ADDED for n in gone)
    assert changed_entries(world.after, now) == {f"index {n}" for n in gone}
    # Live now has exactly the backup's indexes on every table both have.
    survivors = {n for n, _ in now.indexes if not n.startswith("public.payment_p2022_02")}
    assert survivors == {n for n, _ in world.before.indexes if not n.startswith("public.payment_p2022_02")}


async def backup_then_migrate(h: Harness, world: RealWorld, backup: str) -> None:
    if backup == "pg_dump":
        await plain_backup_then_migrate(world)
    else:
        await bot_backup_then_migrate(h, world)


BACKUPS = pytest.mark.parametrize("backup", ["pg_dump", "/rollback backup"])


@BACKUPS
async def test_columns_come_back_exact_without_firing_the_tables_triggers(h: Harness, world: RealWorld, backup: str):
    await backup_then_migrate(h, world, backup)
    await world.execute("INSERT INTO customer (store_id, first_name, last_name, address_id) VALUES (1, 'New', 'Row', 1)")
    after = await fingerprint(world.dsn)
    before_rows = {t: await rows(world.dsn, t) for t in COLUMNS_DROPPED}
    await ask(h, "columns staging", "Started the column rollback")
    request = await approve_and_finish(h, "columns")
    text = request.all_text()
    assert "ADD COLUMN `email` public.citext" in text and 'ADD COLUMN `postal_code` public."código_postal"' in text
    assert "triggers and rules are switched off for this transaction only" in text
    assert "public.customer: trigger last_update" in text and "public.address: trigger last_update" in text
    assert "ADD COLUMN `note` text" in text  # a partitioned table: every attached partition gets it
    copy = await restore_backup_copy(world)
    backup_dsn = database_dsn(ADMIN_DSN, copy)
    for table, column in COLUMNS_DROPPED.items():
        key = KEYS[table]
        live = {row[:-1]: row[-1] for row in (await rows(world.dsn, table, [*key, column]))[1]}
        then = {row[:-1]: row[-1] for row in (await rows(backup_dsn, table, [*key, column]))[1]}
        matched = set(live) & set(then)  # payment lost rows since the backup: those stay lost
        assert len(matched) >= len(live) - 1 and all(live[k] == then[k] for k in matched), table  # one new customer
        assert all(live[k] is None for k in set(live) - set(then))  # the new customer has no email
        # Every column the table had before keeps its values in every row: last_update was not stamped.
        columns, before = before_rows[table]
        assert (await rows(world.dsn, table, columns))[1] == before, table
    attached = [t.name for t in after.tables if t.name.startswith("public.payment_") and t.name != "public.payment_p2022_01"]
    assert changed_entries(after, await fingerprint(world.dsn)) == {
        *(f"{kind} {t}" for t in [*COLUMNS_DROPPED, *attached] for kind in ("table", "columns"))}
    assert "every re-added value equals the backup's, row by row" in thread(h)
    assert f"({'manifest' if backup != 'pg_dump' else 'table of contents (restored schema)'})" in thread(h)
    # The report tells this run, not a full rollback that never happened.
    report = next(f for f in h.slack.files if f.title.startswith("Incident report")).content.decode()
    assert "#### 1. Column rollback — ✅ succeeded" in report and "Preview: Bring back 4 dropped column(s)" in report
    assert f"approved by {APPROVER}" in report
    assert "Full database rollback performed" not in report and "Failed database kept as" not in report


async def test_columns_bring_a_computed_column_back_computed_and_refuse_an_identity_column(h: Harness, world: RealWorld):
    await plain_backup_then_migrate(world)
    await world.execute("ALTER TABLE staff DROP COLUMN badge, DROP COLUMN initials")
    await ask(h, "columns staging", "Started the column rollback")
    request = await approval_message(h)
    text = request.all_text()
    # An identity column would be numbered anew, not brought back: named and skipped before the approval.
    assert "public.staff.badge was an identity column" in text
    assert "re-add `initials` GENERATED ALWAYS AS (upper(\"left\"(name, 1))) STORED" in text
    assert "PostgreSQL computes it from each row" in text
    await h.slack.click(APPROVER, request, "approval-approve")
    await h.slack.wait_for_message(CHANNEL, "🏁", timeout=WAIT)
    await h.settle()
    copy = await restore_backup_copy(world)
    columns = ["staff_id", "initials"]
    assert (await rows(world.dsn, "public.staff", columns))[1] == (
        await rows(database_dsn(ADMIN_DSN, copy), "public.staff", columns))[1]
    async with await psycopg.AsyncConnection.connect(world.dsn) as conn:
        generated = (await (await conn.execute(
            "SELECT attgenerated FROM pg_attribute WHERE attrelid = 'staff'::regclass AND attname = 'initials'"))
            .fetchone())[0]
        badge = await (await conn.execute(
            "SELECT 1 FROM pg_attribute WHERE attrelid = 'staff'::regclass AND attname = 'badge' AND NOT attisdropped"))\
            .fetchone()
    assert generated == "s" and badge is None


async def test_plain_tables_one_without_a_key_and_one_whose_trigger_writes(h: Harness, world: RealWorld):
    await plain_backup_then_migrate(world)
    await ask(h, "tables staging rental,rental_log", "Started the table rollback")
    await approve_and_finish(h, "tables")
    copy = await restore_backup_copy(world)
    for table in ("public.rental", "public.rental_log"):
        columns, expected = await rows(database_dsn(ADMIN_DSN, copy), table)
        assert (await rows(world.dsn, table, columns))[1] == expected, table
    now = await fingerprint(world.dsn)
    changed = changed_entries(world.after, now)
    assert changed == {"table public.rental", "table public.rental_log"}, changed


@BACKUPS
async def test_a_partitioned_table_comes_back_as_one_unit(h: Harness, world: RealWorld, backup: str):
    await backup_then_migrate(h, world, backup)
    await world.execute("INSERT INTO payment (customer_id, rental_id, amount, payment_date) "
                        "VALUES (1, 1, 5, '2022-02-10 12:00+00')")  # lands in the default partition now
    after = await fingerprint(world.dsn)

    # A partition alone is refused before any approval, with the true reason.
    await ask(h, "tables staging payment_p2022_03", "Started the table rollback")
    ending = await run_failure(h, "is a partition of public.payment: name public.payment")
    assert "untouched" in ending.all_text()
    # So is the whole table while it lacks a column the backup's rows have; the message says what to do.
    await h.settle()
    await ask(h, "tables staging payment", "Started the table rollback")
    ending = await run_failure(h, "the backup has column(s) live lacks (note); bring them back first "
                                  "(`/rollback columns staging`)")
    assert "untouched" in ending.all_text() and "Approval needed" not in thread(h)
    await h.settle()
    assert await fingerprint(world.dsn) == after

    await ask(h, "columns staging", "Started the column rollback")
    await approve_and_finish(h, "columns")
    after = await fingerprint(world.dsn)
    await ask(h, "tables staging payment", "Started the table rollback")
    request = await approve_and_finish(h, "tables")
    text = request.all_text()
    assert "`public.payment` is partitioned: its 13 partition(s) are restored as one unit" in text
    assert "Re-create partition `public.payment_p2022_02`" in text and "Re-attach `public.payment_p2022_01`" in text
    copy = await restore_backup_copy(world)
    restored = await fingerprint(database_dsn(ADMIN_DSN, copy))
    leaves = [t.name for t in restored.tables if t.name.startswith("public.payment_")]
    assert len(leaves) == 13
    for leaf in leaves:  # every partition's rows, row by row, where the backup had them
        columns, expected = await rows(database_dsn(ADMIN_DSN, copy), leaf)
        assert (await rows(world.dsn, leaf, columns))[1] == expected, leaf
    now = await fingerprint(world.dsn)
    for leaf in leaves:  # attached where it was, with its bound
        assert dict(now.objects)[f"relation {leaf}"] == dict(restored.objects)[f"relation {leaf}"], leaf
    unchanged = {e for e in changed_entries(after, now)
                 if not e.startswith(("table public.payment", "relation public.payment", "index public.payment_p2022_0",
                                      "constraint public.payment_p2022_0", "columns public.payment_p2022_0",
                                      "sequence public.payment_payment_id_seq"))}
    assert unchanged == set(), unchanged
    # The rows every partition had before are kept, each in a table of its own: the way back.
    async with await psycopg.AsyncConnection.connect(world.dsn) as conn:
        kept = (await (await conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname LIKE 'rollback\\_replaced\\_%' AND c.relkind = 'r'")).fetchone())[0]
    assert kept == 13


async def test_full_rollback_is_exact_and_checks_the_whole_catalog(h: Harness, world: RealWorld):
    await bot_backup_then_migrate(h, world)
    await h.slack.send_command(OPERATOR, "full staging")
    await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
    await run_end(h, "INCIDENT RESOLVED")
    await h.settle()
    now = await fingerprint(world.dsn)
    assert now == world.before, diff(world.before, now)
    assert "its catalog equals the manifest's" in thread(h)
    # Each row counted once: a partitioned table's rows are its partitions'.
    assert f"tables, {await own_rows_total(world.dsn):,} rows" in thread(h)
