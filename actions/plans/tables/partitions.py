"""`/rollback tables` on a partitioned table: the table and all its partitions, as one unit.

Naming a partitioned table restores its rows in every partition, in the swap's one transaction,
with the same foreign-key checks and kept rows as a plain table. The rows live in the leaf
partitions, so each backup leaf is replaced like a table of its own — directly, so every row
lands in the partition the backup had it in (PostgreSQL checks the partition's bound on it).

The live partition layout may have drifted from the backup's:
- a partition the migration dropped is created again (`CREATE TABLE … PARTITION OF … FOR VALUES`
  with the backup's bound: it gets the parent's columns, indexes, keys and triggers);
- a partition the migration detached — a table of its own now — is re-attached with the backup's
  bound, after its rows are replaced (its live rows are kept like any other);
- a partition the backup lacks stays, emptied: the backup has no rows for it (its rows are kept);
- anything else (another bound, attached elsewhere, a sub-partitioned level missing, columns the
  backup has and live lacks) is refused before the approval, with the reason.
A partition named alone is refused: name its partitioned table.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from actions.plans.tables import sql as q
from actions.postgres.catalog import Catalog


def plan_unit(name: str, backup: Catalog, live: Catalog, problems: list[str]) -> dict[str, Any] | None:
    """How the partitioned table `name` comes back, or None after adding to `problems` why it cannot."""
    before, now = backup.tables[name], live.tables.get(name)
    if now is None or not now.partitioned:
        problems.append(f"{name} is partitioned in the backup but " + ("not in the live database" if now is None
                        else "a plain table live") + ": its layout changed; `/rollback full` brings it back")
        return None
    if now.partition_key != before.partition_key:
        problems.append(f"{name} is partitioned by {now.partition_key} live but {before.partition_key} in the backup")
        return None
    unit: dict[str, Any] = {"name": name, "leaves": backup.leaves(name), "create": [], "attach": [], "live_only": [],
                            "parents": [], "own_objects": [], "layout": {}}
    start = len(problems)
    for child in _subtree(backup, name):
        then, current = backup.tables[child], live.tables.get(child)
        if then.partitioned:
            unit["parents"].append(child)
            if child != name and (current is None or current.partition_of != then.partition_of
                                  or current.bound != then.bound or not current.partitioned):
                problems.append(f"{child}, a sub-partitioned level of {name} ({then.bound}), is not the same live: "
                                "`/rollback full` brings it back")
            continue
        where = {"name": child, "parent": then.partition_of, "bound": then.bound}
        unit["layout"][child] = where
        if current is None:
            unit["create"].append(where)
            unit["own_objects"] += _own_objects(backup, child)
        elif current.partition_of == then.partition_of and current.bound == then.bound:
            continue
        elif current.partition_of is None and not current.partitioned and not current.inherits:
            unit["attach"].append(where)
        else:
            problems.append(f"{child} was a partition of {then.partition_of} {then.bound} in the backup; live it is "
                            + (f"a partition of {current.partition_of} {current.bound}" if current.partition_of
                               else "partitioned itself" if current.partitioned else "part of an inheritance tree")
                            + ": move it back by hand or use `/rollback full`")
    unit["live_only"] = [leaf for leaf in live.leaves(name) if leaf not in unit["leaves"]]
    return unit if len(problems) == start else None


def _subtree(catalog: Catalog, name: str) -> list[str]:
    """`name` and everything partitioned under it, parents before their partitions."""
    return [name, *(n for child in catalog.partitions(name) for n in _subtree(catalog, child))]


def _own_objects(backup: Catalog, partition: str) -> list[str]:
    """What the backup's partition had of its own, which re-creating it from its parent does not bring."""
    own = [f"index {n}" for n, i in backup.indexes.items() if i["table"] == partition and not i.get("parent")]
    own += [f"constraint {n}" for n, c in backup.constraints.items()
            if c["table"] == partition and not c.get("inherited") and c["type"] != "f"]
    own += [f"trigger {n}" for n, t in backup.triggers.items() if t["table"] == partition and not t.get("inherited")]
    own += [f"grants on {partition}"] if backup.grants and backup.grants.get(f"TABLE {partition}") else []
    return own


def create_statement(where: dict[str, str]) -> sql.Composed:
    # The bound is catalog text (pg_get_expr, read in UTC with qualified names), like a type name.
    return sql.SQL("CREATE TABLE {} PARTITION OF {} {}").format(q.ident(where["name"]), q.ident(where["parent"]),
                                                                 sql.SQL(where["bound"]))


def attach_statement(where: dict[str, str]) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(q.ident(where["parent"]), q.ident(where["name"]),
                                                                    sql.SQL(where["bound"]))


async def owner_like_parent(conn: psycopg.AsyncConnection, where: dict[str, str]) -> None:
    """A re-created partition belongs to whoever owns its parent, not to the bot's role."""
    owner = await (await conn.execute(
        "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass",
        (q.ident(where["parent"]).as_string(conn),))).fetchone()
    await conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(q.ident(where["name"]), sql.Identifier(owner[0])))


async def bound_violations(conn: psycopg.AsyncConnection, leaf: str, relation: sql.Composable) -> int:
    """Rows of `relation` that the live partition `leaf`'s bound would refuse (a partition the backup
    lacks may now hold a range the backup kept in its default partition)."""
    expression = await (await conn.execute("SELECT pg_get_partition_constraintdef(%s::regclass)",
                                           (q.ident(leaf).as_string(conn),))).fetchone()
    if expression is None or expression[0] is None:
        return 0
    cursor = await conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE ({}) IS NOT TRUE").format(
        relation, sql.SQL(expression[0])))
    return (await cursor.fetchone())[0]


async def layout_problems(conn: psycopg.AsyncConnection, units: list[dict[str, Any]]) -> list[str]:
    """Every backup leaf of the units is a partition of the table the backup had it in, with the
    backup's bound (read live, in the session settings the catalog reader uses)."""
    problems = []
    for unit in units:
        for leaf, where in unit["layout"].items():
            row = await (await conn.execute("""
                SELECT (SELECT pn.nspname || '.' || p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                          JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid AND c.relispartition),
                       pg_get_expr(c.relpartbound, c.oid)
                  FROM pg_class c WHERE c.oid = to_regclass(%s)""", (q.ident(leaf).as_string(conn),))).fetchone()
            if row is None or tuple(row) != (where["parent"], where["bound"]):
                problems.append(f"{leaf} is not a partition of {where['parent']} {where['bound']}")
    return problems
