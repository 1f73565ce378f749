"""The facts about a run that more than one part reads, typed.

A run's facts are one JSON object in the store: each step adds what later steps (and a restart)
need. Most keys are a plan's own business. These are not: the backup a run uses (the preview, the
approval's binding, the report and the RESOLVED message read it), the databases a full rollback
names, the prepared copy it uses, where its swap stands, and whether the run stopped the application. They are read only
through `RunFacts` and written only through `facts_update`, so their shape is declared once.

Runs recorded before these models (flat keys: `backup_path`, `swapped`, …) are read too.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

import readable
from actions.backups.files import BackupFile


class BackupRef(BaseModel):
    """The backup file a run restores or reads, as found when the run began."""

    model_config = ConfigDict(frozen=True)

    path: str
    created: datetime  # the file's modification time (the runbook's `ls -t`)
    size: int
    sha256: str | None = None  # the dump's content hash, once read (an approval is bound to it)
    identity: list[int] | None = None  # backups.files.file_identity when it was hashed

    @classmethod
    def of(cls, backup: BackupFile, *, sha256: str | None = None, identity: list[int] | None = None) -> BackupRef:
        return cls(path=str(backup.path), created=backup.created, size=backup.size, sha256=sha256, identity=identity)

    def file(self) -> BackupFile:
        return BackupFile(Path(self.path), self.created, self.size)

    def describe(self) -> str:
        return f"{self.path} (created {self.created:%Y-%m-%d %H:%M:%S} UTC, {readable.size(self.size)})"


class Databases(BaseModel):
    """The names a full rollback uses beside the live database."""

    model_config = ConfigDict(frozen=True)

    live: str
    aside: str  # the restored copy: <db>__rollback_<incident>
    keep_as: str  # the failed database, kept: <db>__failed_<incident>


class PreparedRef(BaseModel):
    """The prepared copy a full rollback swaps in instead of restoring (`/rollback prepare`)."""

    model_config = ConfigDict(frozen=True)

    id: str
    database: str
    ready_at: datetime  # when it was verified and closed
    restore_seconds: float | None = None  # what its restore took, at prepare time (the time this run saves)


class Swap(StrEnum):
    """Where a run's swap stands (the full rollback's renames, the table rollback's transaction)."""

    NOT_DONE = "not done"  # live has not been swapped: untouched by this run
    UNDER_WAY = "under way"  # begun, and not known to have ended either way
    DONE = "done"
    UNKNOWN = "unknown"  # after a failure or a crash the server could not be asked


class RunFacts(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    args: list[str] = []
    backup: BackupRef | None = None
    databases: Databases | None = None
    prepared: PreparedRef | None = None  # the full rollback swaps this prepared copy in: nothing is restored
    writes_after: dict[str, Any] | None = None  # after the swap: rows written after the backup (postgres/writes_after)
    writes_line: str | None = None  # the RESOLVED message's data line, once they are counted
    swap: Swap = Swap.NOT_DONE
    app_stopped: bool = False  # this run stopped the application and has not started it again

    @property
    def swapped(self) -> bool:
        return self.swap is Swap.DONE

    @classmethod
    def of(cls, facts: dict[str, Any]) -> RunFacts:
        return cls.model_validate(facts)

    @model_validator(mode="before")
    @classmethod
    def _older_runs(cls, data: Any) -> Any:
        """Read the flat keys runs were recorded with before these models existed."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "backup" not in data and data.get("backup_path"):
            data["backup"] = {"path": data["backup_path"], "created": data["backup_created"],
                              "size": data.get("backup_size", 0), "sha256": data.get("backup_sha256"),
                              "identity": data.get("backup_identity")}
        if "databases" not in data and data.get("aside"):
            data["databases"] = {"live": data.get("live"), "aside": data["aside"], "keep_as": data.get("keep_as")}
        if "swap" not in data:
            data["swap"] = (Swap.UNKNOWN if data.get("swap_state") == "unknown" else Swap.DONE if data.get("swapped")
                            else Swap.UNDER_WAY if data.get("swap_started") else Swap.NOT_DONE)
        return data


def facts_update(**values: Any) -> dict[str, Any]:
    """Typed values as the JSON a step remembers: `await ctx.remember(facts_update(swap=Swap.DONE))`."""
    typed = RunFacts.model_fields
    unknown = set(values) - set(typed)
    if unknown:
        raise TypeError(f"not a typed run fact: {', '.join(sorted(unknown))}")
    return RunFacts.model_construct(**values).model_dump(mode="json", include=set(values))
