"""`/rollback diagnose` and its fix buttons on a real CRM, through the real Bolt app and the fake
Slack: the report, a lock blocker found and ended through an approval, FK orphans quarantined by a
button and put back exactly, an invalid index found and rebuilt, and a check that cannot run."""

from __future__ import annotations

import asyncio
import subprocess
import time

import psycopg
import pytest
from psycopg import sql

from actions.config import Environment
from actions.diagnose.base import Check, CheckOutcome, Context
from actions.diagnose.model import Status
from actions.diagnose.run import diagnose
from actions.diagnose.server import CHECKS as SERVER_CHECKS
from demo.fingerprint import fingerprint
from support.harness import (
    ADMIN_DSN,
    APPROVER,
    BYSTANDER,
    CHANNEL,
    OPERATOR,
    Harness,
    start_harness,
)
from support.slack import WAIT, audit_actions

CHECK_TITLES = ("Long-running queries", "Lock waits", "Connectivity", "Disk space and backups", "Foreign keys",
                "Performance")


async def run_diagnose(h: Harness, user: str = OPERATOR):
    """Send the command; the report is posted in the channel (in_channel), newest wins."""
    before = {m.ts for m in h.slack.messages(CHANNEL)}
    reply = await h.slack.send_command(user, "diagnose staging", channel_id=CHANNEL)
    assert reply.status == 200 and reply.elapsed_ms < 3000
    return await h.slack.wait_for(lambda: next((m for m in reversed(h.slack.messages(CHANNEL))
                                                if m.ts not in before and "Diagnosis of staging" in m.all_text()), None),
                                  timeout=WAIT, what="the diagnosis report")


def remedy_button(report, label: str) -> dict:
    """The fix button whose text starts with `label`, from the report's section accessories."""
    buttons = [b["accessory"] for b in report.blocks if b.get("accessory", {}).get("action_id", "").startswith("remedy")]
    found = [b for b in buttons if b["text"]["text"].startswith(label)]
    assert found, f"no fix button {label!r}; buttons: {[b['text']['text'] for b in buttons]}"
    return found[0]


async def new_approval(h: Harness, seen: set[str]):
    message = await h.slack.wait_for(lambda: next((m for m in reversed(h.slack.messages(CHANNEL))
                                                   if m.ts not in seen and "Approval needed" in m.all_text()), None),
                                     timeout=WAIT, what="a new approval request")
    seen.add(message.ts)
    return message


async def click_fix(h: Harness, report, label: str, seen: set[str]):
    """Ask for a fix as the operator, then approve it as the approver; wait for the run to end."""
    button = remedy_button(report, label)
    assert "an approver" in button["confirm"]["text"]["text"]  # the confirm dialog says who decides
    await h.slack.click(OPERATOR, report, button["action_id"])
    await h.slack.wait_for_ephemeral(OPERATOR, "Started the remedy", timeout=WAIT)
    request = await new_approval(h, seen)
    await h.slack.click(APPROVER, request, "approval-approve")
    await h.settle()
    return request


def section_of(report, title: str) -> str:
    return next(b["text"]["text"] for b in report.blocks if b["type"] == "section" and f"*{title}*" in b["text"]["text"])


async def test_report_has_every_check_changes_nothing_and_is_for_operators(harness: Harness):
    h = harness
    before = await fingerprint(h.crm.dsn)
    report = await run_diagnose(h)
    for title in CHECK_TITLES:
        assert f"*{title}*" in report.all_text()
    assert section_of(report, "Connectivity").startswith("✅") and "PostgreSQL 15" in section_of(report, "Connectivity")
    assert section_of(report, "Foreign keys").startswith("✅") and "19 foreign keys checked" in report.all_text()
    assert section_of(report, "Lock waits").startswith("✅") and section_of(report, "Long-running queries").startswith("✅")
    assert "need 2 × " in report.all_text() and "Newest backup" in report.all_text()
    assert await fingerprint(h.crm.dsn) == before  # read-only
    assert (OPERATOR, "diagnose", "ok") in audit_actions(h) and h.store().runs() == []

    await h.slack.send_command(BYSTANDER, "diagnose staging", channel_id=CHANNEL)
    refusal = await h.slack.wait_for_ephemeral(BYSTANDER, "only operators may run diagnostics", timeout=WAIT)
    assert OPERATOR in refusal.all_text() or "ops.olivia" in refusal.all_text()
    await h.slack.send_command(OPERATOR, "diagnose prod", channel_id=CHANNEL)
    await h.slack.wait_for_ephemeral(OPERATOR, "prod", timeout=WAIT)
    assert (BYSTANDER, "diagnose.refused", "refused") in audit_actions(h)


async def _pid(conn: psycopg.AsyncConnection) -> int:
    return (await (await conn.execute("SELECT pg_backend_pid()")).fetchone())[0]


