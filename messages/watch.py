"""`/rollback watch` messages: the watch starting, each alert, and the watch's end with its figures.

Pure builders. They take anything shaped like `actions.watch`'s events (the Protocols below), so
this package stays free of `actions`. Alert texts come from the watcher already redacted; here
they are only escaped for mrkdwn (`&`, `<`, `>`), because they quote SQL.
"""

from __future__ import annotations

from typing import Protocol

from messages.blocks import SlackMessage, context, escape, mention, section
from readable import duration

ICONS = {"long_query": "🕑", "lock_wait": "🔒", "hung": "🧊", "connection_lost": "🔌", "connection_back": "✅"}
TITLES = {"long_query": "Long-running query", "lock_wait": "Lock wait", "hung": "Session hung",
          "connection_lost": "Connection lost", "connection_back": "Connection back"}
COUNTED = {"long_query": ("long query", "long queries"), "lock_wait": ("lock wait", "lock waits"),
           "hung": ("hung session", "hung sessions"), "connection_lost": ("lost connection", "lost connections"),
           "connection_back": ("reconnection", "reconnections")}
ADVICE = {
    "long_query": ("Runbook Part 2, Level 1: a query over 2 minutes is an issue sign — assess severity, tell the DBA, "
                   "then decide: continue, fix, or roll back."),
    "lock_wait": ("Runbook Contingency 1: look at the blocker; if the migration waits behind it for long, end the "
                  "blocker's session or roll back."),
    "hung": ("Runbook Contingency 1: check what it waits for (pg_locks); if it is truly stuck, terminate it "
             "and roll back."),
    "connection_lost": ("Runbook Contingency 2: check whether the migration still runs on the server — if it does, "
                        "let it continue; if it died, check the database state. Cannot connect at all: full rollback "
                        "(Level 3)."),
    "connection_back": ("Runbook Contingency 2: migration still running → let it continue; gone → check the database "
                        "state; if a simple query fails, do a full rollback."),
}


class StartedLike(Protocol):
    environment: str
    target: str
    minutes: float
    started_by: str
    poll_seconds: float
    long_query_seconds: float
    hung_minutes: float


class AlertLike(Protocol):
    environment: str
    kind: str
    text: str
    pid: int | None


class SummaryLike(Protocol):
    seconds: float
    polls: int
    failed_polls: int
    alerts: int
    alerts_by_kind: tuple[tuple[str, int], ...]
    longest_query_seconds: float | None
    longest_query_pid: int | None
    longest_query: str | None


class EndedLike(Protocol):
    environment: str
    reason: str
    summary: SummaryLike


def watch_started(event: StartedLike) -> SlackMessage:
    """👀 posted when a watch begins: what is watched, for how long, and what raises an alert."""
    head = (f"👀 Watching `{event.environment}` ({escape(event.target)}) for {duration(event.minutes * 60)}, "
            f"started by {mention(event.started_by)}")
    rules = (f"Polling every {duration(event.poll_seconds)}. Alerts: queries over "
             f"{duration(event.long_query_seconds)}, lock waits, sessions stuck for "
             f"{duration(event.hung_minutes * 60)} (runbook Contingency 1), lost connections (Contingency 2).")
    return SlackMessage(f"{head}\n{rules}", [section(head), context(rules)])


def watch_alert(alert: AlertLike) -> SlackMessage:
    """One alert: icon and title, the watcher's text, then one line of runbook advice."""
    kind = str(alert.kind)
    icon, title = ICONS.get(kind, "⚠️"), TITLES.get(kind, kind)
    head = f"{icon} *{title}* in `{alert.environment}`"
    advice = ADVICE.get(kind, "")
    blocks = [section(f"{head}\n{escape(alert.text)}")]
    if advice:
        blocks.append(context(advice))
    fallback = f"{icon} {title} in {alert.environment}: {escape(alert.text)}"
    return SlackMessage(f"{fallback}\n{advice}" if advice else fallback, blocks)


def watch_ended(event: EndedLike) -> SlackMessage:
    """🏁 the watch's end: why, and its figures (polls, alerts, the longest query seen)."""
    s = event.summary
    reason = escape(event.reason, keep_mentions=True)
    head = f"🏁 Watch of `{event.environment}` ended after {duration(s.seconds)}: {reason}"
    failed = f" ({s.failed_polls} unanswered)" if s.failed_polls else ""
    kinds = ", ".join(f"{count} {COUNTED.get(kind, (kind, kind))[count != 1]}" for kind, count in s.alerts_by_kind)
    figures = [f"{s.polls} poll{'s' if s.polls != 1 else ''}{failed}",
               f"{s.alerts} alert{'s' if s.alerts != 1 else ''}" + (f" ({kinds})" if kinds else "")]
    if s.longest_query_seconds is not None:
        figures.append(f"longest query {duration(s.longest_query_seconds)} "
                       f"(pid {s.longest_query_pid}: `{escape(s.longest_query or '')}`)")
    else:
        figures.append("no query seen running")
    line = " · ".join(figures)
    return SlackMessage(f"{head}\n{line}", [section(head), context(line)])
