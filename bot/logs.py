"""Logging set-up: one line per record, and every line passes through the redactor."""

from __future__ import annotations

import logging

from actions.redact import Redactor


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then masks secrets — tracebacks included — before anything is written."""

    def __init__(self, redactor: Redactor):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


def configure_logging(redactor: Redactor, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job run is noise
