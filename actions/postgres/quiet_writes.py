"""Writing rows so that nothing of the user's turns the write into something the preview did not say.

A rollback that fills or replaces rows must not fire the tables' own triggers (a `last_update`
stamp would rewrite a restored column, an audit trigger would log rows that were only put back),
their rules (an `ON UPDATE DO INSTEAD` rule would run other SQL), or be filtered by row level
security (policies would decide silently which rows the write reaches).

`quiet(conn, tables)` runs inside the caller's transaction:
- every enabled user trigger and rule of the tables, and of all their partitions, is switched off
  with `ALTER TABLE ONLY … DISABLE TRIGGER/RULE`; the lock this takes keeps other sessions out,
  so only this transaction writes without them;
- `row_security = off`, so a policy that would apply raises an error instead of filtering;
- before the caller commits, each is switched back to exactly its mode (`ENABLE`, `ENABLE ALWAYS`,
  `ENABLE REPLICA`), and the catalog is read again to prove it.

Foreign-key checks are PostgreSQL's internal triggers and stay on. Event triggers (DDL) are listed
for the preview by `event_triggers`: they cannot be switched off for one transaction.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

import psycopg
from psycopg import sql

MODES = {"O": "ENABLE", "A": "ENABLE ALWAYS", "R": "ENABLE REPLICA"}

# The tables and every partition under them, parents first; their enabled triggers and rules.
_SWITCHES = """
WITH RECURSIVE tree(oid, depth) AS (
    SELECT c.oid, 0 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname || '.' || c.relname = ANY(%s)
    UNION
    SELECT i.inhrelid, t.depth + 1 FROM pg_inherits i JOIN tree t ON i.inhparent = t.oid
      JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relispartition
)
SELECT n.nspname, c.relname, 'TRIGGER', tg.tgname, tg.tgenabled::text, min(t.depth)
  FROM tree t JOIN pg_class c ON c.oid = t.oid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_trigger tg ON tg.tgrelid = c.oid AND NOT tg.tgisinternal AND tg.tgenabled <> 'D'
 GROUP BY 1, 2, 3, 4, 5
UNION ALL
SELECT n.nspname, c.relname, 'RULE', r.rulename, r.ev_enabled::text, min(t.depth)
  FROM tree t JOIN pg_class c ON c.oid = t.oid JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_rewrite r ON r.ev_class = c.oid AND r.rulename <> '_RETURN' AND r.ev_enabled <> 'D'
 GROUP BY 1, 2, 3, 4, 5
 ORDER BY 6, 1, 2, 3, 4"""

# Row level security that would apply to this role on these tables (superusers and BYPASSRLS
# roles are never subject to it; a table's owner only when it is FORCEd).
_RLS_APPLIES = """
SELECT n.nspname || '.' || c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname || '.' || c.relname = ANY(%s) AND c.relrowsecurity
   AND (c.relforcerowsecurity OR NOT pg_has_role(current_user, c.relowner, 'MEMBER'))
   AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
 ORDER BY 1"""


@dataclass(frozen=True)
class Switch:
    """A trigger or rule that is on: switched off for the write, then back to `mode`."""

    schema: str
    table: str
    kind: str  # TRIGGER or RULE
    name: str
    mode: str  # O (on), A (always), R (replica)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.table}: {self.kind.lower()} {self.name}"

    def statement(self, action: str) -> sql.Composed:
        return sql.SQL("ALTER TABLE ONLY {} {} {} {}").format(
            sql.Identifier(self.schema, self.table), sql.SQL(action), sql.SQL(self.kind), sql.Identifier(self.name))


async def switches(conn: psycopg.AsyncConnection, tables: list[str]) -> list[Switch]:
    """The enabled user triggers and rules of `tables` ("schema.table") and of their partitions."""
    rows = await (await conn.execute(_SWITCHES, (tables,))).fetchall()
    return [Switch(schema, table, kind, name, mode) for schema, table, kind, name, mode, _ in rows]


async def row_security_applies(conn: psycopg.AsyncConnection, tables: list[str]) -> list[str]:
    """The tables whose row level security policies would filter this role's writes."""
    return [row[0] for row in await (await conn.execute(_RLS_APPLIES, (tables,))).fetchall()]


async def event_triggers(conn: psycopg.AsyncConnection) -> list[str]:
    """Enabled event triggers: they see the DDL a rollback runs (ALTER TABLE …)."""
    rows = await (await conn.execute(
        "SELECT evtname || ' (' || evtevent || ')' FROM pg_event_trigger WHERE evtenabled <> 'D' ORDER BY 1")).fetchall()
    return [row[0] for row in rows]


@asynccontextmanager
async def quiet(conn: psycopg.AsyncConnection, tables: list[str]) -> AsyncIterator[list[Switch]]:
    """Inside the caller's transaction: the tables' triggers and rules off, row security unable to
    filter; yields what was switched off. Everything is switched back before the caller's commit
    (an exception skips that: the rollback of the transaction puts them back)."""
    found = await switches(conn, tables)
    await conn.execute("SET LOCAL row_security = off")
    for switch in found:  # parents first: switching a parent may reach its partitions, each is set after
        await conn.execute(switch.statement("DISABLE"))
    yield found
    for switch in found:
        await conn.execute(switch.statement(MODES[switch.mode]))
    after = await switches(conn, tables)
    if sorted(after, key=str) != sorted(found, key=str):
        raise RuntimeError("the tables' triggers and rules could not be switched back exactly as they were: "
                           f"before {[s.label + ' ' + s.mode for s in found]}, after {[s.label + ' ' + s.mode for s in after]}")
