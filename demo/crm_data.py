"""Server-side bulk load of the demo CRM: sizes and the INSERT ... SELECT generate_series statements.

Every value is arithmetic on the series index (no random()), so a given ``rows`` always yields
byte-identical content. Ids are explicit rather than drawn from the sequences, because the order
in which a join emits rows is up to the planner and would otherwise change which row gets which
id; the sequences are set to max(id) afterwards.

Tenancy is consistent: user ``k*3 + t`` and product ``k*3 + t`` belong to tenant ``t``, and a
row that references a customer picks its users and products from the customer's tenant.
"""

from __future__ import annotations

TENANTS = 3

#: Percent of ``rows`` per table; sales, sale_items and tickets are the big ones.
SHARES: dict[str, int] = {
    "users": 1,
    "customers": 5,
    "products": 2,
    "contracts": 3,
    "sales": 20,
    "sale_items": 30,
    "tickets": 18,
    "ticket_comments": 10,
    "job_works": 6,
    "job_work_specifications": 5,
}

# Small reference tables of fixed size (not part of the shares).
CATEGORIES = ["Hardware", "Software", "Services", "Spare Parts", "Consumables", "Sensors",
              "Câbles & Connecteurs", "Werkzeuge", "電子部品", "Licenses", "Training",
              "Maintenance"]
SUPPLIERS = [("Acme Industrial", "US"), ("Müller Präzision GmbH", "DE"),
             ("Société Générale d'Outils", "FR"), ("東京精密株式会社", "JP"),
             ("Nordic Søren AB", "SE"), ("Initech", "US"), ("Ibérica Suministros", "ES"),
             ("Zürich Komponenten AG", "CH")]
SPEC_KEYS = ["voltage", "tolerance", "material", "finish", "weight", "colour", "torque", "coating"]

# Names with non-ASCII letters and a quote, so text hashing, dumping and restoring is exercised.
FIRST_NAMES = ["Alice", "José", "Zoë", "Hiroshi", "Renée", "Ömer", "Li", "Søren", "Ana",
               "Jürgen", "Mei", "François", "Priya", "Łukasz"]
LAST_NAMES = ["Smith", "Müller", "Tanaka", "García", "Nguyen", "Østergaard", "日本", "Dubois",
              "O'Brien", "Kowalski", "Śliwa", "Fernández", "山田"]
COMPANY_WORDS = ["Acme", "Globex", "Müller", "Société", "東京", "Initech", "Umbrella",
                 "Nordlicht", "Café", "Ñandú", "Hooli", "Stark"]
COMPANY_SUFFIXES = ["GmbH", "Ltd", "Inc", "S.A.", "株式会社", "SARL", "AB"]


