"""The schema diff (`/rollback diff`) and a taken backup (`/rollback backup`), for people."""

from __future__ import annotations

from messages.blocks import SlackMessage, context, section

LABELS = (
    ("views_added", "Views added since the backup"), ("views_dropped", "Views the backup has, live lacks"),
    ("views_changed", "Views whose definition changed"), ("indexes_added", "Indexes added since the backup"),
    ("indexes_dropped", "Indexes the backup has, live lacks"), ("indexes_changed", "Indexes whose definition changed"),
    ("functions_added", "Functions added"), ("functions_dropped", "Functions dropped"),
    ("tables_added", "Tables added"), ("tables_dropped", "Tables dropped"),
    ("columns_dropped", "Columns dropped"), ("columns_retyped", "Columns whose type changed"),
    ("columns_added", "Columns added"), ("constraints_added", "Constraints added"),
    ("constraints_dropped", "Constraints dropped"),
)
FIXES = {"views_added": "/rollback views", "indexes_added": "/rollback indexes", "columns_dropped": "/rollback columns"}


def _item(entry) -> str:
    if isinstance(entry, dict):  # a column change
        types = (f"{entry['backup_type']} → {entry['live_type']}" if entry["backup_type"] and entry["live_type"]
                 else entry["backup_type"] or entry["live_type"])
        return f"`{entry['table']}.{entry['column']}` {types}"
    return f"`{entry}`"


def schema_diff(environment: str, database: str, backup: str, source: str, diff: dict) -> SlackMessage:
    """`diff` is SchemaDiff as a dict (dataclasses.asdict)."""
    head = f"*Schema diff of `{environment}`* ({database}) against the backup {backup}, read from its {source}"
    sections = []
    for key, label in LABELS:
        entries = diff.get(key) or []
        if entries:
            shown = ", ".join(_item(e) for e in entries[:25]) + (f" and {len(entries) - 25} more" if len(entries) > 25 else "")
            fix = f" — `{FIXES[key]} {environment}`" if key in FIXES else ""
            sections.append(f"*{label}* ({len(entries)}){fix}\n{shown}")
    if not sections:
        sections = ["No difference: the live schema equals the backup's."]
    blocks = [section(head)] + [section(s) for s in sections[:40]] + [context("Read-only: nothing was changed.")]
    return SlackMessage("\n".join([head, *sections]).replace("*", ""), blocks)


def backup_taken(environment: str, path: str, size: str, seconds: float, tables: int, rows: int,
                 beyond: list[str], keep: int) -> SlackMessage:
    text = (f"✅ Backup of `{environment}` written in {seconds:.1f} s: `{path}` ({size}), with a manifest of "
            f"{tables} tables and {rows:,} rows (counts and content checksums).")
    notes = []
    if beyond:
        notes.append(f"{len(beyond)} older backup(s) beyond keep_backups={keep}, kept (nothing is deleted without an "
                     "approved step): " + ", ".join(f"`{b}`" for b in beyond[:10]))
    return SlackMessage(" ".join([text, *notes]), [section(text)] + [context(n) for n in notes])
