"""Step 7 of the runbook, made exact: is everything the backup holds present in the restored copy?

The runbook counts rows in six tables and eyeballs a few columns. Here every schema, table,
view, materialized view, sequence, index, constraint, trigger, function and procedure in the
backup's table of contents must exist in the restored copy, and every table's rows are counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import psycopg
from psycopg import sql

from actions.catalog import Catalog, Table, count_and_checksum
from actions.manifest import Manifest
from actions.plan import StepFailed
from actions.toc import VERIFIED_KINDS, Toc

# The restored catalog described with the same (kind, schema, tag) triples pg_dump writes.
# Columns are cast to text: with `name` (63 bytes) leading the UNION, "table constraint" tags
# would be cut short.
CATALOG_TAGS = """
SELECT 'SCHEMA'::text, NULL::text, n.nspname::text FROM pg_namespace n
UNION ALL
SELECT CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'TABLE' WHEN 'v' THEN 'VIEW'
                      WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' ELSE 'INDEX' END,
       n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'i', 'I')
UNION ALL
SELECT CASE WHEN con.contype = 'f' THEN 'FK CONSTRAINT' ELSE 'CONSTRAINT' END,
       n.nspname, c.relname || ' ' || con.conname
  FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
UNION ALL
SELECT 'TRIGGER', n.nspname, c.relname || ' ' || t.tgname
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE NOT t.tgisinternal
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
       n.nspname, p.proname || '(' || oidvectortypes(p.proargtypes) || ')'
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
"""


@dataclass(frozen=True)
class Verification:
    checked: dict[str, int]  # kind -> number of objects found
    missing: tuple[str, ...]  # "INDEX public.idx_sales_stage_status"
    row_counts: dict[str, int]  # "public.sales" -> rows

    @property
    def ok(self) -> bool:
        return not self.missing

    @property
    def total_rows(self) -> int:
        return sum(self.row_counts.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {_plural(kind.lower(), n)}" for kind, n in sorted(self.checked.items()))
        return (f"{sum(self.checked.values())} objects present ({kinds}); "
                f"{len(self.row_counts)} tables, {self.total_rows:,} rows")


def _plural(word: str, n: int) -> str:
    if n == 1:
        return word
    return word + ("es" if word.endswith(("x", "s")) else "s")


async def verify_restored(conn: psycopg.AsyncConnection, toc: Toc) -> Verification:
    """Compare the backup's table of contents with the restored database behind `conn`."""
    cursor = await conn.execute(CATALOG_TAGS)
    present = {(kind, schema, tag) for kind, schema, tag in await cursor.fetchall()}
    checked: Counter[str] = Counter()
    missing: list[str] = []
    for entry in toc.of(*VERIFIED_KINDS):
        if (entry.kind, entry.schema, entry.tag) in present:
            checked[entry.kind] += 1
        else:
            missing.append(f"{entry.kind} {entry.schema + '.' if entry.schema else ''}{entry.tag}")
    counts: dict[str, int] = {}
    for entry in toc.of("TABLE DATA"):
        table = sql.Identifier(entry.schema, entry.tag) if entry.schema else sql.Identifier(entry.tag)
        cursor = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
        counts[f"{entry.schema}.{entry.tag}"] = (await cursor.fetchone())[0]
    return Verification(dict(checked), tuple(missing), counts)


async def check_against_manifest(conn: psycopg.AsyncConnection, manifest: Manifest) -> str:
    """Every table's row count and content checksum equal the manifest's, or StepFailed naming them.

    Checksums are compared only on the same PostgreSQL major version (hashtext may change between
    majors); counts always.
    """
    expected = manifest.catalog
    restored = Catalog(tables={name: Table([], None) for name in expected.tables})
    await count_and_checksum(conn, restored)
    version = (await (await conn.execute("SHOW server_version")).fetchone())[0].split(" ")[0]
    same_major = version.split(".")[0] == expected.server_version.split(".")[0]
    wrong = [f"{name} ({restored.tables[name].rows:,} rows, backup {table.rows:,})" if restored.tables[name].rows != table.rows
             else f"{name} (content differs)"
             for name, table in expected.tables.items()
             if restored.tables[name].rows != table.rows or (same_major and restored.tables[name].checksum != table.checksum)]
    if wrong:
        raise StepFailed(f"the restored copy differs from the backup's manifest in {len(wrong)} table(s): "
                         + ", ".join(wrong[:6]))
    what = "row counts and content checksums" if same_major else "row counts (checksums need the same major version)"
    return f"manifest: {len(expected.tables)} tables, {what} equal the backup's"
