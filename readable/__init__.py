"""Numbers and texts as people read them: durations, sizes, the first line of a query or an error.

One formatter each, shared by `actions/` (step details, diagnostics, watch alerts) and `messages/`
(Slack text). It imports nothing of the project, so both layers may use it.
"""

from __future__ import annotations

__all__ = ["count", "duration", "first_line", "mark", "size"]

# A state at a glance: a step's or a run's (their state values).
MARKS = {
    "pending": "▫️", "waiting for approval": "⏸️", "running": "⏳", "succeeded": "✅", "failed": "❌", "skipped": "⏭️",
    "cancelled": "⏹️", "denied": "🚫", "interrupted": "⚡",
}


def duration(seconds: float | None, *, unknown: str = "") -> str:
    """4.2 s, 3 min 05 s, 2 h 10 min, 3 d 4 h; `unknown` when there is no figure."""
    if seconds is None:
        return unknown
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def size(size_bytes: float) -> str:
    """512 B, 1.5 KB, 126.0 MB, 2.1 GB (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size_bytes < 1024 or unit == "TB":
            return f"{size_bytes:.0f} {unit}" if unit == "B" else f"{size_bytes:.1f} {unit}"
        size_bytes /= 1024
    raise AssertionError("unreachable")


def first_line(text: str | None, limit: int = 100) -> str:
    """The first non-blank line of a query or an error, whitespace collapsed, clipped to `limit`."""
    for line in (text or "").splitlines():
        line = " ".join(line.split())
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def count(n: int, noun: str, plural: str | None = None) -> str:
    """1 table, 3 tables, 1,024 indexes (with `plural`)."""
    return f"{n:,} {noun if n == 1 else (plural or noun + 's')}"


def mark(state: str, default: str = "•") -> str:
    """The mark of a step's or a run's state (✅, ❌, ⏳, …)."""
    return MARKS.get(state, default)
