"""What depends on what, read from `pg_depend`: the order in which views, materialized views and
indexes can be dropped without CASCADE, and what would stop them.

Dropping objects in name order fails as soon as one view is built on another. Here the order
comes from the catalog: a view whose query reads a target is dropped before it (and listed),
objects PostgreSQL drops along with a target (a materialized view's indexes, the partitions'
indexes of a partitioned index, a view's INSTEAD OF triggers) are listed, and anything else that
depends on a target — a function using a view's row type, a foreign key using a unique index —
blocks the drop: it would need CASCADE, and nothing goes that the preview did not list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

KINDS = {"v": "VIEW", "m": "MATERIALIZED VIEW", "i": "INDEX", "I": "INDEX", "r": "TABLE", "p": "TABLE"}

_RELATIONS = """
SELECT c.oid, n.nspname || '.' || c.relname, c.relkind::text, c.reltype,
       (SELECT pn.nspname || '.' || p.relname FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent
          JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE h.inhrelid = c.oid AND c.relkind IN ('i', 'I')),
       coalesce((SELECT x.indisreplident FROM pg_index x WHERE x.indexrelid = c.oid), false)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = ANY(%s)"""

# Objects that depend on the given relations or on their row types. A view's query is its
# _RETURN rule: a dependent rule is reported as the view (or materialized view) it belongs to.
_DEPENDENTS = """
SELECT DISTINCT coalesce(t.typrelid, d.refobjid), d.deptype::text,
       CASE WHEN r.rulename = '_RETURN' THEN r.ev_class END, pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_depend d
  LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
  LEFT JOIN pg_type t ON d.refclassid = 'pg_type'::regclass AND t.oid = d.refobjid
 WHERE ((d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY(%(relations)s))
        OR (d.refclassid = 'pg_type'::regclass AND d.refobjid = ANY(%(types)s)))
   AND d.deptype IN ('n', 'a', 'P', 'S')
   AND NOT (d.classid = 'pg_rewrite'::regclass AND r.ev_class = coalesce(t.typrelid, d.refobjid))
 ORDER BY 4"""


@dataclass(frozen=True)
class DropPlan:
    order: list[str]  # every relation to drop, each before whatever it is built on
    kinds: dict[str, str]  # name -> "VIEW", "MATERIALIZED VIEW" or "INDEX"
    dependents: list[str]  # views not asked for that are built on the targets: dropped too, listed
    with_them: list[str] = field(default_factory=list)  # what PostgreSQL drops along with them
    blocking: list[str] = field(default_factory=list)  # what would need CASCADE, and why
    not_own: list[str] = field(default_factory=list)  # targets that are part of another object


async def _oids(conn: psycopg.AsyncConnection, names: list[str]) -> list[int]:
    rows = await (await conn.execute(
        "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname || '.' || c.relname = ANY(%s)", (names,))).fetchall()
    return [row[0] for row in rows]


async def drop_plan(conn: psycopg.AsyncConnection, targets: list[str]) -> DropPlan:
    """How to drop `targets` ("schema.name" of views, materialized views or indexes) without CASCADE."""
    info: dict[int, tuple] = {}  # oid -> (name, relkind, rowtype, parent index, replica identity)
    depends_on: dict[int, set[int]] = {}  # oid -> oids in the set it is built on
    dependents: list[int] = []
    with_them, blocking = [], []
    frontier = await _oids(conn, targets)
    while frontier:
        for oid, name, kind, rowtype, parent, replica in await (await conn.execute(_RELATIONS, (frontier,))).fetchall():
            info[oid] = (name, kind, rowtype, parent, replica)
        rows = await (await conn.execute(_DEPENDENTS, {
            "relations": frontier, "types": [info[o][2] for o in frontier if info[o][2]]})).fetchall()
        frontier = []
        for referenced, deptype, view, description in rows:
            if deptype in ("a", "P", "S"):  # goes with it: listed, never blocking
                if description not in with_them:
                    with_them.append(description)
            elif view is not None:  # a view's query reads it: drop that view first
                depends_on.setdefault(view, set()).add(referenced)
                if view not in info and view not in frontier:
                    frontier.append(view)
                    dependents.append(view)
            else:
                blocking.append(f"{description} depends on {info[referenced][0]}")
    not_own = [f"{name} is part of the partitioned index {parent}: it goes when {parent} is dropped"
               for name, _, _, parent, _ in info.values() if parent]
    blocking += [f"{name} is the replica identity of its table (logical replication and triggers rely on it)"
                 for name, _, _, _, replica in info.values() if replica]
    names = {oid: values[0] for oid, values in info.items()}
    return DropPlan(order=[names[o] for o in _dependents_first(set(info), depends_on, names)],
                    kinds={values[0]: KINDS[values[1]] for values in info.values()},
                    dependents=[names[o] for o in dependents], with_them=with_them, blocking=blocking, not_own=not_own)


def _dependents_first(nodes: set[int], depends_on: dict[int, set[int]], names: dict[int, str]) -> list[int]:
    """A topological order in which nothing is dropped while something in the set still reads
    it; ties in name order, so the same catalog always gives the same order."""
    order, left = [], set(nodes)
    while left:
        free = sorted((o for o in left if not any(o in depends_on.get(other, ()) for other in left if other != o)),
                      key=lambda o: names[o])
        if not free:  # a cycle cannot happen between views; stop rather than loop
            raise ValueError(f"circular dependencies among {', '.join(sorted(names[o] for o in left))}")
        order.append(free[0])
        left.remove(free[0])
    return order


def drop_statement(kind: str, name: str) -> sql.Composed:
    schema, _, relation = name.partition(".")
    return sql.SQL("DROP {} {}").format(sql.SQL(kind), sql.Identifier(schema, relation))
