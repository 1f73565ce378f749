"""Step 7 of the runbook, made exact: is everything the backup holds present in the restored copy?

The runbook counts rows in six tables and eyeballs a few columns. Here every schema, table,
view, materialized view, sequence, index, constraint, trigger, function and procedure in the
backup's table of contents must exist in the restored copy, and every table's rows are counted;
with the backup's manifest, each table's content checksum is compared too. The tables are read
over several connections at once, so verifying a large copy takes a fraction of its restore.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Awaitable, Callable

import psycopg
from psycopg import sql

from actions.backups.manifest import Manifest
from actions.backups.toc import VERIFIED_KINDS, Toc
from actions.engine.concurrency import together
from actions.engine.plan import StepFailed
from actions.postgres.catalog import FORMAT as CATALOG_FORMAT
from actions.postgres.catalog import checksum_text, count_and_checksum_query, describe, stable_session
from actions.postgres.schemadiff import compare

Connect = Callable[[], Awaitable[psycopg.AsyncConnection]]  # a new connection to the restored copy

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
    manifest_note: str = ""  # what the comparison with the backup's manifest found

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


async def verify_restored(connect: Connect, toc: Toc, manifest: Manifest | None, *, jobs: int) -> Verification:
    """Compare the backup's table of contents — and its manifest when there is one — with the
    restored database `connect()` opens. Objects first (one catalog query); then every table is
    counted, and checksummed when the manifest has its checksum, over `jobs` connections at once.
    A manifest mismatch raises StepFailed naming the tables."""
    async with await connect() as conn:
        cursor = await conn.execute(CATALOG_TAGS)
        present = {(kind, schema, tag) for kind, schema, tag in await cursor.fetchall()}
        version = (await (await conn.execute("SHOW server_version")).fetchone())[0].split(" ")[0]
    checked: Counter[str] = Counter()
    missing: list[str] = []
    for entry in toc.of(*VERIFIED_KINDS):
        if (entry.kind, entry.schema, entry.tag) in present:
            checked[entry.kind] += 1
        else:
            missing.append(f"{entry.kind} {entry.schema + '.' if entry.schema else ''}{entry.tag}")
    if missing:
        return Verification(dict(checked), tuple(missing), {})
    tables = {f"{e.schema}.{e.tag}": (e.schema, e.tag) if e.schema else (e.tag,) for e in toc.of("TABLE DATA")}
    expected = _with_rows(manifest) if manifest else {}
    for name in expected:
        tables.setdefault(name, _split(name))
    # pg_dump dumps each table's own rows; format-1 manifests counted a parent with its children.
    own_rows = manifest is None or manifest.catalog.format >= 2
    measured = await measure_tables(connect, tables, checksummed=set(expected), jobs=jobs, own_rows=own_rows)
    if manifest:
        note = _compare_with_manifest(manifest, measured, version)
        if manifest.catalog.format >= CATALOG_FORMAT and _major(version) == _major(manifest.catalog.server_version):
            note += "; " + await _compare_catalogs(connect, manifest)
    else:
        note = "no manifest beside the backup"
    return Verification(dict(checked), (), {name: measured[name][0] for name in tables if name in measured}, note)


def _with_rows(manifest: Manifest) -> dict:
    """The manifest's tables that hold rows of their own (a partitioned table's are in its partitions)."""
    tables = manifest.catalog.tables
    return {name: t for name, t in tables.items() if manifest.catalog.format < 2 or not t.partitioned}


def _major(version: str) -> str:
    return version.split(".")[0]


async def _compare_catalogs(connect: Connect, manifest: Manifest) -> str:
    """The restored copy's whole catalog equals the manifest's (the one catalog reader on both
    sides): a column type, a trigger, a grant or a partition bound that came back different stops
    the rollback before the swap."""
    async with await connect() as conn:
        restored = await describe(conn)
    diff = compare(restored, manifest.catalog)
    if not diff.empty:
        found = [f"{kind.replace('_', ' ')}: {', '.join(map(_entry, entries[:4]))}"
                 for kind, entries in diff.changes.items() if entries]
        raise StepFailed("the restored copy's schema differs from the backup's manifest: " + "; ".join(found[:6]))
    return "its catalog equals the manifest's (every object, column, trigger, policy, type, grant)"


def _entry(entry) -> str:
    return f"{entry.table}.{entry.column}" if hasattr(entry, "column") else str(entry)


def _split(name: str) -> tuple[str, ...]:
    schema, _, table = name.partition(".")
    return schema, table


async def measure_tables(connect: Connect, tables: dict[str, tuple[str, ...]], *, checksummed: set[str],
                         jobs: int, own_rows: bool = True) -> dict[str, tuple[int, str | None]]:
    """{name: (rows, checksum or None)} for every table, `jobs` connections working at once.

    The largest tables are handed out first, so no connection is left with a big table at the
    end while the others idle (longest-processing-time-first). The checksum is the manifest's own
    expression, `count(*)` and `sum(hashtext(row::text))` under the same session settings, in
    the same pass over the table as the count.
    """
    async with await connect() as conn:
        cursor = await conn.execute(
            "SELECT n.nspname, c.relname, pg_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'm')")
        sizes = {(schema, table): size for schema, table, size in await cursor.fetchall()}
    # A table that is not there (only a tampered manifest can name one: the TOC check passed) is
    # left out and reported by the comparison, instead of failing a query.
    present = [name for name in tables if len(tables[name]) == 1 or tables[name] in sizes]
    queue = sorted(present, key=lambda name: sizes.get(tables[name], 0), reverse=True)
    results: dict[str, tuple[int, str | None]] = {}

    async def worker() -> None:
        async with await connect() as conn:
            await stable_session(conn)
            while queue:
                name = queue.pop(0)
                table = sql.Identifier(*tables[name])
                if name in checksummed:
                    rows, total = await (await conn.execute(count_and_checksum_query(table, own_rows=own_rows))).fetchone()
                    results[name] = rows, checksum_text(rows, total)
                else:
                    cursor = await conn.execute(sql.SQL("SELECT count(*) FROM {}{}").format(
                        sql.SQL("ONLY " if own_rows else ""), table))
                    results[name] = (await cursor.fetchone())[0], None

    await together(*(worker() for _ in range(max(1, min(jobs, len(queue))))))
    return results


def _compare_with_manifest(manifest: Manifest, measured: dict[str, tuple[int, str | None]], version: str) -> str:
    """Every table's row count and content checksum equal the manifest's, or StepFailed naming them.

    Checksums are compared only on the same PostgreSQL major version (hashtext may change between
    majors); counts always.
    """
    tables = _with_rows(manifest)
    same_major = _major(version) == _major(manifest.catalog.server_version)
    wrong = [f"{name} (missing from the restored copy)" if name not in measured
             else f"{name} ({measured[name][0]:,} rows, backup {table.rows:,})" if measured[name][0] != table.rows
             else f"{name} (content differs)"
             for name, table in tables.items()
             if name not in measured or measured[name][0] != table.rows
             or (same_major and measured[name][1] != table.checksum)]
    if wrong:
        raise StepFailed(f"the restored copy differs from the backup's manifest in {len(wrong)} table(s): "
                         + ", ".join(wrong[:6]))
    what = "row counts and content checksums" if same_major else "row counts (checksums need the same major version)"
    return f"manifest: {len(tables)} tables, {what} equal the backup's"