def table_sizes(rows: int) -> dict[str, int]:
    """Row count per table for an approximate total of ``rows`` (reference tables excluded).

    Users, customers and products are rounded to a multiple of the tenant count so that every
    tenant has the same number of each, which the tenant-consistent id arithmetic relies on.
    """
    if rows < 1:
        raise ValueError(f"rows must be positive, got {rows}")
    sizes = {name: max(1, rows * share // 100) for name, share in SHARES.items()}
    for name in ("users", "customers", "products"):
        sizes[name] = max(TENANTS * 2, sizes[name] // TENANTS * TENANTS)
    # the (job_work_id, spec_key) UNIQUE bounds the specifications per job work
    sizes["job_work_specifications"] = min(
        sizes["job_work_specifications"], sizes["job_works"] * len(SPEC_KEYS)
    )
    return sizes


def load_params(rows: int) -> dict[str, object]:
    """Query parameters shared by the load statements."""
    n = table_sizes(rows)
    return {
        "n_users": n["users"],
        "upt": n["users"] // TENANTS,  # users per tenant
        "n_customers": n["customers"],
        "n_products": n["products"],
        "ppt": n["products"] // TENANTS,  # products per tenant
        "n_contracts": n["contracts"],
        "n_sales": n["sales"],
        "n_items": n["sale_items"],
        "n_tickets": n["tickets"],
        "n_comments": n["ticket_comments"],
        "n_jobs": n["job_works"],
        "n_specs": n["job_work_specifications"],
        "first": FIRST_NAMES,
        "last": LAST_NAMES,
        "company": COMPANY_WORDS,
        "suffix": COMPANY_SUFFIXES,
        "categories": CATEGORIES,
        "supplier_names": [s[0] for s in SUPPLIERS],
        "supplier_countries": [s[1] for s in SUPPLIERS],
        "spec_keys": SPEC_KEYS,
    }


# A person's name from index i (used for users and customer contacts).
_PERSON = (
    "(%(first)s::text[])[1 + ({i} * 3) %% cardinality(%(first)s::text[])] || ' ' || "
    "(%(last)s::text[])[1 + ({i} * 5) %% cardinality(%(last)s::text[])]"
)

LOAD_STATEMENTS: tuple[str, ...] = (
    # reference tables
    """
    INSERT INTO product_categories (id, name, description)
    SELECT i, c, CASE WHEN i %% 4 = 0 THEN NULL ELSE 'Category ' || c END
    FROM unnest(%(categories)s::text[]) WITH ORDINALITY AS u(c, i)
    """,
    """
    INSERT INTO suppliers (id, name, country, email)
    SELECT i, s, (%(supplier_countries)s::text[])[i],
           CASE WHEN i %% 3 = 0 THEN NULL ELSE 'orders' || i || '@supplier.example' END
    FROM unnest(%(supplier_names)s::text[]) WITH ORDINALITY AS u(s, i)
    """,
    """
    INSERT INTO users (id, tenant_id, email, full_name, role, is_active, created_at, updated_at)
    SELECT i, 1 + (i - 1) %% 3, 'user' || i || '@crm.example',
           """ + _PERSON.format(i="i") + """,
           (ARRAY['admin', 'manager', 'sales', 'sales', 'engineer', 'engineer', 'support'])
               [1 + i %% 7],
           i %% 17 <> 0,
           timestamptz '2022-06-01 08:00:00+00' + i * interval '3 hours',
           timestamptz '2022-06-01 08:00:00+00' + i * interval '3 hours' + interval '30 days'
    FROM generate_series(1, %(n_users)s::int) AS i
    """,
    """
    INSERT INTO customers (id, tenant_id, name, short_name, contact_name, email, phone, status,
                           owner_id, created_at, updated_at)
    SELECT i, 1 + (i - 1) %% 3,
           (%(company)s::text[])[1 + i %% cardinality(%(company)s::text[])] || ' '
               || (%(suffix)s::text[])[1 + (i / 3) %% cardinality(%(suffix)s::text[])] || ' #' || i,
           'C' || lpad(i::text, 6, '0'),
           CASE WHEN i %% 23 = 0 THEN NULL ELSE """ + _PERSON.format(i="(i + 3)") + """ END,
           CASE WHEN i %% 11 = 0 THEN NULL ELSE 'contact' || i || '@customer.example' END,
           CASE WHEN i %% 7 = 0 THEN NULL ELSE '+1-555-' || lpad((i %% 10000)::text, 4, '0') END,
           (ARRAY['active', 'active', 'active', 'inactive', 'prospect'])[1 + i %% 5],
           ((i * 5) %% %(upt)s) * 3 + 1 + (i - 1) %% 3,
           timestamptz '2022-09-01 00:00:00+00' + i * interval '47 minutes',
           timestamptz '2022-09-01 00:00:00+00' + i * interval '47 minutes' + interval '90 days'
    FROM generate_series(1, %(n_customers)s::int) AS i
    """,
    """
    INSERT INTO products (id, tenant_id, sku, name, category_id, supplier_id, status, unit, price,
                          category, is_active, supplier_name, created_at, updated_at)
    SELECT i, 1 + (i - 1) %% 3, 'SKU-' || lpad(i::text, 6, '0'),
           pc.name || ' Modell ' || i,
           pc.id, s.id,
           (ARRAY['active', 'active', 'active', 'active', 'discontinued', 'draft'])[1 + i %% 6],
           (ARRAY['pcs', 'kg', 'm', 'box', 'hour'])[1 + i %% 5],
           round(((i * 37) %% 50000 + 199) / 100.0, 2),
           pc.name,
           (ARRAY['active', 'active', 'active', 'active', 'discontinued', 'draft'])[1 + i %% 6]
               = 'active',
           s.name,
           timestamptz '2022-07-01 00:00:00+00' + i * interval '5 hours',
           timestamptz '2022-07-01 00:00:00+00' + i * interval '5 hours' + interval '60 days'
    FROM generate_series(1, %(n_products)s::int) AS i
    JOIN product_categories pc
      ON pc.id = 1 + (i * 5) %% cardinality(%(categories)s::text[])
    LEFT JOIN suppliers s  -- every 13th product has no supplier: a NULL supplier_name
      ON i %% 13 <> 0 AND s.id = 1 + i %% cardinality(%(supplier_names)s::text[])
    """,
    """
    INSERT INTO contracts (id, tenant_id, contract_number, customer_id, title, status, value,
                           start_date, end_date, approved_by, created_at, updated_at)
    SELECT x.i, c.tenant_id, 'CT-' || (999 + x.i), c.id,
           'Service agreement ' || x.i || ' – ' || c.short_name,
           x.status,
           round(((x.i * 7919) %% 9000000 + 50000) / 100.0, 2),
           x.start_date, x.start_date + 365 + x.i %% 400,
           CASE WHEN x.status IN ('draft', 'pending_approval') THEN NULL
                ELSE ((x.i * 11) %% %(upt)s) * 3 + c.tenant_id END,
           (x.start_date - 20 + time '09:30') AT TIME ZONE 'UTC',
           (x.start_date + time '09:30') AT TIME ZONE 'UTC'
    FROM (SELECT i,
                 (ARRAY['draft', 'pending_approval', 'active', 'active', 'expired', 'terminated'])
                     [1 + i %% 6] AS status,
                 date '2023-01-01' + (i * 3) %% 700 AS start_date
          FROM generate_series(1, %(n_contracts)s::int) AS i) AS x
    JOIN customers c ON c.id = 1 + (x.i * 3) %% %(n_customers)s
    """,
    # sales and their line items in one statement: the items are inserted first (the foreign
    # keys come later) so each sale's denormalized amount is the sum of its real line totals
    """
    WITH s AS MATERIALIZED (
        SELECT x.i AS id, c.tenant_id, c.id AS customer_id, c.name AS customer_name,
               u.id AS assigned_to, u.full_name AS assigned_to_name, x.stage,
               CASE x.stage WHEN 'closed_won' THEN 'won' WHEN 'closed_lost' THEN 'lost'
                            ELSE 'open' END AS status,
               timestamptz '2023-01-01 00:00:00+00'
                   + (x.i::bigint * 60480000 / %(n_sales)s) * interval '1 second' AS created_at
        FROM (SELECT i, (ARRAY['lead', 'qualified', 'proposal', 'negotiation', 'negotiation',
                               'closed_won', 'closed_lost'])[1 + i %% 7] AS stage
              FROM generate_series(1, %(n_sales)s::int) AS i) AS x
        JOIN customers c ON c.id = 1 + (x.i * 7) %% %(n_customers)s
        JOIN users u ON u.id = ((x.i * 11) %% %(upt)s) * 3 + c.tenant_id
    ), items AS (
        INSERT INTO sale_items (id, tenant_id, sale_id, product_id, quantity, unit_price,
                                discount_pct, created_at)
        SELECT j, s.tenant_id, s.id, p.id, 1 + j %% 20, p.price, (j %% 4) * 5.0,
               s.created_at + (j %% 90) * interval '1 minute'
        FROM generate_series(1, %(n_items)s::int) AS j
        JOIN s ON s.id = 1 + (j - 1) %% %(n_sales)s
        JOIN products p ON p.id = ((j * 13) %% %(ppt)s) * 3 + s.tenant_id
        RETURNING sale_id, line_total
    )
    INSERT INTO sales (id, tenant_id, sale_number, customer_id, assigned_to, title, stage, status,
                       expected_close_date, notes, customer_name, assigned_to_name, amount,
                       created_at, updated_at)
    SELECT s.id, s.tenant_id, 'S-' || lpad(s.id::text, 7, '0'), s.customer_id, s.assigned_to,
           'Opportunity ' || s.id || ' für ' || s.customer_name, s.stage, s.status,
           date '2024-01-01' + (s.id * 7) %% 540,
           CASE WHEN s.id %% 5 = 0 THEN NULL ELSE 'Follow-up note #' || s.id || ' — ✓' END,
           s.customer_name, s.assigned_to_name, coalesce(t.amount, 0),
           s.created_at, s.created_at + (s.id %% 30) * interval '1 day'
    FROM s
    LEFT JOIN (SELECT sale_id, sum(line_total) AS amount FROM items GROUP BY sale_id) AS t
      ON t.sale_id = s.id
    """,
    """
    INSERT INTO tickets (id, tenant_id, ticket_number, customer_id, assigned_to, reported_by,
                         subject, description, status, priority, customer_name, customer_email,
                         customer_phone, assigned_to_name, reported_by_name, created_at,
                         updated_at, closed_at)
    SELECT x.i, c.tenant_id, 'TCK-' || lpad(x.i::text, 7, '0'), c.id, a.id, r.id,
           (ARRAY['Login fails', 'Invoice wrong', 'Gerät defekt', 'Délai de livraison',
                  '納品書の件', 'Feature request'])[1 + x.i %% 6] || ' #' || x.i,
           CASE WHEN x.i %% 4 = 0 THEN NULL ELSE 'Customer reports: "issue ' || x.i || '"' END,
           x.status,
           (ARRAY['low', 'medium', 'medium', 'high', 'urgent'])[1 + x.i %% 5],
           c.name, c.email, c.phone, a.full_name, r.full_name,
           x.created_at,
           coalesce(x.closed_at, x.created_at + (x.i %% 72) * interval '1 hour'),
           x.closed_at
    FROM (SELECT i, st.status,
                 timestamptz '2023-01-01 00:00:00+00'
                     + (i::bigint * 60480000 / %(n_tickets)s) * interval '1 second' AS created_at,
                 CASE WHEN st.status = 'closed' THEN
                     timestamptz '2023-01-01 00:00:00+00'
                         + (i::bigint * 60480000 / %(n_tickets)s) * interval '1 second'
                         + (1 + i %% 30) * interval '1 day' END AS closed_at
          FROM generate_series(1, %(n_tickets)s::int) AS i,
               LATERAL (SELECT (ARRAY['open', 'in_progress', 'resolved', 'closed', 'closed'])
                                   [1 + i %% 5] AS status) AS st) AS x
    JOIN customers c ON c.id = 1 + (x.i * 5) %% %(n_customers)s
    LEFT JOIN users a  -- every 9th ticket is unassigned: NULL assigned_to_name
      ON x.i %% 9 <> 0 AND a.id = ((x.i * 7) %% %(upt)s) * 3 + c.tenant_id
    JOIN users r ON r.id = ((x.i * 3) %% %(upt)s) * 3 + c.tenant_id
    """,
    """
    INSERT INTO ticket_comments (id, tenant_id, ticket_id, author_id, body, is_internal,
                                 created_at)
    SELECT j, t.tenant_id, t.id, ((j * 5) %% %(upt)s) * 3 + t.tenant_id,
           (ARRAY['Looking into it.', 'Merci, c''est réglé.', 'Bitte um Rückmeldung.',
                  '確認しました。', 'Escalated to L2 — see log'])[1 + j %% 5] || ' (' || j || ')',
           j %% 4 = 0,
           t.created_at + (1 + j %% 48) * interval '1 hour'
    FROM generate_series(1, %(n_comments)s::int) AS j
    JOIN tickets t ON t.id = 1 + ((j - 1) * 7) %% %(n_tickets)s
    """,
    """
    INSERT INTO job_works (id, tenant_id, job_number, customer_id, product_id,
                           receiver_engineer_id, assigned_by, status, quantity, description,
                           due_date, customer_name, customer_short_name, customer_contact,
                           customer_email, customer_phone, product_name, product_sku,
                           product_category, product_unit, receiver_engineer_name,
                           receiver_engineer_email, assigned_by_name, created_at, updated_at)
    SELECT i, c.tenant_id, 'JW-' || lpad(i::text, 7, '0'), c.id, p.id, e.id, b.id,
           (ARRAY['pending', 'in_progress', 'completed', 'completed', 'cancelled'])[1 + i %% 5],
           1 + i %% 12,
           CASE WHEN i %% 6 = 0 THEN NULL ELSE 'Rework of ' || p.name END,
           date '2023-02-01' + (i * 5) %% 650,
           c.name, c.short_name, c.contact_name, c.email, c.phone,
           p.name, p.sku, pc.name, p.unit, e.full_name, e.email, b.full_name,
           timestamptz '2023-01-15 07:00:00+00' + i * interval '97 minutes',
           timestamptz '2023-01-15 07:00:00+00' + i * interval '97 minutes' + interval '2 days'
    FROM generate_series(1, %(n_jobs)s::int) AS i
    JOIN customers c ON c.id = 1 + (i * 11) %% %(n_customers)s
    JOIN products p ON p.id = ((i * 7) %% %(ppt)s) * 3 + c.tenant_id
    JOIN product_categories pc ON pc.id = p.category_id
    JOIN users e ON e.id = ((i * 5) %% %(upt)s) * 3 + c.tenant_id
    JOIN users b ON b.id = ((i * 3 + 1) %% %(upt)s) * 3 + c.tenant_id
    """,
    """
    INSERT INTO job_work_specifications (id, tenant_id, job_work_id, spec_key, spec_value, unit,
                                         created_at)
    SELECT k, jw.tenant_id, jw.id,
           (%(spec_keys)s::text[])[1 + ((k - 1) / %(n_jobs)s) %% cardinality(%(spec_keys)s::text[])],
           CASE WHEN k %% 3 = 0 THEN 'Edelstahl 1.4301 – gebürstet' ELSE (k %% 997)::text END,
           (ARRAY['V', 'mm', NULL, 'µm', 'kg', NULL, 'N·m', NULL])[1 + k %% 8],
           jw.created_at
    FROM generate_series(1, %(n_specs)s::int) AS k
    JOIN job_works jw ON jw.id = 1 + (k - 1) %% %(n_jobs)s
    """,
)
