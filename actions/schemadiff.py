"""What changed between a backup and the live database: the preview of every partial rollback."""

from __future__ import annotations

from dataclasses import dataclass, field

from actions.catalog import Catalog


@dataclass(frozen=True)
class ColumnChange:
    table: str
    column: str
    backup_type: str | None  # None: the backup does not have it
    live_type: str | None  # None: live does not have it


@dataclass(frozen=True)
class SchemaDiff:
    views_added: list[str] = field(default_factory=list)
    views_dropped: list[str] = field(default_factory=list)
    views_changed: list[str] = field(default_factory=list)
    indexes_added: list[str] = field(default_factory=list)
    indexes_dropped: list[str] = field(default_factory=list)
    indexes_changed: list[str] = field(default_factory=list)
    functions_added: list[str] = field(default_factory=list)
    functions_dropped: list[str] = field(default_factory=list)
    tables_added: list[str] = field(default_factory=list)
    tables_dropped: list[str] = field(default_factory=list)
    columns_dropped: list[ColumnChange] = field(default_factory=list)
    columns_added: list[ColumnChange] = field(default_factory=list)
    columns_retyped: list[ColumnChange] = field(default_factory=list)
    constraints_added: list[str] = field(default_factory=list)
    constraints_dropped: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(getattr(self, name) for name in self.__dataclass_fields__)

    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in self.__dataclass_fields__ if getattr(self, name)}


def _added_dropped(live: set[str], backup: set[str]) -> tuple[list[str], list[str]]:
    return sorted(live - backup), sorted(backup - live)


def compare(live: Catalog, backup: Catalog) -> SchemaDiff:
    """Changes from `backup` to `live` ("added" = live has it, the backup does not)."""
    views_added, views_dropped = _added_dropped(set(live.views), set(backup.views))
    indexes_added, indexes_dropped = _added_dropped(set(live.indexes), set(backup.indexes))
    functions_added, functions_dropped = _added_dropped(set(live.functions), set(backup.functions))
    tables_added, tables_dropped = _added_dropped(set(live.tables), set(backup.tables))
    constraints_added, constraints_dropped = _added_dropped(set(live.constraints), set(backup.constraints))
    dropped, added, retyped = [], [], []
    for name in sorted(set(live.tables) & set(backup.tables)):
        live_columns = {c.name: c for c in live.tables[name].columns}
        for column in backup.tables[name].columns:
            if column.name not in live_columns:
                dropped.append(ColumnChange(name, column.name, column.type, None))
            elif live_columns[column.name].type != column.type:
                retyped.append(ColumnChange(name, column.name, column.type, live_columns[column.name].type))
        backup_names = {c.name for c in backup.tables[name].columns}
        added += [ColumnChange(name, c.name, None, c.type) for c in live.tables[name].columns if c.name not in backup_names]
    return SchemaDiff(
        views_added=views_added, views_dropped=views_dropped,
        views_changed=sorted(v for v in set(live.views) & set(backup.views) if live.views[v] != backup.views[v]),
        indexes_added=indexes_added, indexes_dropped=indexes_dropped,
        indexes_changed=sorted(i for i in set(live.indexes) & set(backup.indexes)
                               if live.indexes[i]["definition"] != backup.indexes[i]["definition"]),
        functions_added=functions_added, functions_dropped=functions_dropped,
        tables_added=tables_added, tables_dropped=tables_dropped,
        columns_dropped=dropped, columns_added=added, columns_retyped=retyped,
        constraints_added=constraints_added, constraints_dropped=constraints_dropped,
    )
