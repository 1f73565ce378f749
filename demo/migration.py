"""The breaking "Phase 4" migration of the runbook, applied to a demo CRM database.

It does what the runbook's migrations 1-7 do (views, indexes, removal of the denormalized
columns) plus the data changes a real release ships with (purges and status fix-ups), all in one
transaction. Afterwards the dropped columns' values exist only in the pre-migration backup,
which is exactly what a rollback must bring back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from demo.crm_schema import DENORMALIZED_COLUMNS

# Views list their columns explicitly: a "t.*" would capture the denormalized columns at
# creation time and then block their DROP.
VIEWS: dict[str, str] = {
    "sales_with_details": """
        SELECT s.id, s.tenant_id, s.sale_number, s.customer_id, c.name AS customer_name,
               s.assigned_to, u.full_name AS assigned_to_name, s.title, s.stage, s.status,
               s.expected_close_date, coalesce(t.amount, 0)::numeric(12,2) AS amount,
               s.created_at, s.updated_at
        FROM sales s
        JOIN customers c ON c.id = s.customer_id
        JOIN users u ON u.id = s.assigned_to
        LEFT JOIN (SELECT sale_id, sum(line_total) AS amount FROM sale_items GROUP BY sale_id) t
          ON t.sale_id = s.id""",
    "sale_items_with_details": """
        SELECT si.id, si.tenant_id, si.sale_id, s.sale_number, si.product_id,
               p.name AS product_name, p.sku AS product_sku, si.quantity, si.unit_price,
               si.discount_pct, si.line_total, si.created_at
        FROM sale_items si
        JOIN sales s ON s.id = si.sale_id
        JOIN products p ON p.id = si.product_id""",
    "product_sales_with_details": """
        SELECT p.id, p.tenant_id, p.sku, p.name, pc.name AS category,
               p.status = 'active' AS is_active, sup.name AS supplier_name, p.unit, p.price,
               coalesce(agg.units_sold, 0) AS units_sold, coalesce(agg.revenue, 0) AS revenue
        FROM products p
        JOIN product_categories pc ON pc.id = p.category_id
        LEFT JOIN suppliers sup ON sup.id = p.supplier_id
        LEFT JOIN (SELECT product_id, sum(quantity) AS units_sold, sum(line_total) AS revenue
                   FROM sale_items GROUP BY product_id) agg ON agg.product_id = p.id""",
    "customers_with_stats": """
        SELECT c.id, c.tenant_id, c.name, c.short_name, c.status,
               (SELECT count(*) FROM sales s WHERE s.customer_id = c.id) AS sales_count,
               (SELECT coalesce(sum(si.line_total), 0) FROM sales s
                  JOIN sale_items si ON si.sale_id = s.id
                 WHERE s.customer_id = c.id AND s.status = 'won') AS won_amount,
               (SELECT count(*) FROM tickets t
                 WHERE t.customer_id = c.id AND t.status <> 'closed') AS open_tickets
        FROM customers c""",
    "tickets_with_details": """
        SELECT t.id, t.tenant_id, t.ticket_number, t.customer_id, c.name AS customer_name,
               c.email AS customer_email, c.phone AS customer_phone, t.assigned_to,
               a.full_name AS assigned_to_name, t.reported_by, r.full_name AS reported_by_name,
               t.subject, t.status, t.priority, t.created_at, t.updated_at, t.closed_at
        FROM tickets t
        JOIN customers c ON c.id = t.customer_id
        LEFT JOIN users a ON a.id = t.assigned_to
        JOIN users r ON r.id = t.reported_by""",
    "ticket_comments_with_details": """
        SELECT tc.id, tc.tenant_id, tc.ticket_id, t.ticket_number, tc.author_id,
               u.full_name AS author_name, tc.body, tc.is_internal, tc.created_at
        FROM ticket_comments tc
        JOIN tickets t ON t.id = tc.ticket_id
        JOIN users u ON u.id = tc.author_id""",
    "contracts_with_details": """
        SELECT co.id, co.tenant_id, co.contract_number, co.customer_id,
               c.name AS customer_name, co.title, co.status, co.value, co.start_date,
               co.end_date, co.approved_by, u.full_name AS approved_by_name, co.created_at,
               co.updated_at
        FROM contracts co
        JOIN customers c ON c.id = co.customer_id
        LEFT JOIN users u ON u.id = co.approved_by""",
    "job_works_with_details": """
        SELECT jw.id, jw.tenant_id, jw.job_number, jw.status, jw.quantity, jw.description,
               jw.due_date, jw.customer_id, c.name AS customer_name,
               c.short_name AS customer_short_name, c.contact_name AS customer_contact,
               c.email AS customer_email, c.phone AS customer_phone, jw.product_id,
               p.name AS product_name, p.sku AS product_sku, pc.name AS product_category,
               p.unit AS product_unit, jw.receiver_engineer_id,
               e.full_name AS receiver_engineer_name, e.email AS receiver_engineer_email,
               jw.assigned_by, b.full_name AS assigned_by_name, jw.created_at, jw.updated_at
        FROM job_works jw
        JOIN customers c ON c.id = jw.customer_id
        JOIN products p ON p.id = jw.product_id
        JOIN product_categories pc ON pc.id = p.category_id
        JOIN users e ON e.id = jw.receiver_engineer_id
        JOIN users b ON b.id = jw.assigned_by""",
    "job_work_specifications_with_details": """
        SELECT js.id, js.tenant_id, js.job_work_id, jw.job_number, c.name AS customer_name,
               js.spec_key, js.spec_value, js.unit, js.created_at
        FROM job_work_specifications js
        JOIN job_works jw ON jw.id = js.job_work_id
        JOIN customers c ON c.id = jw.customer_id""",
}

# index name -> (table, columns)
INDEXES: dict[str, tuple[str, tuple[str, ...]]] = {
    "idx_sales_tenant_customer": ("sales", ("tenant_id", "customer_id")),
    "idx_sales_tenant_assigned_to": ("sales", ("tenant_id", "assigned_to")),
    "idx_sales_stage_status": ("sales", ("stage", "status")),
    "idx_sales_expected_close_date": ("sales", ("expected_close_date",)),
    "idx_sale_items_product": ("sale_items", ("product_id",)),
    "idx_tickets_tenant_status": ("tickets", ("tenant_id", "status")),
    "idx_tickets_assigned_to": ("tickets", ("assigned_to",)),
    "idx_contracts_tenant_status": ("contracts", ("tenant_id", "status")),
    "idx_job_works_engineer_tenant": ("job_works", ("receiver_engineer_id", "tenant_id")),
    "idx_job_works_customer_tenant": ("job_works", ("customer_id", "tenant_id")),
}

# Data changes, in order: (table, kind, statement). Dates are fixed rather than now() so the
# migration's effect is the same on every run.
DATA_CHANGES: tuple[tuple[str, str, str], ...] = (
    # purge old closed tickets, their comments first (the FK does not cascade)
    ("ticket_comments", "deleted", """
        DELETE FROM ticket_comments WHERE ticket_id IN (
            SELECT id FROM tickets
            WHERE status = 'closed' AND created_at < timestamptz '2023-07-01 00:00:00+00')"""),
    ("tickets", "deleted", """
        DELETE FROM tickets
        WHERE status = 'closed' AND created_at < timestamptz '2023-07-01 00:00:00+00'"""),
    # line items of lost deals are no longer kept
    ("sale_items", "deleted", """
        DELETE FROM sale_items WHERE sale_id IN (SELECT id FROM sales WHERE status = 'lost')"""),
    # status fix-ups
    ("tickets", "updated", """
        UPDATE tickets SET status = 'closed', closed_at = updated_at
        WHERE status = 'resolved' AND updated_at < timestamptz '2024-01-01 00:00:00+00'"""),
    ("sales", "updated", """
        UPDATE sales SET stage = 'closed_lost', status = 'lost',
                         updated_at = timestamptz '2025-11-08 02:00:00+00'
        WHERE stage = 'negotiation' AND expected_close_date < date '2024-06-01'"""),
    ("contracts", "updated", """
        UPDATE contracts SET status = 'expired', updated_at = timestamptz '2025-11-08 02:00:00+00'
        WHERE status = 'active' AND end_date < date '2024-06-30'"""),
)


@dataclass(frozen=True)
class MigrationSummary:
    """What apply_phase4_migration changed."""

    views_created: list[str] = field(default_factory=list)
    indexes_created: list[str] = field(default_factory=list)
    columns_dropped: list[str] = field(default_factory=list)  # "table.column"
    rows_deleted: dict[str, int] = field(default_factory=dict)
    rows_updated: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class MigrationAlreadyApplied(RuntimeError):
    """The database already has the Phase 4 views; applying twice would fail halfway."""


async def apply_phase4_migration(dsn: str) -> MigrationSummary:
    """Apply the breaking Phase 4 migration to the demo CRM at ``dsn`` in one transaction.

    Creates the Phase 4 views (from joins) and indexes, drops the denormalized columns, deletes
    and updates some rows. Raises MigrationAlreadyApplied if the views exist already; any other
    error rolls the whole transaction back.
    """
    started = time.perf_counter()
    views, indexes, dropped = [], [], []
    deleted: dict[str, int] = {}
    updated: dict[str, int] = {}
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT 1 FROM pg_views WHERE schemaname = 'public' AND viewname = %s",
                ("sales_with_details",),
            )
            if await cur.fetchone() is not None:
                raise MigrationAlreadyApplied(
                    "Phase 4 views already exist in this database; restore the pre-migration "
                    "backup (or create a fresh demo database) before applying it again"
                )
            # migrations 1-6: views, then indexes
            for name, body in VIEWS.items():
                await conn.execute(
                    sql.SQL("CREATE VIEW {} AS {}").format(sql.Identifier(name), sql.SQL(body))
                )
                views.append(name)
            for name, (table, columns) in INDEXES.items():
                await conn.execute(
                    sql.SQL("CREATE INDEX {} ON {} ({})").format(
                        sql.Identifier(name),
                        sql.Identifier(table),
                        sql.SQL(", ").join(map(sql.Identifier, columns)),
                    )
                )
                indexes.append(name)
            # migration 7: removal of the denormalized columns
            for table, columns in DENORMALIZED_COLUMNS.items():
                await conn.execute(
                    sql.SQL("ALTER TABLE {} {}").format(
                        sql.Identifier(table),
                        sql.SQL(", ").join(
                            sql.SQL("DROP COLUMN {}").format(sql.Identifier(c)) for c in columns
                        ),
                    )
                )
                dropped.extend(f"{table}.{c}" for c in columns)
            for table, kind, statement in DATA_CHANGES:
                cur = await conn.execute(statement)
                target = deleted if kind == "deleted" else updated
                target[table] = target.get(table, 0) + cur.rowcount
    return MigrationSummary(
        views_created=views,
        indexes_created=indexes,
        columns_dropped=dropped,
        rows_deleted=deleted,
        rows_updated=updated,
        seconds=time.perf_counter() - started,
    )
