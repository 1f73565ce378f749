"""The schema diff (`/rollback diff`) and a taken backup (`/rollback backup`), for people."""

from __future__ import annotations

from messages.blocks import SlackMessage, context, section
from readable import duration

# Each family of changes is one section: (title, ((field, label), …)).
FAMILIES = (
    ("Schemas and extensions", (("schemas_added", "Schemas added"), ("schemas_dropped", "Schemas dropped"),
                                ("extensions_added", "Extensions added"), ("extensions_dropped", "Extensions removed"),
                                ("extensions_changed", "Extensions updated"))),
    ("Types", (("types_added", "Types added"), ("types_dropped", "Types dropped"),
               ("enum_labels_added", "Enum labels added"), ("enum_labels_removed", "Enum labels removed"),
               ("types_changed", "Types changed (domains: base type, NOT NULL, default, constraints)"))),
    ("Tables", (("tables_added", "Tables added"), ("tables_dropped", "Tables dropped"),
                ("partitions_detached", "Partitions the backup has that live no longer has attached"),
                ("partitions_attached", "Partitions attached since the backup"),
                ("row_security_changed", "Row level security changed"))),
    ("Columns", (("columns_dropped", "Columns dropped"), ("columns_retyped", "Columns whose type changed"),
                 ("columns_added", "Columns added"),
                 ("columns_changed", "Columns changed (NOT NULL, default, identity, generated)"))),
    ("Views", (("views_added", "Views added since the backup"), ("views_dropped", "Views the backup has, live lacks"),
               ("views_changed", "Views whose definition changed"))),
    ("Indexes", (("indexes_added", "Indexes added since the backup"),
                 ("indexes_dropped", "Indexes the backup has, live lacks"),
                 ("indexes_changed", "Indexes whose definition changed"))),
    ("Constraints", (("constraints_added", "Constraints added"), ("constraints_dropped", "Constraints dropped"),
                     ("constraints_changed", "Constraints changed"))),
    ("Triggers", (("triggers_added", "Triggers added"), ("triggers_dropped", "Triggers dropped"),
                  ("triggers_changed", "Triggers changed or switched on/off"))),
    ("Policies", (("policies_added", "Policies added"), ("policies_dropped", "Policies dropped"),
                  ("policies_changed", "Policies changed"))),
    ("Functions", (("functions_added", "Functions added"), ("functions_dropped", "Functions dropped"),
                   ("functions_changed", "Functions whose definition changed"))),
    ("Sequences", (("sequences_added", "Sequences added"), ("sequences_dropped", "Sequences dropped"),
                   ("sequence_owners_changed", "Sequences owned by another column"))),
    ("Grants", (("grants_changed", "Grants changed (+ granted since the backup, − revoked)"),)),
)
FIXES = {"views_added": "/rollback views", "indexes_added": "/rollback indexes", "columns_dropped": "/rollback columns"}
SHOWN = 25  # entries listed per kind; the count says how many there are


def _item(entry) -> str:
    if isinstance(entry, dict):  # a column change
        types = (f"{entry['backup_type']} → {entry['live_type']}" if entry["backup_type"] and entry["live_type"]
                 else entry["backup_type"] or entry["live_type"])
        return f"`{entry['table']}.{entry['column']}` {types}"
    return f"`{entry}`"


def _line(environment: str, key: str, label: str, entries: list) -> str:
    shown = ", ".join(_item(e) for e in entries[:SHOWN]) + (f" and {len(entries) - SHOWN} more" if len(entries) > SHOWN else "")
    fix = f" — `{FIXES[key]} {environment}`" if key in FIXES else ""
    return f"*{label}* ({len(entries)}){fix}\n{shown}"


def schema_diff(environment: str, database: str, backup: str, source: str, diff: dict) -> SlackMessage:
    """`diff` is SchemaDiff as a dict (dataclasses.asdict). One section per family of changes."""
    head = f"*Schema diff of `{environment}`* ({database}) against the backup {backup}, read from its {source}"
    sections = []
    for title, kinds in FAMILIES:
        lines = [_line(environment, key, label, diff[key]) for key, label in kinds if diff.get(key)]
        if lines:
            sections.append("\n".join([f"_{title}_", *lines]))
    if not sections:
        sections = ["No difference: the live schema equals the backup's."]
    notes = [*diff.get("notes", []), "Read-only: nothing was changed. What no partial verb undoes, `/rollback full "
             f"{environment}` does."]
    blocks = [section(head)] + [section(s) for s in sections] + [context(*notes)]
    return SlackMessage("\n".join([head, *sections, *notes]).replace("*", ""), blocks)


def backup_taken(environment: str, path: str, size: str, seconds: float, tables: int, rows: int,
                 beyond: list[str], keep: int) -> SlackMessage:
    text = (f"✅ Backup of `{environment}` written in {duration(seconds)}: `{path}` ({size}), with a manifest of "
            f"{tables} tables and {rows:,} rows (counts and content checksums).")
    notes = []
    if beyond:
        notes.append(f"{len(beyond)} older backup(s) beyond keep_backups={keep}, kept (nothing is deleted without an "
                     "approved step): " + ", ".join(f"`{b}`" for b in beyond[:10]))
    return SlackMessage(" ".join([text, *notes]), [section(text)] + [context(n) for n in notes])
