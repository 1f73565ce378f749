"""What `/rollback diagnose` finds, as data: checks, their findings, and the remedy each allows.

Runbook Part 8's contingencies and Part 2's Level 1 signs. A remedy is only a proposal: applying
it is a gated run (approval, audit) of the `remedy` plan (actions/remedies.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"  # the check could not run (time limit, permission, connection); the others still report


class RemedyKind(StrEnum):
    TERMINATE = "terminate"  # pg_cancel_backend, then pg_terminate_backend; target {"pid", "backend_start"}
    ANALYZE = "analyze"  # ANALYZE; target {"table": "schema.table"}
    VACUUM = "vacuum"  # VACUUM (ANALYZE); target {"table": "schema.table"}
    REINDEX = "reindex"  # REINDEX INDEX; target {"index": "schema.index"}
    QUARANTINE = "quarantine"  # move FK orphans into rollback_quarantine; target {"constraint": "schema.table.name"}


@dataclass(frozen=True)
class Remedy:
    kind: RemedyKind
    target: dict[str, Any]  # small and JSON-able: it travels in a button's value
    label: str  # the button's text, e.g. "Terminate 12345"


@dataclass(frozen=True)
class Finding:
    text: str  # one line with its figures
    remedy: Remedy | None = None


@dataclass(frozen=True)
class CheckResult:
    key: str  # long_queries / locks / connectivity / disk / foreign_keys / performance
    title: str
    status: Status
    summary: str
    findings: tuple[Finding, ...] = ()
    hint: str | None = None  # for WARN/FAIL/ERROR: the runbook contingency, in one line of advice
    seconds: float = 0.0


@dataclass(frozen=True)
class Diagnosis:
    environment: str
    database: str
    at: datetime
    checks: tuple[CheckResult, ...] = field(default_factory=tuple)

    @property
    def worst(self) -> Status:
        order = [Status.OK, Status.WARN, Status.ERROR, Status.FAIL]
        return max((c.status for c in self.checks), key=order.index, default=Status.OK)
