"""A database's user schema described as data — the one catalog reader of the bot.

Tables (with columns, primary keys, partitioning and inheritance, row level security), views and
materialized views, indexes (a partition's index knows the partitioned index it belongs to),
constraints, triggers, policies, functions, sequences and who owns them, enum and domain types,
extensions, schemas and grants; and, when asked, per-table row counts and content checksums that
count every row once (a partitioned table holds no rows of its own: its partitions do).

Backups carry it as their manifest; the schema diff, the previews, the verification and every
plan read it. Objects of extensions and of the bot's own `rollback_*` schemas are left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from actions.postgres import catalog_queries as q

# 2: partitions, triggers, policies, types, extensions, schemas, grants; rows counted once.
FORMAT = 2
# Fixed output formats, so a row's text (and its checksum) does not depend on session settings.
STABLE_SESSION = ("SET TimeZone = 'UTC'", "SET DateStyle = 'ISO, YMD'", "SET IntervalStyle = 'postgres'",
                  "SET extra_float_digits = 3", "SET bytea_output = 'hex'")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool
    default: str | None  # the default, or for a generated column its expression
    identity: str = ""  # "a": GENERATED ALWAYS AS IDENTITY, "d": BY DEFAULT
    generated: str = ""  # "s": GENERATED ALWAYS AS (…) STORED
    collation: str | None = None  # only when not the type's own

    def describe(self) -> str:
        """The column as a definition would say it, for diffs and previews."""
        parts = [self.type]
        if self.collation:
            parts.append(f"COLLATE {self.collation}")
        if not self.nullable:
            parts.append("NOT NULL")
        if self.identity:
            parts.append(f"GENERATED {'ALWAYS' if self.identity == 'a' else 'BY DEFAULT'} AS IDENTITY")
        if self.default is not None:
            parts.append(f"GENERATED ALWAYS AS ({self.default}) STORED" if self.generated else f"DEFAULT {self.default}")
        return " ".join(parts)


@dataclass
class Table:
    columns: list[Column]
    primary_key: list[str] | None
    rows: int | None = None  # its own rows (None for a partitioned table: its partitions hold them)
    checksum: str | None = None  # count and sum of hashtext(row::text), as text
    kind: str = "r"  # "r" a table, "p" a partitioned table
    partition_of: str | None = None  # the partitioned table it is a partition of
    bound: str | None = None  # as a partition: "FOR VALUES FROM (…) TO (…)" or "DEFAULT"
    partition_key: str | None = None  # as a partitioned table: "RANGE (payment_date)"
    inherits: list[str] = field(default_factory=list)  # parents by plain (non-partition) inheritance
    row_security: str = ""  # "", "enabled" or "enabled, forced"

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def partitioned(self) -> bool:
        return self.kind == "p"


@dataclass
class Catalog:
    tables: dict[str, Table] = field(default_factory=dict)  # "schema.table"
    views: dict[str, str] = field(default_factory=dict)  # "schema.view" -> definition (materialized too)
    materialized: list[str] = field(default_factory=list)  # the views above that are materialized
    # "schema.index" -> table, definition, constraint (backs one), parent (the partitioned index it is
    # attached to), partitioned (it is one)
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)
    # "schema.table.name" -> table, type, definition, inherited (a partition's copy of its parent's)
    constraints: dict[str, dict[str, Any]] = field(default_factory=dict)
    triggers: dict[str, dict[str, Any]] = field(default_factory=dict)  # "schema.table.name" -> table, definition, enabled, inherited
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)  # "schema.table.name" -> table, definition
    functions: dict[str, str | None] = field(default_factory=dict)  # "schema.name(args)" -> md5 of its definition
    sequences: dict[str, int | None] = field(default_factory=dict)  # "schema.sequence" -> last_value
    sequence_owners: dict[str, str | None] = field(default_factory=dict)  # "schema.sequence" -> "schema.table.column"
    types: dict[str, dict[str, Any]] = field(default_factory=dict)  # "schema.type" -> kind, labels / domain detail
    extensions: dict[str, str] = field(default_factory=dict)  # name -> version
    schemas: list[str] = field(default_factory=list)
    grants: dict[str, list[str]] | None = field(default_factory=dict)  # "TABLE schema.x" -> ["PUBLIC:SELECT"]; None: unknown
    server_version: str = ""
    format: int = FORMAT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Catalog:
        """Also reads format 1 (tables, views, indexes, constraints, functions and sequences only)."""
        tables = {name: Table([Column(**c) for c in t["columns"]], t["primary_key"], t.get("rows"), t.get("checksum"),
                              **{k: t[k] for k in ("kind", "partition_of", "bound", "partition_key", "inherits",
                                                   "row_security") if k in t})
                  for name, t in data["tables"].items()}
        functions = data["functions"]
        if isinstance(functions, list):
            functions = dict.fromkeys(functions)
        simple = {k: data[k] for k in ("materialized", "triggers", "policies", "sequence_owners", "types", "extensions",
                                       "schemas", "grants") if k in data}
        return cls(tables=tables, views=data["views"], indexes=data["indexes"], constraints=data["constraints"],
                   functions=functions, sequences=data["sequences"], server_version=data.get("server_version", ""),
                   format=data.get("format", 1), **simple)

    # -- partitions ----------------------------------------------------------------------------

    def partitions(self, parent: str) -> list[str]:
        """The direct partitions of `parent`, by name."""
        return sorted(name for name, t in self.tables.items() if t.partition_of == parent)

    def leaves(self, name: str) -> list[str]:
        """The tables that hold the rows of `name`: itself, or for a partitioned table every leaf
        partition under it (sub-partitions followed)."""
        table = self.tables[name]
        if not table.partitioned:
            return [name]
        return [leaf for child in self.partitions(name) for leaf in self.leaves(child)]

    def root(self, name: str) -> str:
        """The top of the partition tree `name` belongs to (itself when it is not a partition)."""
        while self.tables[name].partition_of in self.tables:
            name = self.tables[name].partition_of
        return name

    @property
    def total_rows(self) -> int:
        """Every row once: partitioned tables hold none of their own."""
        return sum(t.rows or 0 for t in self.tables.values())

    def top_level_indexes(self) -> dict[str, dict[str, Any]]:
        """Indexes that are objects of their own: a partition's index attached to a partitioned
        index is part of it (dropping the partitioned index drops it)."""
        return {name: i for name, i in self.indexes.items() if not i.get("parent")}


def qualified(name: str) -> sql.Identifier:
    """"schema.table" -> a quoted, schema-qualified identifier."""
    schema, _, table = name.partition(".")
    return sql.Identifier(schema, table)


async def _rows(conn: psycopg.AsyncConnection, query: str) -> list[tuple]:
    return await (await conn.execute(query)).fetchall()


async def describe(conn: psycopg.AsyncConnection, *, contents: bool = False) -> Catalog:
    """The catalog of the database behind `conn`; with `contents`, row counts and checksums too.

    Read with fixed output settings and `search_path = pg_catalog` (names come out qualified);
    the connection's search_path is put back afterwards."""
    await stable_session(conn)
    search_path = (await _rows(conn, "SELECT current_setting('search_path')"))[0][0]
    await conn.execute("SELECT set_config('search_path', 'pg_catalog', false)")
    try:
        return await _describe(conn, contents)
    finally:
        await conn.execute("SELECT set_config('search_path', %s, false)", (search_path,))


