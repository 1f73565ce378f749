"""A database's user schema described as data: tables with columns and primary keys, views,
indexes, constraints, functions, sequences — plus, when asked, per-table row counts and content
checksums. Backups carry it as their manifest; the schema diff compares two of them.

Objects of extensions and of the bot's own `rollback_*` schemas are left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import sql

USER_SCHEMAS = """n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
                  AND n.nspname NOT LIKE 'rollback\\_%'"""
NOT_EXTENSION = "NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = {oid} AND e.deptype = 'e')"
# Fixed output formats, so a row's text (and its checksum) does not depend on session settings.
STABLE_SESSION = ("SET TimeZone = 'UTC'", "SET DateStyle = 'ISO, YMD'", "SET IntervalStyle = 'postgres'",
                  "SET extra_float_digits = 3", "SET bytea_output = 'hex'")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    default: str | None


@dataclass
class Table:
    columns: list[Column]
    primary_key: list[str] | None
    rows: int | None = None
    checksum: str | None = None  # count and sum of hashtext(row::text), as text

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass
class Catalog:
    tables: dict[str, Table] = field(default_factory=dict)  # "schema.table"
    views: dict[str, str] = field(default_factory=dict)  # "schema.view" -> definition (materialized too)
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)  # "schema.index" -> table, definition, constraint
    constraints: dict[str, dict[str, Any]] = field(default_factory=dict)  # "schema.table.name" -> type, definition
    functions: list[str] = field(default_factory=list)  # "schema.name(args)"
    sequences: dict[str, int | None] = field(default_factory=dict)  # "schema.sequence" -> last_value
    server_version: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Catalog:
        tables = {name: Table([Column(**c) for c in t["columns"]], t["primary_key"], t.get("rows"), t.get("checksum"))
                  for name, t in data["tables"].items()}
        return cls(tables, data["views"], data["indexes"], data["constraints"], data["functions"],
                   data["sequences"], data.get("server_version", ""))


def qualified(name: str) -> sql.Identifier:
    """"schema.table" -> a quoted, schema-qualified identifier."""
    schema, _, table = name.partition(".")
    return sql.Identifier(schema, table)


async def _rows(conn: psycopg.AsyncConnection, query: str) -> list[tuple]:
    return await (await conn.execute(query)).fetchall()


async def describe(conn: psycopg.AsyncConnection, *, contents: bool = False) -> Catalog:
    """The catalog of the database behind `conn`; with `contents`, row counts and checksums too."""
    catalog = Catalog(server_version=(await _rows(conn, "SHOW server_version"))[0][0].split(" ")[0])
    for schema, table, column, type_, nullable, default in await _rows(conn, f"""
            SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
                   pg_get_expr(d.adbin, d.adrelid)
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
             WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMAS} AND {NOT_EXTENSION.format(oid='c.oid')}
             ORDER BY 1, 2, a.attnum"""):
        catalog.tables.setdefault(f"{schema}.{table}", Table([], None)).columns.append(
            Column(column, type_, nullable, default))
    for schema, table, keys in await _rows(conn, f"""
            SELECT n.nspname, c.relname, array_agg(a.attname::text ORDER BY k.ord)
              FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
             CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE con.contype = 'p' AND {USER_SCHEMAS} GROUP BY 1, 2"""):
        if f"{schema}.{table}" in catalog.tables:
            catalog.tables[f"{schema}.{table}"].primary_key = list(keys)
    for schema, view, definition in await _rows(conn, f"""
            SELECT n.nspname, c.relname, pg_get_viewdef(c.oid)
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('v', 'm') AND {USER_SCHEMAS} AND {NOT_EXTENSION.format(oid='c.oid')}"""):
        catalog.views[f"{schema}.{view}"] = definition
    for schema, index, table, definition, backs_constraint in await _rows(conn, f"""
            SELECT n.nspname, ci.relname, ct.relname, pg_get_indexdef(i.indexrelid),
                   EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
              FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid JOIN pg_class ct ON ct.oid = i.indrelid
              JOIN pg_namespace n ON n.oid = ci.relnamespace
             WHERE {USER_SCHEMAS} AND {NOT_EXTENSION.format(oid='ct.oid')}"""):
        catalog.indexes[f"{schema}.{index}"] = {"table": f"{schema}.{table}", "definition": definition,
                                                "constraint": backs_constraint}
    for schema, table, name, kind, definition in await _rows(conn, f"""
            SELECT n.nspname, c.relname, con.conname, con.contype::text, pg_get_constraintdef(con.oid)
              FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_SCHEMAS} AND {NOT_EXTENSION.format(oid='c.oid')}"""):
        catalog.constraints[f"{schema}.{table}.{name}"] = {"table": f"{schema}.{table}", "type": kind,
                                                           "definition": definition}
    catalog.functions = sorted(f"{schema}.{name}" for schema, name in await _rows(conn, f"""
            SELECT n.nspname, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
              FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE {USER_SCHEMAS} AND {NOT_EXTENSION.format(oid='p.oid')}"""))
    for schema, name, last_value in await _rows(conn, f"""
            SELECT s.schemaname, s.sequencename, s.last_value FROM pg_sequences s
              JOIN pg_namespace n ON n.nspname = s.schemaname WHERE {USER_SCHEMAS}"""):
        catalog.sequences[f"{schema}.{name}"] = last_value
    if contents:
        await count_and_checksum(conn, catalog)
    return catalog


async def stable_session(conn: psycopg.AsyncConnection) -> None:
    for statement in STABLE_SESSION:
        await conn.execute(statement)


def count_and_checksum_query(table: sql.Composable) -> sql.Composed:
    """One pass over a table: its rows and the sum of hashtext(row::text), in a stable session.
    The manifest stores it; the full rollback's verification computes the same to compare."""
    return sql.SQL("SELECT count(*), coalesce(sum(hashtext(t::text)::bigint), 0) FROM {} AS t").format(table)


def checksum_text(rows: int, total: int) -> str:
    return f"{rows}:{total}"


async def count_and_checksum(conn: psycopg.AsyncConnection, catalog: Catalog, names: list[str] | None = None) -> None:
    """Fill rows and checksum for the tables (all by default)."""
    await stable_session(conn)
    for name in names or list(catalog.tables):
        rows, total = await (await conn.execute(count_and_checksum_query(qualified(name)))).fetchone()
        catalog.tables[name].rows, catalog.tables[name].checksum = rows, checksum_text(rows, total)
