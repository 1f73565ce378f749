"""Faults injected into a running full rollback (issue 8, part 5): the real bot, real PostgreSQL and
pg_restore, the project's fake Slack. Each case checks the live database, leftover `__rollback_`
copies and what the incident channel was told. Preflight faults (no backup, damaged dump), a failing
pg_restore, a failing start command and a plain 429/503 at the start are in test_full_rollback.py."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from demo.fingerprint import diff, fingerprint
from support.harness import (
    ADMIN_DSN,
    APPROVER,
    CHANNEL,
    OPERATOR,
    StandInApp,
    crm_database,
    database_names,
    drop_databases_like,
    start_harness,
)
from support.slack import STEP_TITLES, WAIT, approval_message, lines, run_end, start_rollback

CLUSTER = ["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main"]


def refute(condition: bool, problem: str) -> None:
    """Fail with `problem` when `condition` holds (each names what the channel must not be told)."""
    assert not condition, problem


async def poll(predicate, timeout: float = WAIT, interval: float = 0.05, what: str = "a condition"):
    """For conditions outside the fake Slack (the bot's store, /proc), which wait_for cannot watch."""
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)
    return found


def restore_group(live: str) -> int | None:
    """The process group of the pg_restore that restores `live`'s aside copy (psutil is not a
    dependency: /proc is read directly). The bot starts it in its own session, so group = leader."""
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue  # not a process, or it just ended
        if argv[0].endswith(b"pg_restore") and any(f"{live}__rollback_".encode() in a for a in argv):
            try:
                return os.getpgid(int(entry.name))
            except ProcessLookupError:
                continue
    return None


async def freeze_restore(live: str, into: float = 0.25) -> int:
    """Stop the running restore (leader and -j workers) a little way in, so the fault lands mid-restore
    for certain: a 200k-row CRM restores in under a second here, faster than a fault can be aimed."""
    group = await poll(lambda: restore_group(live), interval=0.005, what="pg_restore to start")
    await asyncio.sleep(into)
    try:
        os.killpg(group, signal.SIGSTOP)
    except ProcessLookupError:
        pytest.fail("the restore finished before the fault could be injected: use a bigger CRM")
    return group


def step_state(h, key: str) -> str | None:
    runs = h.store().runs()
    return next((s.state.value for s in h.store().steps(runs[-1].id) if s.key == key), None) if runs else None


@asynccontextmanager
async def big_harness(tmp_path: Path, **overrides: str):
    """A harness on a 200k-row CRM, so that a restore lasts long enough to be caught."""
    async with crm_database(tmp_path, rows=200_000) as crm:
        app = StandInApp(tmp_path, crm.dsn)
        await app.start()
        h = await start_harness(tmp_path, crm, app, **overrides)
        try:
            yield h
        finally:
            await h.close()
            await app.stop()


async def assert_untouched_and_no_copy(h) -> None:
    assert diff(h.crm.after, await fingerprint(h.crm.dsn)) == []
    assert not any("__rollback_" in n for n in await database_names(h.crm.dbname))


async def test_pg_restore_killed_mid_restore_drops_the_copy_and_leaves_live_untouched(tmp_path):
    async with big_harness(tmp_path) as h:
        await start_rollback(h)
        group = await freeze_restore(h.crm.dbname)
        try:
            os.kill(group, signal.SIGKILL)  # the leader, as the OOM killer would: its workers must notice
        finally:
            os.killpg(group, signal.SIGCONT)
        ending = await run_end(h, "failed at “Restore the backup aside”")
        text = ending.all_text()
        assert "pg_restore" in text and "untouched" in text and "was dropped" in text
        # stop_app = "immediately": abort() restarts only an app stopped for the swap; this one stays
        # down and the message says so, since nobody should guess whether it is safe to start it.
        assert "The application is still stopped" in text and "/rollback full staging" in text
        await h.settle()
        assert not h.app.running
        await assert_untouched_and_no_copy(h)
        assert restore_group(h.crm.dbname) is None  # no orphaned -j worker survived its leader
        refute("signal" not in text and "killed by" not in text,  # (the log path holds "killed")
                  "a pg_restore killed by a signal is reported as 'pg_restore failed (exit -9): processing data for "
                  "table ...', quoting a progress line as the error (full_rollback.restore_aside)")


