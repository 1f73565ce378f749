"""The database side of `/rollback tables`: catalog reads, the scratch restore, sums, orphan queries.

Everything here reads. Every identifier goes
through `psycopg.sql`; type names and expressions come from `format_type`/`pg_get_expr` of a
catalog (SQL text, like `columns_rollback` uses), read with `search_path = pg_catalog` so that
they are schema-qualified and mean the same thing in every database.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from actions.backups.files import BackupFile
from actions.engine.plan import RunContext
from actions.plans import partial
from actions.postgres import server as pg
from actions.postgres.catalog import stable_session

ALIAS = sql.Identifier("_rb")  # the row alias in sums and comparisons (a column may be called "t")


# -- the run's names --------------------------------------------------------------------------------

def run_suffix(ctx: RunContext) -> str:
    """Per run, not per incident: a second table rollback in the same incident gets its own schemas."""
    return ctx.run.id.lower().replace("-", "_")  # INC-20261124-0001-R2 -> inc_20261124_0001_r2


def shadow_schema(ctx: RunContext) -> str:
    return f"rollback_shadow_{run_suffix(ctx)}"


def replaced_schema(ctx: RunContext) -> str:
    return f"rollback_replaced_{run_suffix(ctx)}"


def stored_name(table: str) -> str:
    """A table's name inside the shadow and replaced schemas: public.x -> x, other.x -> other__x."""
    schema, name = split(table)
    return name if schema == "public" else f"{schema}__{name}"


def in_schema(schema: str, table: str) -> sql.Identifier:
    return sql.Identifier(schema, stored_name(table))


def backup_of(ctx: RunContext) -> BackupFile:
    return partial.backup_of(ctx).file()


def backup_columns(ctx: RunContext, table: str) -> list[str]:
    """The backup's columns in the backup's order: the row text compared with the shadow's."""
    return [c["name"] for c in ctx.facts["specs"][table]["columns"]]


# -- reading --------------------------------------------------------------------------------------

def split(name: str) -> tuple[str, str]:
    schema, _, table = name.partition(".")
    return schema, table


def ident(name: str) -> sql.Identifier:
    return sql.Identifier(*split(name))


def live_rel(name: str, partitioned: bool = False) -> sql.Composable:
    """A live table's own rows: `ONLY` (inheritance children are other tables), except a
    partitioned table, whose rows are all in its partitions."""
    return ident(name) if partitioned else sql.SQL("ONLY {}").format(ident(name))


def cols(names: list[str], prefix: str | None = None) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(prefix, n) if prefix else sql.Identifier(n) for n in names)


def row_text(columns: list[str] | None) -> sql.Composable:
    """The text of a row: the whole row, or a ROW() of `columns` (same text as the whole row when
    they are all its columns, in order)."""
    if columns is None:
        return sql.SQL("({}.*)::text").format(ALIAS)
    return sql.SQL("ROW({})::text").format(cols(columns, "_rb"))


async def prepare(conn: psycopg.AsyncConnection) -> None:
    """Fixed output formats (stable sums) and qualified type and function names."""
    await stable_session(conn)
    await conn.execute("SET search_path = pg_catalog")


async def sums(conn: psycopg.AsyncConnection, relation: sql.Composable, columns: list[str] | None = None) -> str:
    """`rows:sum of hashtext(row text)`, the manifest's checksum formula."""
    rows, total = await (await conn.execute(sql.SQL(
        "SELECT count(*), coalesce(sum(hashtext({})::bigint), 0) FROM {} AS {}").format(
        row_text(columns), relation, ALIAS))).fetchone()
    return f"{rows}:{total}"


