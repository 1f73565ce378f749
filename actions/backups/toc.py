"""The table of contents of a custom-format dump, as `pg_restore --list` prints it.

A line looks like `3221; 2606 16399 CONSTRAINT public customers customers_pkey postgres`: dump id,
catalog ids, object kind (which may contain spaces), schema (`-` when none), tag, owner. The tag
of a constraint or trigger is "<table> <name>", which pg_dump does not quote, so entries are
compared by tag with the catalog of the restored copy, never split further.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Every object kind pg_dump writes; longest first so "TABLE DATA" is not read as "TABLE".
KINDS = sorted([
    "ACCESS METHOD", "ACL", "AGGREGATE", "BLOB", "BLOB METADATA", "BLOBS", "CAST", "CHECK CONSTRAINT",
    "COLLATION", "COMMENT", "CONSTRAINT", "CONVERSION", "DATABASE", "DATABASE PROPERTIES", "DEFAULT",
    "DEFAULT ACL", "DOMAIN", "ENCODING", "EVENT TRIGGER", "EXTENSION", "FK CONSTRAINT",
    "FOREIGN DATA WRAPPER", "FOREIGN TABLE", "FUNCTION", "INDEX", "INDEX ATTACH", "LARGE OBJECT",
    "MATERIALIZED VIEW", "MATERIALIZED VIEW DATA", "OPERATOR", "OPERATOR CLASS", "OPERATOR FAMILY",
    "POLICY", "PROCEDURAL LANGUAGE", "PROCEDURE", "PUBLICATION", "PUBLICATION TABLE",
    "PUBLICATION TABLES IN SCHEMA", "ROW SECURITY", "RULE", "SCHEMA", "SEARCHPATH", "SECURITY LABEL",
    "SEQUENCE", "SEQUENCE OWNED BY", "SEQUENCE SET", "SERVER", "SHELL TYPE", "STATISTICS", "STDSTRINGS",
    "SUBSCRIPTION", "TABLE", "TABLE ATTACH", "TABLE DATA", "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY", "TEXT SEARCH PARSER", "TEXT SEARCH TEMPLATE", "TRANSFORM", "TRIGGER", "TYPE",
    "USER MAPPING", "VIEW",
], key=len, reverse=True)

# The kinds whose presence in the restored copy is checked against the catalog (verify.py).
VERIFIED_KINDS = ("SCHEMA", "TABLE", "VIEW", "MATERIALIZED VIEW", "SEQUENCE", "INDEX", "CONSTRAINT",
                  "FK CONSTRAINT", "TRIGGER", "FUNCTION", "PROCEDURE")

_LINE = re.compile(r"^(\d+); (\d+) (\d+) (.+)$")
_HEADER = re.compile(r"^;\s+([A-Za-z][A-Za-z ]*?):\s*(.*)$")


@dataclass(frozen=True)
class TocEntry:
    dump_id: int
    kind: str
    schema: str | None
    tag: str
    owner: str | None


@dataclass(frozen=True)
class Toc:
    entries: tuple[TocEntry, ...]
    header: dict[str, str] = field(default_factory=dict)

    def of(self, *kinds: str) -> list[TocEntry]:
        return [e for e in self.entries if e.kind in kinds]

    @property
    def source_database(self) -> str | None:
        return self.header.get("dbname")

    @property
    def server_version(self) -> str | None:
        return self.header.get("Dumped from database version")


def parse_toc(text: str) -> Toc:
    """Parse `pg_restore --list` output. Unknown kinds are kept with the whole rest as tag."""
    entries: list[TocEntry] = []
    header: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith(";"):
            if line.startswith("; Archive created at "):
                header["Archive created at"] = line.removeprefix("; Archive created at ").strip()
                continue
            match = _HEADER.match(line)
            if match:
                header[match.group(1).strip()] = match.group(2).strip()
            continue
        match = _LINE.match(line)
        if not match:
            continue
        rest = match.group(4)
        kind = next((k for k in KINDS if rest == k or rest.startswith(k + " ")), None)
        if kind is None:
            entries.append(TocEntry(int(match.group(1)), "?", None, rest, None))
            continue
        words = rest[len(kind):].strip().split(" ")
        schema = None if words[0] == "-" else words[0]
        owner = words[-1] if len(words) >= 3 else None
        tag = " ".join(words[1:-1] if len(words) >= 3 else words[1:])
        entries.append(TocEntry(int(match.group(1)), kind, schema, tag, owner))
    return Toc(tuple(entries), header)
