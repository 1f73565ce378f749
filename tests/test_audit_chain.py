"""The audit trail is a hash chain: `rollback-bot audit verify` finds a changed, removed or
reordered row and names it; two processes writing at once keep one chain; an older trail is
chained when it is opened; the incident report quotes the chain head."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

from actions.store.sqlite import Store
from support.cli import run_cli
from support.harness import CHANNEL, OPERATOR, Harness
from support.slack import WAIT

OLD_SCHEMA = """
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    outcome TEXT NOT NULL, environment TEXT, incident_id TEXT, run_id TEXT, detail TEXT NOT NULL
);
CREATE TRIGGER audit_is_append_only_u BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_is_append_only_d BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""


def tamper(path: Path, *statements: str) -> None:
    """What someone holding the file can do: lift the triggers and edit."""
    conn = sqlite3.connect(path)
    conn.executescript("DROP TRIGGER IF EXISTS audit_is_append_only_u; DROP TRIGGER IF EXISTS audit_is_append_only_d;"
                       + ";".join(statements))
    conn.close()


async def verify(h: Harness) -> tuple[int, str, str]:
    return await run_cli("audit", "verify", "--config", str(h.settings.config_path))


async def test_the_chain_verifies_and_names_the_first_changed_or_removed_row(harness: Harness):
    h = harness
    await h.slack.send_command(OPERATOR, "declare staging migration 42 stuck", channel_id=CHANNEL)
    await h.slack.wait_for_message(CHANNEL, "INCIDENT ALERT", timeout=WAIT)
    incident = h.store().open_incidents()[0].id
    await h.slack.send_command(OPERATOR, f"report {incident}", channel_id=CHANNEL)
    report = await h.slack.wait_for(lambda: h.slack.files, timeout=WAIT)
    await h.settle()
    rows = len(h.store().audit_events())
    assert rows >= 4
    code, out, _ = await verify(h)
    assert code == 0 and f"audit chain OK: {rows} rows; head: row {rows}," in out
    head_seq, head_hash = h.store().audit_head()
    text = report[-1].content.decode()
    quoted = text.split("Audit chain head when this report was written: row ")[1]
    seq, digest = int(quoted.split(",")[0]), quoted.split("`")[1]
    assert seq < head_seq or (seq, digest) == (head_seq, head_hash)
    assert digest in {r[0] for r in sqlite3.connect(h.settings.bot.audit_db).execute("SELECT hash FROM audit")}

    path = h.settings.bot.audit_db
    await h.runtime.stop()  # nothing else writes while we tamper
    tamper(path, "UPDATE audit SET actor = 'U0MALLORY' WHERE seq = 2")
    code, _, err = await verify(h)
    assert code == 1 and "BROKEN at row 2: row 2: its content was changed" in err and "The 1 rows before it" in err


async def test_a_removed_row_and_removed_last_rows_are_found(tmp_path: Path):
    path = tmp_path / "audit.sqlite"
    store = Store(path)
    for n in range(6):
        store.audit("U0OPS1", "test.event", environment="staging", n=n)
    assert store.verify_audit().ok and store.verify_audit().rows == 6
    tamper(path, "DELETE FROM audit WHERE seq = 6")
    check = store.verify_audit()
    assert not check.ok and check.first_bad_seq == 6 and "removed from the end" in check.problem
    tamper(path, "DELETE FROM audit WHERE seq = 3")
    check = store.verify_audit()
    assert check.first_bad_seq == 4 and "a row before it was removed or changed" in check.problem
    assert check.rows == 2 and check.head_seq == 2
    store.close()


async def test_two_processes_appending_at_once_keep_one_chain(tmp_path: Path):
    path = tmp_path / "audit.sqlite"
    Store(path).close()
    writer = ("import sys; from actions.store.sqlite import Store; s = Store(sys.argv[1]); "
              "[s.audit(sys.argv[2], 'test.event', n=n) for n in range(150)]; s.close()")
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-c", writer, str(path), who)
             for who in ("U0ONE", "U0TWO")]
    assert [await p.wait() for p in procs] == [0, 0]
    store = Store(path)
    check = store.verify_audit()
    actors = [e.actor for e in store.audit_events()]
    store.close()
    assert check.ok and check.rows == 300 and actors.count("U0ONE") == actors.count("U0TWO") == 150


async def test_a_trail_written_before_the_chain_is_chained_when_opened(tmp_path: Path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_SCHEMA)
    conn.executemany("INSERT INTO audit (at, actor, action, outcome, detail) VALUES (?, ?, ?, 'ok', '{}')",
                     [(f"2026-01-0{n}T00:00:00+00:00", "U0OPS1", f"old.{n}") for n in range(1, 5)])
    conn.commit()
    conn.close()
    store = Store(path)
    store.audit("U0OPS1", "new.event")
    check = store.verify_audit()
    assert check.ok and check.rows == 5
    assert [e.action for e in store.audit_events()] == ["old.1", "old.2", "old.3", "old.4", "new.event"]
    store.close()
    try:  # the triggers are back after the upgrade
        tamper_free = sqlite3.connect(path)
        tamper_free.execute("UPDATE audit SET actor = 'x' WHERE seq = 1")
        raise AssertionError("the audit trail accepted an UPDATE")
    except sqlite3.IntegrityError as refused:
        assert "append-only" in str(refused)
    finally:
        tamper_free.close()