async def test_lock_blocker_is_named_and_ended_through_an_approval(harness: Harness):
    h = harness
    holder = await psycopg.AsyncConnection.connect(h.crm.dsn)
    waiter = await psycopg.AsyncConnection.connect(h.crm.dsn, autocommit=True)
    try:
        holder_pid, waiter_pid = await _pid(holder), await _pid(waiter)
        await holder.execute("LOCK TABLE contracts IN ACCESS EXCLUSIVE MODE")  # and the transaction stays open
        waiting = asyncio.create_task(waiter.execute("SELECT count(*) FROM contracts"))
        async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as watch:
            for _ in range(100):
                if holder_pid in (await (await watch.execute(
                        "SELECT pg_blocking_pids(%s)", (waiter_pid,))).fetchone())[0]:
                    break
                await asyncio.sleep(0.05)
        report = await run_diagnose(h)
        locks = section_of(report, "Lock waits")
        assert locks.startswith("⚠️") and f"pid {waiter_pid}" in locks and f"blocked by pid {holder_pid}" in locks
        assert f"blocked by pid {holder_pid}" in report.all_text() and "AccessShareLock on public.contracts" in report.all_text()
        # The FK check could not read the locked table, and says so instead of hanging.
        assert "public.contracts" in section_of(report, "Foreign keys") or "locked by another session" in report.all_text()
        request = await click_fix(h, report, f"Terminate blocker {holder_pid}", set())
        assert f"backend {holder_pid}" in request.all_text()
        assert (await asyncio.wait_for(waiting, WAIT)) is not None  # the waiter got its lock
        async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as check:
            gone = await (await check.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                              (holder_pid,))).fetchone()
        assert gone == (0,)
        thread = "\n".join(m.all_text() for m in h.slack.messages(CHANNEL, include_replies=True))
        assert "it was terminated" in thread and "The remedy was applied" in thread
        assert (APPROVER, "approved", "ok") in audit_actions(h)
    finally:
        await holder.close()
        await waiter.close()


async def contracts(dsn: str, ids: list[int]) -> list[tuple]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        cursor = await conn.execute("SELECT * FROM contracts WHERE id = ANY(%s) ORDER BY id", (ids,))
        return await cursor.fetchall()


async def test_orphans_are_quarantined_by_a_button_and_put_back_exactly(harness: Harness):
    h = harness
    async with await psycopg.AsyncConnection.connect(h.crm.dsn, autocommit=True) as conn:
        ids = [r[0] for r in await (await conn.execute("SELECT id FROM contracts ORDER BY id LIMIT 7")).fetchall()]
        async with conn.transaction():  # how orphans happen: FK triggers off during a bulk load
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("UPDATE contracts SET customer_id = customer_id + 100000000 WHERE id = ANY(%s)", (ids,))
    orphaned = await contracts(h.crm.dsn, ids)
    report = await run_diagnose(h)
    fks = section_of(report, "Foreign keys")
    assert fks.startswith("❌") and "1 of 19 foreign keys have orphan rows (7 rows in all)" in fks
    assert "public.contracts.contracts_customer_id_fkey: 7 orphan rows" in report.all_text()
    assert f"id {', '.join(map(str, ids[:5]))}, …" in report.all_text()  # a sample of the ids
    seen: set[str] = set()
    await click_fix(h, report, "Quarantine 7 orphans", seen)
    assert await contracts(h.crm.dsn, ids) == []
    async with await psycopg.AsyncConnection.connect(h.crm.dsn) as conn:
        kept = await (await conn.execute("SELECT incident_id, source_table, constraint_name, count(*) "
                                         "FROM rollback_quarantine.rows GROUP BY 1, 2, 3")).fetchall()
    assert len(kept) == 1 and kept[0][1:] == ("public.contracts", "public.contracts.contracts_customer_id_fkey", 7)
    incident = kept[0][0]
    assert section_of(await run_diagnose(h), "Foreign keys").startswith("✅")

    await h.slack.send_command(OPERATOR, f"restore-quarantine staging {incident}", channel_id=CHANNEL)
    request = await new_approval(h, seen)
    assert "Insert 7 row(s) back into `public.contracts`" in request.all_text()
    await h.slack.click(APPROVER, request, "approval-approve")
    await h.settle()
    assert await contracts(h.crm.dsn, ids) == orphaned  # every column of every row, as it was
    async with await psycopg.AsyncConnection.connect(h.crm.dsn) as conn:
        assert (await (await conn.execute("SELECT count(*) FROM rollback_quarantine.rows")).fetchone()) == (0,)
    actions = audit_actions(h)
    assert (OPERATOR, "remedy.started", "ok") in actions and (OPERATOR, "restore-quarantine.started", "ok") in actions


