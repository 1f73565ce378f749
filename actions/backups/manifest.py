"""The manifest written beside a backup: what the dump holds, to check a restore against.

`<env>_full_backup.dump` gets `<env>_full_backup.manifest.json`: the server version, the catalog
(`actions/catalog.py`: tables and partitions, columns, views, indexes, constraints, triggers,
policies, functions, sequences, types, extensions, schemas, grants), and per table that holds rows
the row count and a content checksum, all read in the snapshot pg_dump dumped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from actions.postgres.catalog import Catalog

FORMAT = 2  # 2: the catalog of format 2 (actions/catalog.py); format 1 is still read
READABLE = (1, 2)


@dataclass(frozen=True)
class Manifest:
    created: datetime
    database: str
    dump: str  # the dump's file name
    dump_bytes: int
    catalog: Catalog


def manifest_path(dump: Path) -> Path:
    return dump.with_name(dump.name.removesuffix(".dump") + ".manifest.json")


def write_manifest(dump: Path, manifest: Manifest) -> Path:
    path = manifest_path(dump)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({
        "format": FORMAT, "created": manifest.created.isoformat(), "database": manifest.database,
        "dump": manifest.dump, "dump_bytes": manifest.dump_bytes, "catalog": manifest.catalog.to_json(),
    }, indent=1, sort_keys=True), encoding="utf-8")
    partial.rename(path)  # a manifest is there whole or not at all
    return path


def load_manifest(dump: Path) -> Manifest | None:
    """The dump's manifest, or None without one. A manifest for another file or size is ignored."""
    path = manifest_path(dump)
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") not in READABLE or data.get("dump") != dump.name or data.get("dump_bytes") != dump.stat().st_size:
        return None
    return Manifest(datetime.fromisoformat(data["created"]), data["database"], data["dump"], data["dump_bytes"],
                    Catalog.from_json(data["catalog"]))