async def differences(conn: psycopg.AsyncConnection, a: sql.Composable, b: sql.Composable,
                      columns: list[str]) -> tuple[int, int]:
    """Rows of `a` not in `b` and of `b` not in `a`, comparing the text of `columns`, duplicates counted."""
    one = sql.SQL("SELECT {} FROM {} AS {}").format(row_text(columns), a, ALIAS)
    other = sql.SQL("SELECT {} FROM {} AS {}").format(row_text(columns), b, ALIAS)
    return tuple(await (await conn.execute(sql.SQL(
        "SELECT (SELECT count(*) FROM ({} EXCEPT ALL {}) x), (SELECT count(*) FROM ({} EXCEPT ALL {}) y)").format(
        one, other, other, one))).fetchone())


async def table_columns(conn: psycopg.AsyncConnection, name: str) -> list[dict[str, Any]]:
    """Columns in order: name, type, default (or generation expression), not_null, identity, generated."""
    schema, table = split(name)
    rows = await (await conn.execute("""
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid), a.attnotnull,
               a.attidentity::text, a.attgenerated::text
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum""", (schema, table))).fetchall()
    return [{"name": n, "type": t, "default": d, "not_null": nn, "identity": i, "generated": g}
            for n, t, d, nn, i, g in rows]


async def table_shape(conn: psycopg.AsyncConnection, name: str) -> dict[str, Any] | None:
    """Kind, partitioning and inheritance of a live table, and its triggers and rules (None: no such table)."""
    schema, table = split(name)
    row = await (await conn.execute("""
        SELECT c.oid, c.relkind::text, c.relispartition,
               EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid OR i.inhparent = c.oid)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s""",
        (schema, table))).fetchone()
    if row is None:
        return None
    oid, kind, partition, inherits = row
    triggers = await (await conn.execute(
        "SELECT tgname, tgenabled::text FROM pg_trigger WHERE tgrelid = %s AND NOT tgisinternal UNION ALL "
        "SELECT 'rule ' || rulename, ev_enabled::text FROM pg_rewrite WHERE ev_class = %s AND rulename <> '_RETURN' "
        "ORDER BY 1", (oid, oid))).fetchall()
    return {"kind": kind, "partition": partition, "inherits": inherits, "triggers": [list(t) for t in triggers]}


async def foreign_keys(conn: psycopg.AsyncConnection, tables: list[str]) -> list[dict[str, Any]]:
    """Every foreign key from or to one of `tables` (inherited copies on partitions left out)."""
    rows = await (await conn.execute("""
        SELECT con.conname, cn.nspname || '.' || c.relname, c.relkind = 'p', pn.nspname || '.' || p.relname,
               p.relkind = 'p',
               ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, pos)
                       JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.pos),
               ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, pos)
                       JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.pos),
               con.convalidated, con.confdeltype::text
          FROM pg_constraint con
          JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
          JOIN pg_class p ON p.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
         WHERE con.contype = 'f' AND con.conparentid = 0
           AND (cn.nspname || '.' || c.relname = ANY(%(t)s) OR pn.nspname || '.' || p.relname = ANY(%(t)s))
         ORDER BY 2, 1""", {"t": tables})).fetchall()
    return [{"name": name, "child": child, "child_partitioned": cp, "parent": parent, "parent_partitioned": pp,
             "child_cols": list(cc), "parent_cols": list(pc), "validated": valid, "on_delete": on_delete}
            for name, child, cp, parent, pp, cc, pc, valid, on_delete in rows]


def fk_label(fk: dict[str, Any]) -> str:
    return (f"{fk['child']}({', '.join(fk['child_cols'])}) → {fk['parent']}({', '.join(fk['parent_cols'])}) "
            f"[{fk['name']}]")