async def test_invalid_index_is_found_and_rebuilt(harness: Harness):
    h = harness
    async with await psycopg.AsyncConnection.connect(h.crm.dsn, autocommit=True) as conn:
        await conn.execute("CREATE TABLE gauges (id int PRIMARY KEY, code text)")
        await conn.execute("INSERT INTO gauges VALUES (1, 'a'), (2, 'a')")
        try:  # fails on the duplicate and leaves the index behind, INVALID — as in a failed migration
            await conn.execute("CREATE UNIQUE INDEX CONCURRENTLY gauges_code_key ON gauges (code)")
        except psycopg.errors.UniqueViolation:
            pass
        await conn.execute("UPDATE gauges SET code = 'b' WHERE id = 2")  # the data is fixed; the index is not
    report = await run_diagnose(h)
    performance = section_of(report, "Performance")
    assert performance.startswith("⚠️") and "1 invalid index" in performance
    assert "public.gauges_code_key on public.gauges is INVALID" in report.all_text()
    await click_fix(h, report, "REINDEX public.gauges_code_key", set())
    async with await psycopg.AsyncConnection.connect(h.crm.dsn) as conn:
        valid = await (await conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = "
                                          "'public.gauges_code_key'::regclass")).fetchone()
    assert valid == (True,)
    assert "invalid index" not in section_of(await run_diagnose(h), "Performance")


async def test_a_check_that_cannot_run_says_why_and_the_others_report(tmp_path, crm, stand_in, app_role):
    """A role without rights on the tables: the FK check fails with the server's reason; the rest report."""
    async with await psycopg.AsyncConnection.connect(crm.dsn, autocommit=True) as conn:
        await conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(sql.Identifier(app_role)))
    dsn = crm.dsn.replace("user=postgres", f"user={app_role}")
    assert app_role in dsn
    h = await start_harness(tmp_path, crm, stand_in, dsn=f'"{dsn}"')
    try:
        report = await run_diagnose(h)
        fks = section_of(report, "Foreign keys")
        assert fks.startswith("❔") and "permission denied for table" in fks
        for title in ("Connectivity", "Lock waits", "Long-running queries"):
            assert section_of(report, title).startswith("✅"), section_of(report, title)
        assert "could not run" in report.text
    finally:
        await h.close()


async def test_a_check_over_its_time_limit_is_cut_off_on_the_server_too(crm):
    """The time limit is kept on both sides: the report comes in time, and the server stops the work."""
    env = Environment(name="staging", dsn=crm.dsn, backup_dir=str(crm.backup_root), check_timeout_seconds=1)

    async def slow(ctx: Context) -> CheckOutcome:
        await ctx.db.execute("SELECT pg_sleep(30)")
        return CheckOutcome(Status.OK, "never")

    started = time.monotonic()
    report = await diagnose(env, (Check("slow", "Slow", "hint", slow), *SERVER_CHECKS))
    assert time.monotonic() - started < 5
    slow_result, connectivity, disk = report.checks
    assert slow_result.status is Status.ERROR and "within its 1 s limit" in slow_result.summary
    assert connectivity.status is Status.OK and disk.status is Status.OK
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        for _ in range(50):
            sleeping = (await (await conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query = "
                                                  "'SELECT pg_sleep(30)'")).fetchone())[0]
            if not sleeping:
                break
            await asyncio.sleep(0.1)
    assert sleeping == 0


async def test_a_database_that_refuses_connections_is_told_from_a_server_that_is_down(crm):
    """Contingency 2: the database is gone (renamed, dropped) while the server answers."""
    env = Environment(name="staging", dsn=crm.dsn.replace(crm.dbname, crm.dbname + "_gone"),
                      backup_dir=str(crm.backup_root), check_timeout_seconds=5)
    report = await diagnose(env)
    checks = {c.key: c for c in report.checks}
    assert checks["connectivity"].status is Status.FAIL and report.worst is Status.FAIL
    assert f'database "{crm.dbname}_gone" does not exist' in checks["connectivity"].summary
    assert any("The server answers on the maintenance database postgres" in f.text
               for f in checks["connectivity"].findings)
    assert "Contingency 2" in checks["connectivity"].hint
    for key in ("long_queries", "locks", "disk", "foreign_keys", "performance"):  # each says why, none hangs
        assert checks[key].status is Status.ERROR and "does not exist" in checks[key].summary


@pytest.fixture
def small_filesystem(tmp_path):
    """A 1 MiB tmpfs for the backups: smaller than the CRM, as when a disk fills up."""
    folder = tmp_path / "small"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN); the thresholds are tested in test_disk_thresholds")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


async def test_a_backup_disk_smaller_than_the_database_fails_with_contingency_3(crm, small_filesystem):
    env = Environment(name="staging", dsn=crm.dsn, backup_dir=str(small_filesystem))
    disk = next(c for c in (await diagnose(env)).checks if c.key == "disk")
    assert disk.status is Status.FAIL
    assert any(f"Backup folder {small_filesystem}: 1.0 MB free" in f.text and "cannot restore aside" in f.text
               for f in disk.findings), [f.text for f in disk.findings]
    assert "Contingency 3" in disk.hint and "no backup found" in disk.summary


def test_disk_thresholds():
    """The runbook wants twice the database size free; less than once means no restore aside."""
    from actions.diagnose.server import space_status

    gib = 1 << 30
    assert space_status(free=3 * gib, database_size=gib) is Status.OK
    assert space_status(free=2 * gib, database_size=gib) is Status.OK
    assert space_status(free=2 * gib - 1, database_size=gib) is Status.WARN
    assert space_status(free=gib - 1, database_size=gib) is Status.FAIL
