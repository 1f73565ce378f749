"""What changed between a backup and the live database: `/rollback diff` and the preview of every
partial rollback.

Every kind of object the catalog reader knows is compared: schemas, extensions, types (enum
labels, domains and their constraints), tables and partitions, columns (type, nullability,
default, identity, generated), row level security, views, indexes, constraints, triggers,
policies, functions, sequences and who owns them, and grants.

A partition's index, constraint or trigger that it only has because its partitioned table has
it is part of that object, not one of its own: adding an index to a table partitioned into 55
partitions is one index added. Objects of a table that was added or dropped are told with the
table, not one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actions.postgres.catalog import Catalog, Table


@dataclass(frozen=True)
class ColumnChange:
    table: str
    column: str
    backup_type: str | None  # None: the backup does not have it
    live_type: str | None  # None: live does not have it


@dataclass(frozen=True)
class SchemaDiff:
    schemas_added: list[str] = field(default_factory=list)
    schemas_dropped: list[str] = field(default_factory=list)
    extensions_added: list[str] = field(default_factory=list)
    extensions_dropped: list[str] = field(default_factory=list)
    extensions_changed: list[str] = field(default_factory=list)
    types_added: list[str] = field(default_factory=list)
    types_dropped: list[str] = field(default_factory=list)
    enum_labels_added: list[str] = field(default_factory=list)
    enum_labels_removed: list[str] = field(default_factory=list)
    types_changed: list[str] = field(default_factory=list)  # domains (base, NOT NULL, default, constraints), …
    tables_added: list[str] = field(default_factory=list)
    tables_dropped: list[str] = field(default_factory=list)
    partitions_detached: list[str] = field(default_factory=list)  # "public.p_01 of public.p FOR VALUES …: dropped"
    partitions_attached: list[str] = field(default_factory=list)
    columns_dropped: list[ColumnChange] = field(default_factory=list)
    columns_added: list[ColumnChange] = field(default_factory=list)
    columns_retyped: list[ColumnChange] = field(default_factory=list)
    columns_changed: list[str] = field(default_factory=list)  # nullability, default, identity, generated, collation
    row_security_changed: list[str] = field(default_factory=list)
    views_added: list[str] = field(default_factory=list)
    views_dropped: list[str] = field(default_factory=list)
    views_changed: list[str] = field(default_factory=list)
    indexes_added: list[str] = field(default_factory=list)
    indexes_dropped: list[str] = field(default_factory=list)
    indexes_changed: list[str] = field(default_factory=list)
    constraints_added: list[str] = field(default_factory=list)
    constraints_dropped: list[str] = field(default_factory=list)
    constraints_changed: list[str] = field(default_factory=list)
    triggers_added: list[str] = field(default_factory=list)
    triggers_dropped: list[str] = field(default_factory=list)
    triggers_changed: list[str] = field(default_factory=list)  # definition, or enabled/disabled
    policies_added: list[str] = field(default_factory=list)
    policies_dropped: list[str] = field(default_factory=list)
    policies_changed: list[str] = field(default_factory=list)
    functions_added: list[str] = field(default_factory=list)
    functions_dropped: list[str] = field(default_factory=list)
    functions_changed: list[str] = field(default_factory=list)
    sequences_added: list[str] = field(default_factory=list)
    sequences_dropped: list[str] = field(default_factory=list)
    sequence_owners_changed: list[str] = field(default_factory=list)
    grants_changed: list[str] = field(default_factory=list)  # "TABLE public.film: -PUBLIC:SELECT"
    notes: list[str] = field(default_factory=list)  # what could not be compared, and why

    @property
    def changes(self) -> dict[str, list]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "notes"}

    @property
    def empty(self) -> bool:
        return not any(self.changes.values())

    def counts(self) -> dict[str, int]:
        return {name: len(entries) for name, entries in self.changes.items() if entries}


def _added_dropped(live: set[str], backup: set[str]) -> tuple[list[str], list[str]]:
    return sorted(live - backup), sorted(backup - live)


def _changed(live: dict[str, Any], backup: dict[str, Any]) -> list[str]:
    return sorted(name for name in set(live) & set(backup) if live[name] != backup[name])


def _own_objects(live: dict[str, dict], backup: dict[str, dict], tables_in_both: set[str],
                 compared: tuple[str, ...]) -> tuple[list[str], list[str], list[str]]:
    """Added, dropped and changed among objects that belong to a table (indexes, constraints,
    triggers, policies): only those of tables in both catalogs, and only objects of their own
    (a partition's inherited copy is part of its parent's)."""
    def own(objects: dict[str, dict]) -> dict[str, dict]:
        return {n: o for n, o in objects.items()
                if o["table"] in tables_in_both and not o.get("inherited") and not o.get("parent")}

    mine, theirs = own(live), own(backup)
    added = sorted(n for n in mine if n not in backup)
    dropped = sorted(n for n in theirs if n not in live)
    changed = sorted(n for n in set(mine) & set(theirs) if any(mine[n].get(k) != theirs[n].get(k) for k in compared))
    return added, dropped, changed


def _attached_alike(one: Table | None, other: Table | None) -> bool:
    return one is not None and other is not None and (one.partition_of, one.bound) == (other.partition_of, other.bound)


def _fate(now: Table | None) -> str:
    """What became of a partition of the backup that live no longer has where it was."""
    if now is None:
        return "dropped"
    return "detached, now a table of its own" if now.partition_of is None else f"now a partition of {now.partition_of} {now.bound}"


def _partitions(live: Catalog, backup: Catalog) -> tuple[list[str], list[str]]:
    detached = [f"{name} of {then.partition_of} {then.bound}: {_fate(live.tables.get(name))}"
                for name, then in sorted(backup.tables.items())
                if then.partition_of and not _attached_alike(then, live.tables.get(name))]
    # A partition moved from one place to another is told once, above.
    attached = [f"{name} of {now.partition_of} {now.bound}: {'new' if before is None else 'was a table of its own'}"
                for name, now in sorted(live.tables.items()) for before in [backup.tables.get(name)]
                if now.partition_of and not _attached_alike(now, before) and (before is None or not before.partition_of)]
    return detached, attached


def _columns(live: Catalog, backup: Catalog, both: list[str]):
    dropped, added, retyped, changed = [], [], [], []
    for name in both:
        if live.tables[name].partition_of and backup.tables[name].partition_of:
            continue  # a partition's columns are its parent's
        live_columns = {c.name: c for c in live.tables[name].columns}
        for column in backup.tables[name].columns:
            now = live_columns.get(column.name)
            if now is None:
                dropped.append(ColumnChange(name, column.name, column.type, None))
            elif now.type != column.type:
                retyped.append(ColumnChange(name, column.name, column.type, now.type))
            elif now != column:
                changed.append(f"{name}.{column.name}: {column.describe()} → {now.describe()}")
        backup_names = {c.name for c in backup.tables[name].columns}
        added += [ColumnChange(name, c.name, None, c.type) for c in live.tables[name].columns if c.name not in backup_names]
    return dropped, added, retyped, changed


def _types(live: Catalog, backup: Catalog) -> tuple[list[str], list[str], list[str]]:
    labels_added, labels_removed, changed = [], [], []
    for name in sorted(set(live.types) & set(backup.types)):
        now, then = live.types[name], backup.types[name]
        if now == then:
            continue
        if now["kind"] == then["kind"] == "enum":
            new = [label for label in now["labels"] if label not in then["labels"]]
            gone = [label for label in then["labels"] if label not in now["labels"]]
            labels_added += [f"{name}: '{label}'" for label in new]
            labels_removed += [f"{name}: '{label}'" for label in gone]
            if not new and not gone:
                changed.append(f"{name}: labels reordered ({', '.join(now['labels'])})")
        elif now["kind"] == then["kind"] == "domain":
            parts = [f"{key} {then[key]} → {now[key]}" for key in ("base", "not_null", "default") if now[key] != then[key]]
            for constraint in sorted(set(now["constraints"]) | set(then["constraints"])):
                before, after = then["constraints"].get(constraint), now["constraints"].get(constraint)
                if before != after:
                    parts.append(f"constraint {constraint} {before or '(none)'} → {after or '(dropped)'}")
            changed.append(f"{name}: {'; '.join(parts)}")
        else:
            changed.append(f"{name} ({then['kind']} → {now['kind']})")
    return labels_added, labels_removed, changed


GRANT_KINDS = ("MATERIALIZED VIEW ", "FOREIGN TABLE ", "TABLE ", "VIEW ", "SEQUENCE ", "SCHEMA ", "FUNCTION ",
               "PROCEDURE ", "TYPE ")


def granted_object(key: str) -> str:
    """"FUNCTION public.f(a integer)" -> "public.f(a integer)"."""
    return next((key.removeprefix(kind) for kind in GRANT_KINDS if key.startswith(kind)), key)


def _grants(live: Catalog, backup: Catalog, present: set[str]) -> list[str]:
    changed = []
    for thing in sorted(set(live.grants) | set(backup.grants)):
        if granted_object(thing) not in present:
            continue  # the object itself was added or dropped
        now, then = set(live.grants.get(thing, [])), set(backup.grants.get(thing, []))
        if now != then:
            changed.append(f"{thing}: " + ", ".join([f"+{g}" for g in sorted(now - then)] + [f"-{g}" for g in sorted(then - now)]))
    return changed


def _objects(catalog: Catalog) -> set[str]:
    """Names of objects that can carry grants, as the grants query writes them after the kind."""
    return {*catalog.tables, *catalog.views, *catalog.sequences, *catalog.functions, *catalog.types, *catalog.schemas}


def compare(live: Catalog, backup: Catalog) -> SchemaDiff:
    """Changes from `backup` to `live` ("added" = live has it, the backup does not)."""
    plain = lambda c: {n for n, t in c.tables.items() if t.partition_of is None}  # noqa: E731
    tables_added, tables_dropped = _added_dropped(plain(live), plain(backup))
    tables_added = [t for t in tables_added if t not in backup.tables]  # a former partition is told as detached
    tables_dropped = [t for t in tables_dropped if t not in live.tables]
    both = sorted(set(live.tables) & set(backup.tables))
    in_both = set(both) | (set(live.views) & set(backup.views))  # a materialized view has indexes too
    detached, attached = _partitions(live, backup)
    columns_dropped, columns_added, columns_retyped, columns_changed = _columns(live, backup, both)
    indexes = _own_objects(live.indexes, backup.indexes, in_both, ("definition",))
    constraints = _own_objects(live.constraints, backup.constraints, in_both, ("definition",))
    triggers = _own_objects(live.triggers, backup.triggers, in_both, ("definition", "enabled"))
    policies = _own_objects(live.policies, backup.policies, in_both, ("definition",))
    labels_added, labels_removed, types_changed = _types(live, backup)
    sequences_added, sequences_dropped = _added_dropped(set(live.sequences), set(backup.sequences))
    owners = [f"{s}: owned by {backup.sequence_owners.get(s) or 'nothing'} → {live.sequence_owners.get(s) or 'nothing'}"
              for s in _changed(live.sequence_owners, backup.sequence_owners)]
    functions_added, functions_dropped = _added_dropped(set(live.functions), set(backup.functions))
    notes = []
    if live.grants is None or backup.grants is None:
        notes.append("grants were not compared: the backup's could not be read (a role it names does not exist here)")
        grants = []
    else:
        grants = _grants(live, backup, _objects(live) & _objects(backup))
    extensions_added, extensions_dropped = _added_dropped(set(live.extensions), set(backup.extensions))
    return SchemaDiff(
        schemas_added=sorted(set(live.schemas) - set(backup.schemas)),
        schemas_dropped=sorted(set(backup.schemas) - set(live.schemas)),
        extensions_added=extensions_added, extensions_dropped=extensions_dropped,
        extensions_changed=[f"{e} {backup.extensions[e]} → {live.extensions[e]}"
                            for e in _changed(live.extensions, backup.extensions)],
        types_added=sorted(set(live.types) - set(backup.types)), types_dropped=sorted(set(backup.types) - set(live.types)),
        enum_labels_added=labels_added, enum_labels_removed=labels_removed, types_changed=types_changed,
        tables_added=tables_added, tables_dropped=tables_dropped,
        partitions_detached=detached, partitions_attached=attached,
        columns_dropped=columns_dropped, columns_added=columns_added, columns_retyped=columns_retyped,
        columns_changed=columns_changed,
        row_security_changed=[f"{t}: {backup.tables[t].row_security or 'off'} → {live.tables[t].row_security or 'off'}"
                              for t in both if live.tables[t].row_security != backup.tables[t].row_security],
        views_added=sorted(set(live.views) - set(backup.views)), views_dropped=sorted(set(backup.views) - set(live.views)),
        views_changed=_changed(live.views, backup.views),
        indexes_added=indexes[0], indexes_dropped=indexes[1], indexes_changed=indexes[2],
        constraints_added=constraints[0], constraints_dropped=constraints[1], constraints_changed=constraints[2],
        triggers_added=triggers[0], triggers_dropped=triggers[1], triggers_changed=triggers[2],
        policies_added=policies[0], policies_dropped=policies[1], policies_changed=policies[2],
        functions_added=functions_added, functions_dropped=functions_dropped,
        functions_changed=[f for f in _changed(live.functions, backup.functions)
                           if live.functions[f] is not None and backup.functions[f] is not None],
        sequences_added=sequences_added, sequences_dropped=sequences_dropped, sequence_owners_changed=owners,
        grants_changed=grants, notes=notes,
    )