def cluster(action: str) -> None:
    # `start` on a running cluster exits 2: not an error when the finally block restarts it.
    subprocess.run([*CLUSTER, action, *(["-m", "fast"] if action == "stop" else [])], check=action == "stop",
                   capture_output=True, timeout=60)


async def server_ready(timeout: float = 60) -> None:
    await poll(lambda: subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode == 0,
               timeout=timeout, interval=0.2, what="PostgreSQL to accept connections")


async def test_postgres_stopped_during_restore_aside(tmp_path):
    async with big_harness(tmp_path) as h:
        try:
            await start_rollback(h)
            group = await freeze_restore(h.crm.dbname)
            try:  # the whole cluster goes down under the restore (other tests' databases too: keep it short)
                await asyncio.to_thread(cluster, "stop")
            finally:
                os.killpg(group, signal.SIGCONT)
            # The bot sees the failure and reconciles while the server is still down.
            ending = await run_end(h, "failed at “Restore the backup aside”")
            await h.settle()
            await asyncio.sleep(2)
        finally:
            await asyncio.to_thread(cluster, "start")
            await server_ready()
        text = ending.all_text()
        assert "pg_restore failed" in text and "untouched" in text
        assert diff(h.crm.after, await fingerprint(h.crm.dsn)) == []
        leftovers = [n for n in await database_names(h.crm.dbname) if "__rollback_" in n]
        problems = []
        if leftovers and not (all(n in text for n in leftovers) and "/rollback cleanup" in text):
            problems.append(f"the copy {leftovers} is left and the message neither names it nor says how to drop it")
        if "still stopped" not in text:  # stop_app = "immediately": the app is down, as in the kill case
            problems.append("the message no longer says the application is still stopped")
        refute(bool(problems), "; ".join(problems) + " (full_rollback.outcome when swap_state is unknown, "
                  "although the run failed before the swap step could run)")


@asynccontextmanager
async def tablespace_on_tmpfs(size_mb: int):
    """A tablespace on a tmpfs of `size_mb` MB; yields (name, mount point). Dropped and unmounted after."""
    mount = Path(tempfile.mkdtemp(prefix="rbtest_ts_", dir="/tmp"))  # /tmp: postgres can reach it
    pg = pwd.getpwnam("postgres")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700,uid={pg.pw_uid},gid={pg.pw_gid}",
                           "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    name = mount.name.lower()
    try:
        (mount / "ts").mkdir()
        os.chown(mount / "ts", pg.pw_uid, pg.pw_gid)
        async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
            await conn.execute(sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(
                sql.Identifier(name), sql.Literal(str(mount / "ts"))))
        yield name, mount
    finally:
        async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP TABLESPACE IF EXISTS {}").format(sql.Identifier(name)))
        subprocess.run(["umount", str(mount)], check=True)
        mount.rmdir()


@pytest.mark.parametrize("fills", ["before_preflight", "after_preflight"])
async def test_disk_full_while_restoring_aside(tmp_path, crm, stand_in, fills):
    async with tablespace_on_tmpfs(64) as (space, mount):
        try:
            # The aside copy is created in the live database's tablespace (pg.create_database_like),
            # so a live database on a small disk makes its copy fill that disk.
            async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
                await conn.execute(sql.SQL("ALTER DATABASE {} SET TABLESPACE {}").format(
                    sql.Identifier(crm.dbname), sql.Identifier(space)))
            # Leave room for CREATE DATABASE (measured: 2 MB written to the tablespace) but not for the
            # restored data (6 MB more): the restore itself must hit the full disk.
            ballast = ["fallocate", "-l", str(shutil.disk_usage(mount).free - 4 * 2**20), str(mount / "ballast")]
            stop = [["rm", "-f", str(stand_in.flag)]]
            if fills == "before_preflight":
                subprocess.run(ballast, check=True)
            else:  # the disk fills after preflight looked: the bot's own stop command writes the ballast
                stop.append(ballast)
            h = await start_harness(tmp_path, crm, stand_in, stop=repr(stop).replace("'", '"'))
            try:
                await start_rollback(h)
                ending = await run_end(h, "failed at")
                text = ending.all_text()
                await h.settle()
                assert "untouched" in text
                await assert_untouched_and_no_copy(h)
                if fills == "before_preflight":
                    refute("failed at “Preflight" not in text,
                              "preflight (plans/full_server.check_server) measures free space in data_directory, not in the "
                              f"live database's tablespace {space}: a copy that cannot fit passes preflight")
                    assert "not enough disk" in text and h.app.running  # refused before the app was stopped
                else:
                    assert "failed at “Restore the backup aside”" in text and "was dropped" in text
                    refute("No space left on device" not in text,
                              "with restore_jobs > 1 the message quotes pg_restore's last error line ('a worker "
                              "process died unexpectedly'), not the cause ('could not extend file ...: No space left "
                              "on device') that is in the output tail (full_rollback.restore_aside)")
            finally:
                await h.close()
        finally:
            (mount / "ballast").unlink(missing_ok=True)  # a full disk fails even DROP DATABASE's checkpoint
            await drop_databases_like(crm.dbname)  # a tablespace can only be dropped once empty


