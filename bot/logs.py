"""Logging set-up: one record per line, text or JSON, and every line passes through the redactor.

`--log-format json` writes one JSON object per line (time, level, logger, message, and the
traceback inside it as `exc_info`), for log shippers; `text` is for a terminal. Either way the
whole line — traceback included — is masked before it is written.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from actions.redact import Redactor


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then masks secrets — tracebacks included — before anything is written."""

    def __init__(self, redactor: Redactor):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line; secrets masked in every field."""

    def __init__(self, redactor: Redactor):
        super().__init__()
        self.redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return self.redact(json.dumps(entry, ensure_ascii=False))


class KnownNoise(logging.Filter):
    """Drops Bolt's start-up warning that the token is unused because a client was given: the bot
    gives Bolt its own client (counted, redacting) on purpose, and a warning at every start would
    teach people to ignore warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("As you gave `client` as well, `token` will be unused")


def configure_logging(redactor: Redactor, level: int | str = logging.INFO, fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(redactor) if fmt == "json" else RedactingFormatter(redactor))
    handler.addFilter(KnownNoise())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job run is noise
