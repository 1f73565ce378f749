"""The demo CRM, its Phase 4 migration, the backup helper and the fingerprint, on a real PostgreSQL.

Every test works in databases named rbtest_<random>, dropped by the fixture whatever happens.
The admin DSN comes from TEST_PG_ADMIN_DSN (default: postgres on 127.0.0.1:5432).
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timezone
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest
from psycopg import sql

from demo.backup import BackupError, pg_command_args, take_backup
from demo.crm import create_crm, database_dsn, drop_database
from demo.crm_data import table_sizes
from demo.crm_schema import DENORMALIZED_COLUMNS, TABLE_NAMES
from demo.fingerprint import diff, fingerprint
from demo.migration import INDEXES, VIEWS, MigrationAlreadyApplied, apply_phase4_migration

ADMIN_DSN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
ROWS = 20_000
WHEN = datetime(2026, 11, 24, 6, 15, 0, tzinfo=timezone.utc)

# Each denormalized column next to the join expression it copies; row is the table's alias.
DENORMALIZED_CHECKS = {
    "products": """
        SELECT count(*) FROM products p
        JOIN product_categories pc ON pc.id = p.category_id
        LEFT JOIN suppliers s ON s.id = p.supplier_id
        WHERE p.category IS DISTINCT FROM pc.name
           OR p.is_active IS DISTINCT FROM (p.status = 'active')
           OR p.supplier_name IS DISTINCT FROM s.name""",
    "sales": """
        SELECT count(*) FROM sales s
        JOIN customers c ON c.id = s.customer_id
        JOIN users u ON u.id = s.assigned_to
        LEFT JOIN (SELECT sale_id, sum(line_total) AS total FROM sale_items GROUP BY sale_id) t
          ON t.sale_id = s.id
        WHERE s.customer_name IS DISTINCT FROM c.name
           OR s.assigned_to_name IS DISTINCT FROM u.full_name
           OR s.amount IS DISTINCT FROM coalesce(t.total, 0)""",
    "tickets": """
        SELECT count(*) FROM tickets t
        JOIN customers c ON c.id = t.customer_id
        LEFT JOIN users a ON a.id = t.assigned_to
        JOIN users r ON r.id = t.reported_by
        WHERE t.customer_name IS DISTINCT FROM c.name
           OR t.customer_email IS DISTINCT FROM c.email
           OR t.customer_phone IS DISTINCT FROM c.phone
           OR t.assigned_to_name IS DISTINCT FROM a.full_name
           OR t.reported_by_name IS DISTINCT FROM r.full_name""",
    "job_works": """
        SELECT count(*) FROM job_works jw
        JOIN customers c ON c.id = jw.customer_id
        JOIN products p ON p.id = jw.product_id
        JOIN product_categories pc ON pc.id = p.category_id
        JOIN users e ON e.id = jw.receiver_engineer_id
        JOIN users b ON b.id = jw.assigned_by
        WHERE (jw.customer_name, jw.customer_short_name, jw.customer_contact, jw.customer_email,
               jw.customer_phone, jw.product_name, jw.product_sku, jw.product_category,
               jw.product_unit, jw.receiver_engineer_name, jw.receiver_engineer_email,
               jw.assigned_by_name)
              IS DISTINCT FROM
              (c.name, c.short_name, c.contact_name, c.email, c.phone, p.name, p.sku, pc.name,
               p.unit, e.full_name, e.email, b.full_name)""",
}


@pytest.fixture
async def new_db():
    """Factory of unique database names; every name handed out is dropped afterwards."""
    names: list[str] = []

    def make() -> str:
        names.append(f"rbtest_{uuid4().hex[:10]}")
        return names[-1]

    yield make
    for name in names:
        await drop_database(ADMIN_DSN, name)


@pytest.fixture
async def crm(new_db):
    """A fresh demo CRM of ROWS rows."""
    return await create_crm(ADMIN_DSN, new_db(), ROWS)


async def _scalar(dsn: str, query, params=None):
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(query, params)
        return (await cur.fetchone())[0]


async def _restore(dump: Path, dbname: str) -> str:
    """pg_restore ``dump`` into a new database ``dbname``; return its DSN."""
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    dsn = database_dsn(ADMIN_DSN, dbname)
    args, env, _ = pg_command_args(dsn)
    proc = await asyncio.create_subprocess_exec(
        "pg_restore", *args, "--exit-on-error", f"--dbname={dbname}", str(dump),
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **env},
    )
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    return dsn


async def test_create_crm_builds_the_promised_tables(crm):
    sizes = table_sizes(ROWS)
    assert list(crm.tables) == list(TABLE_NAMES)
    for table, expected in sizes.items():
        assert crm.tables[table] == expected, table
    assert crm.total_rows == sum(crm.tables.values())
    assert abs(crm.total_rows - ROWS) <= ROWS * 0.02
    assert crm.size_bytes > 1_000_000
    # the big three really are the big ones
    assert sorted(sizes, key=sizes.get)[-3:] == ["tickets", "sales", "sale_items"]

    async with await psycopg.AsyncConnection.connect(crm.dsn) as conn:
        cur = await conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public'"
        )
        present = set(await cur.fetchall())
        for table, columns in DENORMALIZED_COLUMNS.items():
            for column in columns:
                assert (table, column) in present, f"{table}.{column}"
        for table in TABLE_NAMES[3:]:  # the runbook's tables all carry a tenant
            assert (table, "tenant_id") in present, table
        cur = await conn.execute("SELECT viewname FROM pg_views WHERE schemaname = 'public'")
        assert await cur.fetchall() == [("active_customers",)]
        cur = await conn.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'")
        assert (await cur.fetchone())[0] >= 15
        # non-ASCII text and NULLs are there to be hashed, dumped and restored
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE full_name ~ '[^\\x01-\\x7f]') FROM users"
        )
        assert (await cur.fetchone())[0] > 0
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE customer_email IS NULL),"
            "       count(*) FILTER (WHERE assigned_to_name IS NULL),"
            "       count(*) FILTER (WHERE customer_name ~ '日本|東京|é|ü')"
            " FROM tickets"
        )
        assert all(n > 0 for n in await cur.fetchone())


async def test_denormalized_values_equal_the_joined_values(crm):
    for table, query in DENORMALIZED_CHECKS.items():
        assert await _scalar(crm.dsn, query) == 0, f"{table}: denormalized values disagree"
    # the amounts are real money, not all zero
    assert await _scalar(crm.dsn, "SELECT count(*) FROM sales WHERE amount > 0") > 0


async def test_create_crm_is_deterministic(new_db):
    a = await create_crm(ADMIN_DSN, new_db(), 3_000)
    b = await create_crm(ADMIN_DSN, new_db(), 3_000)
    c = await create_crm(ADMIN_DSN, new_db(), 3_300)
    fa, fb, fc = await fingerprint(a.dsn), await fingerprint(b.dsn), await fingerprint(c.dsn)
    assert fa == fb and diff(fa, fb) == []
    assert fa.dbname != fb.dbname  # the name is informative, not part of the content
    assert fa != fc


async def test_create_crm_leaves_an_existing_database_alone(new_db):
    name = new_db()
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with pytest.raises(psycopg.errors.DuplicateDatabase):
        await create_crm(ADMIN_DSN, name, 1_000)
    assert await _scalar(ADMIN_DSN, "SELECT count(*) FROM pg_database WHERE datname = %s",
                         (name,)) == 1
    with pytest.raises(ValueError):
        await create_crm(ADMIN_DSN, new_db(), 0)


async def test_fingerprint_of_a_restored_backup_equals_the_original(crm, new_db, tmp_path):
    before = await fingerprint(crm.dsn)
    assert before == await fingerprint(crm.dsn)
    dump = await take_backup(crm.dsn, tmp_path / "_backups" / "staging", "staging", when=WHEN)

    restored = await fingerprint(await _restore(dump, new_db()))
    assert diff(before, restored) == []
    assert restored == before
    assert restored.table("sales").rows == crm.tables["sales"]
    assert {name for name, _ in before.views} == {"public.active_customers"}
    sequences = {name: last for name, _, last in before.sequences}
    assert sequences["public.ticket_comments_id_seq"] == crm.tables["ticket_comments"]
    assert sequences["public.contract_number_seq"] == 999 + crm.tables["contracts"]


async def test_phase4_migration_breaks_what_the_runbook_says(crm, new_db, tmp_path):
    before = await fingerprint(crm.dsn)
    jobs_before = await _rows(crm.dsn, "SELECT id, customer_name, customer_email, product_sku,"
                              " product_category, receiver_engineer_email FROM job_works")

    summary = await apply_phase4_migration(crm.dsn)

    assert summary.views_created == list(VIEWS)
    assert summary.indexes_created == list(INDEXES)
    assert {"sales_with_details", "tickets_with_details", "job_works_with_details",
            "customers_with_stats", "contracts_with_details"} <= set(summary.views_created)
    assert {"idx_sales_tenant_customer", "idx_sales_tenant_assigned_to", "idx_sales_stage_status",
            "idx_sales_expected_close_date", "idx_job_works_engineer_tenant"
            } <= set(summary.indexes_created)
    assert summary.columns_dropped == [
        f"{t}.{c}" for t, cols in DENORMALIZED_COLUMNS.items() for c in cols
    ]
    assert len(summary.columns_dropped) == 23
    assert set(summary.rows_deleted) == {"ticket_comments", "tickets", "sale_items"}
    assert set(summary.rows_updated) == {"tickets", "sales", "contracts"}
    assert all(n > 0 for n in [*summary.rows_deleted.values(), *summary.rows_updated.values()])

    after = await fingerprint(crm.dsn)
    assert after != before
    lines = diff(before, after)
    text = "\n".join(lines)
    for dropped in summary.columns_dropped:
        assert f"column public.{dropped}: only in a" in text
    for view in summary.views_created:
        assert f"view public.{view}: only in b" in text
    for index in summary.indexes_created:
        assert f"index public.{index}: only in b" in text
    for table, n in summary.rows_deleted.items():
        rows = before.table(table).rows
        assert f"table public.{table}: rows {rows} != {rows - n}" in lines
    contracts = crm.tables["contracts"]
    assert f"table public.contracts: content differs with equal row count ({contracts} rows)" in lines

    # the views are built from joins: they still show what the dropped columns held
    jobs_after = await _rows(crm.dsn, "SELECT id, customer_name, customer_email, product_sku,"
                             " product_category, receiver_engineer_email"
                             " FROM job_works_with_details")
    assert jobs_after == jobs_before
    with pytest.raises(MigrationAlreadyApplied):
        await apply_phase4_migration(crm.dsn)

    # the migrated schema (views included) also survives a dump and restore unchanged
    dump = await take_backup(crm.dsn, tmp_path, "staging", when=WHEN)
    assert diff(after, await fingerprint(await _restore(dump, new_db()))) == []


async def _rows(dsn: str, query: str) -> set[tuple]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cur = await conn.execute(query)
        return set(await cur.fetchall())


async def test_fingerprint_catches_what_a_restore_can_get_wrong(new_db):
    db = await create_crm(ADMIN_DSN, new_db(), 2_000)
    base = await fingerprint(db.dsn)
    changes = {
        # one digit in one row: same count, different content
        "UPDATE sales SET title = title || '.' WHERE id = 7":
            "table public.sales: content differs with equal row count",
        "ALTER TABLE tickets ALTER COLUMN subject TYPE varchar(254)":
            "column public.tickets.subject: 'character varying(255) NOT NULL' != "
            "'character varying(254) NOT NULL'",
        "SELECT setval('contract_number_seq', 5000)":
            "sequence public.contract_number_seq: last_value",
        "DROP INDEX tickets_customer_id_idx": "index public.tickets_customer_id_idx: only in a",
        "ALTER TABLE sales DROP CONSTRAINT sales_customer_id_fkey":
            "constraint public.sales.sales_customer_id_fkey: only in a",
        "CREATE OR REPLACE VIEW active_customers AS SELECT id, tenant_id, name, short_name,"
        " email, phone, owner_id FROM customers WHERE status <> 'inactive'":
            "view public.active_customers: definition differs",
        "ALTER TABLE users ALTER COLUMN is_active SET DEFAULT false":
            "column public.users.is_active: 'boolean NOT NULL DEFAULT true' != "
            "'boolean NOT NULL DEFAULT false'",
    }
    async with await psycopg.AsyncConnection.connect(db.dsn, autocommit=True) as conn:
        for statement in changes:
            await conn.execute(statement)
    lines = diff(base, await fingerprint(db.dsn))
    for expected in changes.values():
        assert any(line.startswith(expected) for line in lines), (expected, lines)
    assert len(lines) == len(changes)


async def test_take_backup_uses_the_runbook_layout(crm, tmp_path):
    root = tmp_path / "_backups" / "staging"
    dump = await take_backup(crm.dsn, root, "staging", when=WHEN)
    assert dump == root / "20261124T061500Z" / "staging_full_backup.dump"
    assert dump.read_bytes()[:5] == b"PGDMP"  # custom format
    assert [p.name for p in dump.parent.iterdir()] == ["staging_full_backup.dump"]
    # the runbook's `ls -t _backups/staging/*/staging_full_backup.dump` finds it
    assert list(root.glob("*/staging_full_backup.dump")) == [dump]
    with pytest.raises(FileExistsError):
        await take_backup(crm.dsn, root, "staging", when=WHEN)
    with pytest.raises(ValueError, match="timezone-aware"):
        await take_backup(crm.dsn, root, "staging", when=datetime(2026, 1, 1))


async def test_take_backup_failure_says_why_and_leaves_nothing(tmp_path):
    missing = database_dsn(ADMIN_DSN, f"rbtest_missing_{uuid4().hex[:8]}")
    with pytest.raises(BackupError, match="does not exist") as info:
        await take_backup(missing, tmp_path, "staging", when=WHEN)
    assert info.value.returncode != 0
    assert list(tmp_path.iterdir()) == []  # no dump, no .partial, no empty timestamp dir


def test_password_goes_to_the_environment_not_the_command_line():
    args, env, dbname = pg_command_args(
        "postgresql://app:s3cr%20et@db.example:6543/crm_staging?sslmode=require"
    )
    assert args == ["--host=db.example", "--port=6543", "--username=app"]
    assert env == {"PGPASSWORD": "s3cr et", "PGSSLMODE": "require"}
    assert dbname == "crm_staging"
    assert not any("s3cr" in a for a in args)
    with pytest.raises(ValueError, match="names no database"):
        pg_command_args("host=db.example user=app")


async def test_drop_database_terminates_sessions_and_refuses_maintenance_dbs(new_db):
    name = new_db()
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    squatter = await psycopg.AsyncConnection.connect(database_dsn(ADMIN_DSN, name))
    try:
        assert await drop_database(ADMIN_DSN, name) is True
    finally:
        await squatter.close()
    assert await drop_database(ADMIN_DSN, name) is False
    for protected in ("postgres", "template0", "template1"):
        with pytest.raises(ValueError, match="refusing"):
            await drop_database(ADMIN_DSN, protected)