async def _describe(conn: psycopg.AsyncConnection, contents: bool) -> Catalog:
    catalog = Catalog(server_version=(await _rows(conn, "SHOW server_version"))[0][0].split(" ")[0])
    for (schema, table, kind, parent, bound, key, inherits, rls, column, type_, nullable, default, identity,
         generated, collation) in await _rows(conn, q.TABLES):
        name = f"{schema}.{table}"
        if name not in catalog.tables:
            catalog.tables[name] = Table([], None, kind=kind, partition_of=parent, bound=bound, partition_key=key,
                                         inherits=list(inherits or []), row_security=rls)
        if column is not None:
            catalog.tables[name].columns.append(Column(column, type_, nullable, default, identity, generated, collation))
    for name, keys in await _rows(conn, q.PRIMARY_KEYS):
        if name in catalog.tables:
            catalog.tables[name].primary_key = list(keys)
    for name, definition, materialized in await _rows(conn, q.VIEWS):
        catalog.views[name] = definition
        if materialized:
            catalog.materialized.append(name)
    for name, table, definition, backs_constraint, parent, partitioned in await _rows(conn, q.INDEXES):
        catalog.indexes[name] = {"table": table, "definition": definition, "constraint": backs_constraint,
                                 "parent": parent, "partitioned": partitioned}
    for table, name, kind, definition, inherited in await _rows(conn, q.CONSTRAINTS):
        catalog.constraints[f"{table}.{name}"] = {"table": table, "type": kind, "definition": definition,
                                                  "inherited": inherited}
    for table, name, definition, enabled, inherited in await _rows(conn, q.TRIGGERS):
        catalog.triggers[f"{table}.{name}"] = {"table": table, "definition": definition, "enabled": enabled,
                                               "inherited": inherited}
    for table, name, definition in await _rows(conn, q.POLICIES):
        catalog.policies[f"{table}.{name}"] = {"table": table, "definition": definition}
    catalog.functions = {name: digest for name, digest in await _rows(conn, q.FUNCTIONS)}
    for name, last_value, owner in await _rows(conn, q.SEQUENCES):
        catalog.sequences[name] = last_value
        catalog.sequence_owners[name] = owner
    for name, kind, detail in await _rows(conn, q.TYPES):
        catalog.types[name] = {"kind": kind, **detail}
    catalog.extensions = {name: version for name, version in await _rows(conn, q.EXTENSIONS)}
    catalog.schemas = [name for (name,) in await _rows(conn, q.SCHEMAS)]
    catalog.grants = {name: list(privileges) for name, privileges in await _rows(conn, q.GRANTS)}
    if contents:
        await count_and_checksum(conn, catalog)
    return catalog


async def stable_session(conn: psycopg.AsyncConnection) -> None:
    for statement in STABLE_SESSION:
        await conn.execute(statement)


def count_and_checksum_query(table: sql.Composable, *, own_rows: bool = True) -> sql.Composed:
    """One pass over a table: its rows and the sum of hashtext(row::text), in a stable session.
    The manifest stores it; the full rollback's verification computes the same to compare.
    `own_rows` reads the table's own rows only (`FROM ONLY`): a parent by plain inheritance does
    not count its children's rows again (format-1 manifests counted them)."""
    return sql.SQL("SELECT count(*), coalesce(sum(hashtext(t::text)::bigint), 0) FROM {}{} AS t").format(
        sql.SQL("ONLY " if own_rows else ""), table)


def checksum_text(rows: int, total: int) -> str:
    return f"{rows}:{total}"


async def count_and_checksum(conn: psycopg.AsyncConnection, catalog: Catalog, names: list[str] | None = None) -> None:
    """Fill rows and checksum for the tables that hold rows (all by default); a partitioned table
    has none of its own and is left None."""
    await stable_session(conn)
    for name in names or list(catalog.tables):
        if catalog.tables[name].partitioned:
            continue
        rows, total = await (await conn.execute(count_and_checksum_query(qualified(name)))).fetchone()
        catalog.tables[name].rows, catalog.tables[name].checksum = rows, checksum_text(rows, total)
