"""Where things stand, as `bot/` shows them: the typed states and reports the service hands out.

Defined in their rooms (a run's status next to the facts it is read from, a diagnosis next to its
checks); gathered here so that `bot/` needs one module to know their shapes.
"""

from __future__ import annotations

from actions.backups.inspection import DiffReport
from actions.backups.take import BackupTaken
from actions.diagnose.model import Diagnosis
from actions.engine.plan import ApprovalPreview, RunOutcome
from actions.engine.progress import ProgressView
from actions.engine.snapshot import Snapshot
from actions.incidents.reads import (
    ChecklistGroupState,
    ChecklistItem,
    IncidentState,
    PreparedRow,
    RunStatus,
    StatusRow,
    Undelivered,
)
from actions.watch.watcher import WatchAlert, WatchEnded, WatchEvent, WatchStarted, WatchSummary

__all__ = [
    "ApprovalPreview", "BackupTaken", "ChecklistGroupState", "ChecklistItem", "DiffReport", "Diagnosis",
    "IncidentState", "PreparedRow", "ProgressView", "RunOutcome", "RunStatus", "Snapshot", "StatusRow", "Undelivered", "WatchAlert", "WatchEnded",
    "WatchEvent", "WatchStarted", "WatchSummary",
]