async def orphans(conn: psycopg.AsyncConnection, fk: dict[str, Any], child: sql.Composable, parent: sql.Composable,
                  had_parent: sql.Composable | None = None) -> tuple[int, list[str]]:
    """Rows of `child` whose key (all of it non-null: MATCH SIMPLE and FULL alike) has no row in
    `parent`, and — for a NOT VALID key, which may already have orphans — had one in `had_parent`.
    Returns the count and up to five of the missing key values."""
    child_cols = [sql.Identifier("c", n) for n in fk["child_cols"]]
    match = sql.SQL(" AND ").join(sql.SQL("{} = {}").format(sql.Identifier("p", p), c)
                                  for p, c in zip(fk["parent_cols"], child_cols, strict=True))
    conditions = [sql.SQL("{} IS NOT NULL").format(c) for c in child_cols]
    conditions.append(sql.SQL("NOT EXISTS (SELECT 1 FROM {} AS p WHERE {})").format(parent, match))
    if had_parent is not None:
        conditions.append(sql.SQL("EXISTS (SELECT 1 FROM {} AS p WHERE {})").format(had_parent, match))
    key = child_cols[0] if len(child_cols) == 1 else sql.SQL("ROW({})").format(sql.SQL(", ").join(child_cols))
    count, sample = await (await conn.execute(sql.SQL(
        "SELECT count(*), (array_agg(DISTINCT ({})::text))[1:5] FROM {} AS c WHERE {}").format(
        key, child, sql.SQL(" AND ").join(conditions)))).fetchone()
    return count, list(sample or [])


async def check_violations(conn: psycopg.AsyncConnection, live_name: str, relation: sql.Composable
                           ) -> tuple[list[str], list[str]]:
    """The live table's CHECK constraints evaluated on `relation` (the backup's rows).

    Returns (violations as "name: n row(s)", constraints that could not be evaluated here — they
    name a column the backup lacks; the swap's own transaction enforces them)."""
    schema, table = split(live_name)
    checks = await (await conn.execute("""
        SELECT con.conname, pg_get_expr(con.conbin, con.conrelid) FROM pg_constraint con
          JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %s AND c.relname = %s AND con.contype = 'c' ORDER BY 1""", (schema, table))).fetchall()
    violations, unchecked = [], []
    for name, expression in checks:
        try:
            bad = await pg.scalar(conn, sql.SQL("SELECT count(*) FROM {} WHERE NOT ({})").format(
                relation, sql.SQL(expression)))
        except psycopg.Error:
            unchecked.append(name)
            continue
        if bad:
            violations.append(f"{name}: {bad:,} row(s)")
    return violations, unchecked


async def unusable_definition(conn: psycopg.AsyncConnection, column: dict[str, Any]) -> str | None:
    """Why a column the backup has cannot be added live as it was (its type or default names something
    the live database lacks), or None. EXPLAIN parses and plans without running: no nextval happens."""
    try:
        await conn.execute(sql.SQL("EXPLAIN SELECT {}::{}").format(
            sql.SQL(column["default"]) if column["default"] else sql.NULL, sql.SQL(column["type"])))
    except psycopg.Error as exc:
        return str(exc).splitlines()[0]
    return None


async def owned_sequences(conn: psycopg.AsyncConnection, name: str) -> list[tuple[str, str]]:
    """(column, "schema.sequence") for every column with an owned sequence (serial or identity)."""
    schema, table = split(name)
    rows = await (await conn.execute("""
        SELECT a.attname, sn.nspname || '.' || s.relname
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          JOIN pg_depend d ON d.refobjid = c.oid AND d.refobjsubid = a.attnum AND d.classid = 'pg_class'::regclass
                          AND d.deptype IN ('a', 'i')
          JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_namespace sn ON sn.oid = s.relnamespace
         WHERE n.nspname = %s AND c.relname = %s ORDER BY a.attnum""", (schema, table))).fetchall()
    return [(column, sequence) for column, sequence in rows]


async def raise_sequence(conn: psycopg.AsyncConnection, table: sql.Composable, column: str, sequence: str) -> int | None:
    """Set `sequence` to the column's max when that is above its current value; never lower it.
    Returns the new value, or None when it was left alone. (setval is not transactional: the
    swap calls this last, and it only ever raises.)"""
    top = await pg.scalar(conn, sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(column), table))
    if top is None:
        return None
    last, called = await (await conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
        ident(sequence)))).fetchone()
    if top < last or (top == last and called):
        return None
    await conn.execute("SELECT setval(%s::regclass, %s, true)", (ident(sequence).as_string(conn), top))
    return int(top)