async def test_health_never_green_after_the_swap_keeps_the_incident_open(tmp_path, crm, stand_in):
    # The start command succeeds but the app never comes up: the stand-in's health answers 503.
    h = await start_harness(tmp_path, crm, stand_in, start='[["true"]]', health_timeout_seconds="2")
    try:
        await start_rollback(h)
        await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
        ending = await run_end(h, "failed at “Start the application”")
        text = ending.all_text()
        assert "did not answer 200 within 2 s (last: HTTP 503)" in text
        assert "The swap is done" in text and "start it with the environment's start command" in text
        assert "stays open" in text
        await h.settle()
        assert h.store().open_incidents()
        assert diff(h.crm.before, await fingerprint(h.crm.dsn)) == []  # the restored database is live
        assert not any("__rollback_" in n for n in await database_names(h.crm.dbname))
        # Retrying the whole rollback must not restore over the restored data: it is refused with advice.
        await start_rollback(h)
        again = await h.slack.wait_for_message(CHANNEL, "already swapped the restored copy in", timeout=WAIT)
        assert "Start the application" in again.all_text()
        await h.settle()
        assert diff(h.crm.before, await fingerprint(h.crm.dsn)) == []
        # The retry the incident stays open for: someone fixes the app, then presses the button.
        h.app.flag.touch()
        await h.slack.click(OPERATOR, ending, "retry-app")
        done = await h.slack.wait_for_message(CHANNEL, "Application restart of staging finished", timeout=WAIT)
        assert "up and passes its checks" in done.all_text()
        await h.settle()
        assert h.store().open_incidents() and diff(h.crm.before, await fingerprint(h.crm.dsn)) == []
    finally:
        await h.close()


@pytest.mark.parametrize("stretch", ["within_retry_budget", "eight_seconds"])
async def test_slack_failing_during_the_restore_neither_delays_the_rollback_nor_loses_messages(harness, stretch):
    h = harness
    await start_rollback(h)
    await approval_message(h)
    # The stretch starts with the next message (the restore's own lines): step lines queue behind it.
    if stretch == "within_retry_budget":  # one message is answered 429, 429, 503 before it goes through
        h.slack.inject_failure("chat.postMessage", status=429, retry_after=2, times=2)
        h.slack.inject_failure("chat.postMessage", status=503, times=1)
    else:  # Slack answers 503 to every chat.postMessage for eight seconds
        h.slack.inject_failure("chat.postMessage", status=503, times=10_000)
    started = time.monotonic()
    # The runner goes on while the notifier is stuck: restore and verify end, the swap waits.
    await poll(lambda: step_state(h, "verify") == "succeeded", timeout=30, what="the verify step")
    assert time.monotonic() - started < 4, "the rollback waited on Slack"
    thread = lines(h)
    assert not any(t.startswith("✅ Verify the restored copy") for t in thread)
    if stretch == "eight_seconds":
        await asyncio.sleep(8 - (time.monotonic() - started))
        h.slack.clear_failures()
    await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
    await run_end(h, "INCIDENT RESOLVED")
    await h.settle()
    assert diff(h.crm.before, await fingerprint(h.crm.dsn)) == []
    assert {c.status for c in h.slack.calls("chat.postMessage")} >= {503}
    thread = lines(h)
    where = [next((i for i, t in enumerate(thread) if t.startswith(f"✅ {title}")), None) for title in STEP_TITLES]
    missing = [title for title, line in zip(STEP_TITLES, where) if line is None]
    refute(bool(missing) and stretch == "eight_seconds",
              f"step lines {missing} were never delivered: bot/app.py's retry handlers give up after 3 retries "
              "(3.5-6.5 s of 5xx) and bot/notifier.py then logs and drops the message")
    assert missing == [] and where == sorted(where)  # every step line, in the order the steps ran

