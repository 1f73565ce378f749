"""Foreign keys read from the catalog (composite keys included, nothing hard-coded), and the SQL
that finds their orphans under MATCH SIMPLE semantics: a row with a NULL in its key references
nothing and is not an orphan. Used by the diagnosis and by the quarantine remedy."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

# System schemas, and the bot's own (rollback_quarantine, rollback_shadow_…), are left out.
_USER_SCHEMA = ("{n}.nspname <> 'information_schema' AND {n}.nspname NOT LIKE 'pg\\_%%' "
                "AND {n}.nspname NOT LIKE 'rollback\\_%%'")

FOREIGN_KEYS_SQL = f"""
SELECT cn.nspname, cl.relname, con.conname, fn.nspname, fl.relname, con.convalidated,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(num, ord)
               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord),
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(num, ord)
               JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.ord),
       ARRAY(SELECT a.attname::text FROM pg_constraint pk
               CROSS JOIN LATERAL unnest(pk.conkey) WITH ORDINALITY AS k(num, ord)
               JOIN pg_attribute a ON a.attrelid = pk.conrelid AND a.attnum = k.num
              WHERE pk.conrelid = con.conrelid AND pk.contype = 'p' ORDER BY k.ord)
  FROM pg_constraint con
  JOIN pg_class cl ON cl.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = cl.relnamespace
  JOIN pg_class fl ON fl.oid = con.confrelid JOIN pg_namespace fn ON fn.oid = fl.relnamespace
 WHERE con.contype = 'f' AND con.conparentid = 0
   AND {_USER_SCHEMA.format(n='cn')} AND {_USER_SCHEMA.format(n='fn')}
 ORDER BY 1, 2, 3"""


@dataclass(frozen=True)
class ForeignKey:
    schema: str
    table: str
    constraint_name: str
    parent_schema: str
    parent_table: str
    validated: bool
    columns: list[str]
    parent_columns: list[str]
    primary_key: list[str]  # the child's; empty when it has none

    @property
    def name(self) -> str:
        """"schema.table.constraint": how findings, buttons and the quarantine name it."""
        return f"{self.schema}.{self.table}.{self.constraint_name}"

    @property
    def child(self) -> tuple[str, str]:
        return self.schema, self.table

    @property
    def parent(self) -> tuple[str, str]:
        return self.parent_schema, self.parent_table

    def orphan_condition(self, alias: str = "t") -> sql.Composable:
        """True for rows of the child (aliased `alias`) whose key is complete and has no parent row."""
        complete = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier(alias, c)) for c in self.columns)
        match = sql.SQL(" AND ").join(sql.SQL("p.{} = {}").format(sql.Identifier(pc), sql.Identifier(alias, cc))
                                      for cc, pc in zip(self.columns, self.parent_columns, strict=True))
        return sql.SQL("({} AND NOT EXISTS (SELECT 1 FROM {} AS p WHERE {}))").format(
            complete, sql.Identifier(*self.parent), match)


async def foreign_keys(conn: psycopg.AsyncConnection) -> list[ForeignKey]:
    cursor = await conn.execute(FOREIGN_KEYS_SQL)
    return [ForeignKey(*row) for row in await cursor.fetchall()]


async def foreign_key(conn: psycopg.AsyncConnection, name: str) -> ForeignKey | None:
    return next((fk for fk in await foreign_keys(conn) if fk.name == name), None)
