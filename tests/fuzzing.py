"""Helpers for the property-based tests in test_fuzz.py: running hypothesis against the live
harness, the answers the bot gave to one request, and a snapshot of everything a request must not
change.

Why hypothesis runs in a worker thread: the harness (bot, fake Slack, their HTTP servers) lives on
the test's event loop, which pytest-asyncio (asyncio_mode = "auto") owns, and `@given` cannot wrap
an async test that uses function-scoped async fixtures. So the test body builds a plain, sync
`@given` function and calls it in `asyncio.to_thread`; each example hands its coroutine back to the
test's loop with `run_coroutine_threadsafe` and waits for it. The loop is free meanwhile (the test
itself only awaits the thread), so the bot serves the request as it would in production, one
harness per test function, and hypothesis keeps its search and its shrinking of a failing example.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import psycopg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from support.harness import ADMIN_DSN, Harness

# CI budget per property; raise it for a long run, e.g. FUZZ_EXAMPLES=2000.
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
ACK_DEADLINE_MS = 3000
SLACK_TEXT_LIMIT = 3000  # a Block Kit text object (section, context element)
TRACE_MARKS = ("Traceback (most recent call last)", 'File "/')  # what a leaked stack trace shows

# Strings an attacker or a typo would try: SQL, shell, Slack markup, format strings, control characters.
NASTY = ["staging; DROP DATABASE x", '"; --', "'; DROP TABLE sales; --", "staging'", 'stag"ing', "staging;",
         "$(rm -rf /)", "`id`", "<!channel>", "<@U0OPS1>", "../../etc/passwd", "%s%n", "{0.__class__}",
         "sales,users;DROP", "crm_staging\"--", "ÅÉÎ", "\u202etxt", "\u200b", "x" * 41, "rbtest_", "a\tb"]


def long_text() -> st.SearchStrategy[str]:
    """Strings of 1,000 to 20,000 characters (a repeated chunk: cheap to generate, long on the wire)."""
    return st.builds(lambda chunk, times: (chunk * times)[:20_000], st.text(min_size=1, max_size=12),
                     st.integers(1_000, 5_000))


@dataclass
class Figures:
    """How much one property explored: quoted by docs/RELIABILITY.md."""

    name: str
    cases: int
    seconds: float


async def explore(name: str, strategy: st.SearchStrategy, check: Callable[[Any], Awaitable[None]],
                  record_property: Callable[[str, Any], None], always: list = ()) -> Figures:
    """Run `check` on the test's event loop for every example hypothesis draws from `strategy`,
    and first for each of `always` (the cases that once found a bug, so they are tried every run)."""
    loop = asyncio.get_running_loop()
    cases = 0

    # database=None: no .hypothesis/ directory (the suite runs with -p no:cacheprovider too);
    # deadline=None: one example is a real HTTP round trip, its time is asserted by `check` itself.
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(strategy)
    def prop(example) -> None:
        nonlocal cases
        cases += 1
        try:
            asyncio.run_coroutine_threadsafe(check(example), loop).result(timeout=120)
        except Exception as failure:  # name the example even when hypothesis cannot report it
            failure.add_note(f"fuzz example: {example!r}")
            print(f"fuzz example failed: {example!r}"[:3000], file=sys.stderr)
            raise

    for case in always:
        prop = example(case)(prop)

    started = time.perf_counter()
    await asyncio.to_thread(prop)
    figures = Figures(name, cases, round(time.perf_counter() - started, 2))
    record_property(f"fuzz_{name}_cases", figures.cases)
    record_property(f"fuzz_{name}_seconds", figures.seconds)
    print(f"fuzz {name}: {figures.cases} cases in {figures.seconds} s", file=sys.stderr)
    if path := os.environ.get("FUZZ_REPORT"):  # JSON lines, for the figures in docs/RELIABILITY.md
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(figures.__dict__) + "\n")
    return figures


def hook_id(response_url: str | None) -> str:
    assert response_url, "the request carried no response_url"
    return response_url.rsplit("/", 1)[1]


def answers(h: Harness, reply) -> list[dict]:
    """What the user was shown for one request: the ack's body (commands only) and every post
    to the request's response_url."""
    shown = [reply.json] if reply.json and (reply.json.get("text") or reply.json.get("blocks")) else []
    hook = hook_id(reply.response_url)
    return shown + [p.body for p in h.slack.response_posts if p.hook_id == hook]


def texts(message: dict) -> list[str]:
    """Every human-visible string in a reply: its text and the texts of its blocks."""
    found = [message.get("text") or ""]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message.get("blocks") or [])
    return found


def assert_helpful_ephemeral(message: dict) -> str:
    """An answer only the user sees, that Slack can display, and that shows no stack trace."""
    assert message.get("response_type", "ephemeral") == "ephemeral", message
    assert not message.get("replace_original") and not message.get("delete_original"), message
    assert len(message.get("blocks") or []) <= 50
    shown = texts(message)
    assert shown[0].strip(), f"an empty answer: {message}"
    for text in shown[1:]:
        assert len(text) <= SLACK_TEXT_LIMIT, f"a text object of {len(text)} characters"
    everything = "\n".join(shown)
    assert not any(mark in everything for mark in TRACE_MARKS), everything
    assert "Something went wrong on my side" not in everything, everything  # a handler crashed
    return everything


def state_rows(h: Harness) -> dict[str, list[dict]]:
    """The rows a refused or malformed request must leave as they were."""
    db = h.store().db
    return {table: list(db.query(f"SELECT * FROM {table} ORDER BY rowid"))  # names from this fixed tuple
            for table in ("incidents", "runs", "steps", "approvals", "checklist", "signoffs")}


async def database_names(own_prefix: str) -> set[str]:
    """Every database on the server but other tests' and benchmarks' (`rbtest_…`, `rbbench_…`:
    another suite may run beside this one), plus this test's own CRM and its copies: a name fuzzed
    text smuggled into CREATE DATABASE, or a copy the bot made, would show up here."""
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        rows = await (await conn.execute("SELECT datname FROM pg_database")).fetchall()
    return {name for (name,) in rows if not re.match(r"rb[a-z]+_", name) or name.startswith(own_prefix)}


async def wait_quiet(h: Harness, seconds: float = 1.0) -> None:
    """Wait until the fake Slack has seen no response post for `seconds`: a listener still
    running after its ack would have posted by then."""
    count = -1
    while count != len(h.slack.response_posts):
        count = len(h.slack.response_posts)
        await asyncio.sleep(seconds)
