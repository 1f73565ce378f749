"""Restore progress, read from `pg_restore --verbose` as it runs.

Progress is items finished out of the items in the backup's table of contents. pg_restore says
different things depending on `--jobs`:

- one job: one line per item as it starts ("creating TABLE …", "processing data for table …",
  "executing SEQUENCE SET …"); an item is finished when the next one starts, or at the end;
- several jobs: "processing item <id> …" for the items restored before and after the parallel
  part, and "finished item <id> …" for each item done in parallel.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from actions.engine.metrics import RestoreRate

_PROCESSING = re.compile(r"^pg_restore: processing item (\d+) ")
_FINISHED = re.compile(r"^pg_restore: finished item (\d+) ")
_SINGLE_JOB_START = ("pg_restore: creating ", "pg_restore: processing data for table ", "pg_restore: executing ")


@dataclass(frozen=True)
class ProgressView:
    """A moment of a long step, for the status updates."""

    step: str
    done: int
    total: int
    started: float  # time.monotonic() when the step started
    seconds: float  # how long it has run

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def remaining_seconds(self) -> float | None:
        """Extrapolated from the rate so far; None until there is a rate."""
        if self.done == 0 or self.seconds <= 0:
            return None
        return self.seconds * (1 - self.fraction) / self.fraction


class RestoreProgress:
    """Feed it pg_restore's lines; read `done` out of `total`."""

    def __init__(self, dump_ids: set[int], jobs: int, size_bytes: int = 0):
        self.dump_ids = dump_ids
        self.total = len(dump_ids)
        self.size_bytes = size_bytes  # the backup's, for a rate in bytes
        self.parallel = jobs > 1
        self.started = time.monotonic()
        self._finished: set[int] = set()
        self._serial_done = 0
        self._serial_open: int | None = None  # id (parallel mode) or 0 (single job) of the item under way

    @property
    def done(self) -> int:
        return min(self.total, len(self._finished) + self._serial_done)

    def feed(self, line: str) -> None:
        if self.parallel:
            if match := _PROCESSING.match(line):
                self._close_serial()
                item = int(match.group(1))
                self._serial_open = item if item in self.dump_ids else None
            elif match := _FINISHED.match(line):
                self._close_serial()
                item = int(match.group(1))
                if item in self.dump_ids:
                    self._finished.add(item)
            elif line.startswith("pg_restore: entering main parallel loop"):
                self._close_serial()
        elif line.startswith(_SINGLE_JOB_START):
            self._close_serial()
            self._serial_open = 0

    def finish(self) -> None:
        """pg_restore exited successfully: every item is done."""
        self._close_serial()
        self._serial_done = self.total - len(self._finished)

    def _close_serial(self) -> None:
        if self._serial_open is not None:
            self._serial_done += 1
            self._serial_open = None

    def view(self, step: str) -> ProgressView:
        return ProgressView(step, self.done, self.total, self.started, time.monotonic() - self.started)

    def rate(self, environment: str) -> RestoreRate:
        seconds = max(time.monotonic() - self.started, 1e-6)
        fraction = min(1.0, self.done / self.total) if self.total else 0.0
        return RestoreRate(environment, self.done / seconds, self.size_bytes * fraction / seconds, fraction)
