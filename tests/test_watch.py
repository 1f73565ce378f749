"""`/rollback watch`: the watcher against a real PostgreSQL, and its messages.

Each test gets its own database (`rbtest_watch_<hex>`, dropped afterwards) and a watcher with
tiny limits (0.2 s polls, 0.5 s long queries, 1.2 s hung). The environment's DSN carries a
password that trust auth ignores; no event and no message built from it may contain it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from uuid import uuid4

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from actions.config import Environment
from actions.watch.watcher import AlertKind, WatchAlert, WatchEnded, Watcher, WatchStarted, WatchSummary
from messages.watch import watch_alert, watch_ended, watch_started

ADMIN_DSN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
ADMIN = conninfo_to_dict(ADMIN_DSN)
PG_HOST, PG_PORT = ADMIN.get("host") or "127.0.0.1", int(ADMIN.get("port") or 5432)
PASSWORD = "pw-Wt4tch-s3cret"


def message_of(event) -> tuple[str, str]:
    built = {WatchStarted: watch_started, WatchAlert: watch_alert, WatchEnded: watch_ended}[type(event)](event)
    return built.text, json.dumps(built.blocks, ensure_ascii=False)


class Recorder:
    """The emit callback: keeps every event; the tests wait on it."""

    def __init__(self):
        self.events: list = []

    def __call__(self, event) -> None:
        self.events.append(event)

    def alerts(self, kind: AlertKind, pid: int | None = None) -> list[WatchAlert]:
        return [e for e in self.events if isinstance(e, WatchAlert) and e.kind == kind
                and (pid is None or e.pid == pid)]

    async def until(self, kind: AlertKind, pid: int | None = None, count: int = 1, timeout: float = 5.0):
        limit = time.monotonic() + timeout
        while len(self.alerts(kind, pid)) < count:
            assert time.monotonic() < limit, f"no {kind} alert for pid {pid} within {timeout} s: {self.events}"
            await asyncio.sleep(0.05)
        return self.alerts(kind, pid)[count - 1]

    def check_secrets(self) -> None:
        assert self.events, "nothing was emitted"
        for event in self.events:
            for text in (repr(event), *message_of(event)):
                assert PASSWORD not in text and "password" not in text.lower(), text


@pytest.fixture
async def database():
    name = f"rbtest_watch_{uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    async with await connect(name) as conn:
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        await conn.execute("INSERT INTO t SELECT generate_series(1, 100)")
    try:
        yield name
    finally:
        async with await psycopg.AsyncConnection.connect(ADMIN_DSN, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def recorder():
    rec = Recorder()
    yield rec
    rec.check_secrets()


async def connect(dbname: str, *, autocommit: bool = True) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(make_conninfo(ADMIN_DSN, dbname=dbname), autocommit=autocommit)


def environment(dbname: str, port: int = PG_PORT, **limits) -> Environment:
    dsn = make_conninfo(ADMIN_DSN, dbname=dbname, host=PG_HOST, port=str(port), password=PASSWORD)
    values = {"long_query_seconds": 0.5, "hung_minutes": 0.02, "watch_poll_seconds": 0.2, **limits}
    return Environment(name="staging", dsn=SecretStr(dsn), backup_dir="/nonexistent", **values)


async def background(conn: psycopg.AsyncConnection, query: str) -> asyncio.Task:
    """Run `query` on `conn` in a task (it is expected to end by cancellation or termination)."""
    return asyncio.create_task(conn.execute(query))


async def settle(task: asyncio.Task) -> None:
    try:
        await asyncio.wait_for(task, 5)
    except psycopg.Error:
        pass  # cancelled or terminated on purpose


async def signal(dbname: str, function: str, pid: int) -> None:
    async with await connect(dbname) as admin:
        await admin.execute(sql.SQL("SELECT {}(%s)").format(sql.Identifier(function)), (pid,))


async def test_long_query_is_reported_once(database, recorder):
    sleeper = await connect(database)
    pid = sleeper.info.backend_pid
    query = await background(sleeper, "SELECT pg_sleep(30)  -- the migration\n, 'second line'")
    watcher = Watcher(environment(database), recorder, minutes=1, started_by="U0OPS1").start()
    try:
        alert = await recorder.until(AlertKind.LONG_QUERY, pid)
        await asyncio.sleep(1.0)  # five more polls: no repeat
        assert len(recorder.alerts(AlertKind.LONG_QUERY)) == 1
        assert f"pid {pid} (postgres)" in alert.text and "`SELECT pg_sleep(30) -- the migration`" in alert.text
        assert "second line" not in alert.text
        assert watcher.polls >= 5 and not watcher.done
    finally:
        await signal(database, "pg_cancel_backend", pid)
        await settle(query)
        watcher.stop("stopped by <@U0OPS1>")
        ended = await watcher.wait()
        await sleeper.close()
    assert isinstance(recorder.events[0], WatchStarted) and recorder.events[-1] is ended
    assert ended.summary.longest_query_pid == pid and ended.summary.longest_query_seconds >= 0.5
    assert ended.summary.alerts_by_kind == (("long_query", 1),)
    assert "pg_sleep(30)" in ended.summary.longest_query


async def test_lock_wait_names_the_blocker_then_hung(database, recorder):
    holder, waiter = await connect(database, autocommit=False), await connect(database)
    holder_pid, waiter_pid = holder.info.backend_pid, waiter.info.backend_pid
    await holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")  # stays idle in transaction
    blocked = await background(waiter, "SELECT count(*) FROM t")
    watcher = Watcher(environment(database, long_query_seconds=60), recorder, minutes=1, started_by="U0OPS1").start()
    try:
        wait = await recorder.until(AlertKind.LOCK_WAIT, waiter_pid)
        assert f"waiting for AccessShareLock on t, held by pid {holder_pid} (postgres, idle in transaction" in wait.text
        assert "LOCK TABLE t IN ACCESS EXCLUSIVE MODE" in wait.text and "SELECT count(*) FROM t" in wait.text
        hung = await recorder.until(AlertKind.HUNG, waiter_pid, timeout=4)
        assert "has made no progress for" in hung.text and "waiting since" in hung.text
        assert f"held by pid {holder_pid}" in hung.text and f"pg_terminate_backend({waiter_pid})" in hung.text
        held = await recorder.until(AlertKind.HUNG, holder_pid, timeout=2)  # the holder is stuck too
        assert "AccessExclusiveLock on t" in held.text and f"blocking pid {waiter_pid}" in held.text
        await asyncio.sleep(0.8)
        assert [len(recorder.alerts(kind, pid)) for kind, pid in [
            (AlertKind.LOCK_WAIT, waiter_pid), (AlertKind.HUNG, waiter_pid), (AlertKind.HUNG, holder_pid)]] == [1, 1, 1]
        assert len(recorder.alerts(AlertKind.LOCK_WAIT)) == 1
    finally:
        await holder.rollback()
        await settle(blocked)
        watcher.stop("test over")
        await watcher.wait()
        await holder.close()
        await waiter.close()


async def test_idle_in_transaction_holding_locks_is_hung(database, recorder):
    reader, idler = await connect(database, autocommit=False), await connect(database, autocommit=False)
    await reader.execute("SELECT * FROM t")  # holds AccessShareLock on t
    await idler.execute("SELECT 1")  # holds no lock anyone could wait for: not stuck
    watcher = Watcher(environment(database), recorder, minutes=1, started_by="U0OPS1").start()
    try:
        hung = await recorder.until(AlertKind.HUNG, reader.info.backend_pid, timeout=4)
        assert "idle in transaction since" in hung.text and "AccessShareLock on t" in hung.text
        assert "Last statement: `SELECT * FROM t`" in hung.text and "its client, silent since" in hung.text
        await asyncio.sleep(0.8)
        assert [a.pid for a in recorder.alerts(AlertKind.HUNG)] == [reader.info.backend_pid]
    finally:
        watcher.stop("test over")
        await watcher.wait()
        await reader.close()
        await idler.close()


class Proxy:
    """A TCP proxy to PostgreSQL that the test can take down (dropping its connections) and up again."""

    def __init__(self):
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.frozen = False  # a hung network: connections stay open, bytes vanish

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(PG_HOST, PG_PORT)
        self.writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    if not self.frozen:
                        sink.write(data)
                    await sink.drain()
            except OSError:
                pass  # the other side went away: close both
            finally:
                sink.transport.abort()
                self.writers.discard(sink)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_connection_lost_and_back_tells_the_migrations_fate(database, recorder):
    proxy = Proxy()
    await proxy.start()
    migration = await connect(database)  # straight to the server: it survives the proxy's outage
    pid = migration.info.backend_pid
    running = await background(migration, "SELECT pg_sleep(30)")
    watcher = Watcher(environment(database, port=proxy.port), recorder, minutes=1, started_by="U0OPS1").start()
    try:
        await recorder.until(AlertKind.LONG_QUERY, pid)  # the watcher has seen the migration
        await proxy.stop()
        lost = await recorder.until(AlertKind.CONNECTION_LOST)
        assert lost.text.startswith(f"Cannot reach 127.0.0.1:{proxy.port}/{database}: ")
        assert f"migration's backend looked like pid {pid}" in lost.text and lost.pid == pid
        await asyncio.sleep(0.8)  # four failed polls, one alert
        assert len(recorder.alerts(AlertKind.CONNECTION_LOST)) == 1 and watcher.failed_polls >= 3
        await proxy.start()
        back = await recorder.until(AlertKind.CONNECTION_BACK)
        assert "answers again after" in back.text and f"still running (pid {pid}" in back.text
        assert "let it continue" in back.text

        await proxy.stop()  # a second, different loss: the migration dies during it
        await recorder.until(AlertKind.CONNECTION_LOST, count=2)
        await signal(database, "pg_terminate_backend", pid)
        await settle(running)
        await proxy.start()
        back = await recorder.until(AlertKind.CONNECTION_BACK, count=2)
        assert f"pid {pid}" in back.text and "is gone — check the database state" in back.text
        assert "full rollback" in back.text
    finally:
        watcher.stop("test over")
        ended = await watcher.wait()
        await proxy.stop()
        await migration.close()
    assert ended.summary.failed_polls == watcher.failed_polls >= 4
    assert dict(ended.summary.alerts_by_kind) == {"long_query": 1, "connection_lost": 2, "connection_back": 2}


async def test_a_poll_that_never_answers_is_abandoned(database, recorder):
    proxy = Proxy()
    await proxy.start()
    # A short poll limit instead of the default (connect + statement timeouts), so the test is quick.
    watcher = Watcher(environment(database, port=proxy.port), recorder, minutes=1, started_by="U0OPS1",
                      poll_limit_seconds=0.5).start()
    try:
        while watcher.polls < 2:
            await asyncio.sleep(0.05)
        proxy.frozen = True
        lost = await recorder.until(AlertKind.CONNECTION_LOST, timeout=3)
        assert "no answer within 0.5 s" in lost.text
        await asyncio.sleep(1.2)  # more polls hang and are abandoned: still one alert
        assert len(recorder.alerts(AlertKind.CONNECTION_LOST)) == 1 and watcher.failed_polls >= 2
        proxy.frozen = False
        await recorder.until(AlertKind.CONNECTION_BACK, timeout=3)
        proxy.frozen = True  # stop() during a hanging poll ends the watch at once
        await asyncio.sleep(0.3)
        started = time.monotonic()
        watcher.stop("test over")
        await asyncio.wait_for(watcher.wait(), 3)
        assert time.monotonic() - started < 1.5
        assert not watcher._abandoned  # no poll outlives the watch
    finally:
        watcher.stop("test over")
        await watcher.wait()
        await proxy.stop()


async def test_unreachable_from_the_start(database, recorder):
    proxy = Proxy()
    await proxy.start()
    await proxy.stop()  # a port nobody listens on, made reachable later
    watcher = Watcher(environment(database, port=proxy.port), recorder, minutes=1, started_by="U0OPS1").start()
    try:
        lost = await recorder.until(AlertKind.CONNECTION_LOST)
        assert "Connection refused" in lost.text and "No busy session was seen" in lost.text
        await proxy.start()
        back = await recorder.until(AlertKind.CONNECTION_BACK)
        assert "none was seen before the loss" in back.text
    finally:
        watcher.stop("test over")
        await watcher.wait()
        await proxy.stop()


async def test_ends_by_itself_with_its_figures(database, recorder):
    started = time.monotonic()
    watcher = Watcher(environment(database), recorder, minutes=0.02, started_by="U0OPS1").start()
    ended = await asyncio.wait_for(watcher.wait(), 5)
    took = time.monotonic() - started
    assert watcher.done and 1.1 <= took < 2.5
    assert [type(e) for e in recorder.events] == [WatchStarted, WatchEnded]
    assert recorder.events[0].target == f"{PG_HOST}:{PG_PORT}/{database}" and recorder.events[0].started_by == "U0OPS1"
    assert ended.reason == "its 0.02 min are up"
    assert 5 <= ended.summary.polls <= 7 and ended.summary.failed_polls == 0 and ended.summary.alerts == 0
    assert ended.summary.longest_query_seconds is None


async def test_stop_ends_early_and_emit_failures_do_not_stop_it(database, recorder):
    def failing_emit(event):
        recorder(event)
        raise RuntimeError("slack is down")

    watcher = Watcher(environment(database), failing_emit, minutes=5, started_by="U0OPS1").start()
    await asyncio.sleep(0.5)
    assert not watcher.done and watcher.polls >= 2
    started = time.monotonic()
    watcher.stop("stopped by <@U0OPS2>")
    watcher.stop("a second stop is ignored")
    ended = await asyncio.wait_for(watcher.wait(), 2)
    assert time.monotonic() - started < 0.5 and watcher.done
    assert ended.reason == "stopped by <@U0OPS2>" and recorder.events[-1] is ended
    assert "stopped by <@U0OPS2>" in watch_ended(ended).blocks[0]["text"]["text"]  # the mention stays live


def test_messages_have_icon_text_and_advice():
    icons = {"long_query": "🕑", "lock_wait": "🔒", "hung": "🧊", "connection_lost": "🔌", "connection_back": "✅"}
    for kind, icon in icons.items():
        message = watch_alert(WatchAlert("staging", AlertKind(kind), "pid 7 runs `SELECT a<b & c>d`", 7))
        section_text = message.blocks[0]["text"]["text"]
        assert section_text.startswith(icon) and "`SELECT a&lt;b &amp; c&gt;d`" in section_text
        assert message.text.startswith(icon) and "staging" in message.text
        assert message.blocks[1]["type"] == "context" and "Runbook" in message.blocks[1]["elements"][0]["text"]
    summary = WatchSummary(seconds=900, polls=180, failed_polls=2, alerts=3,
                           alerts_by_kind=(("long_query", 1), ("connection_lost", 1), ("connection_back", 1)),
                           longest_query_seconds=125, longest_query_pid=4242, longest_query="ALTER TABLE sales …")
    ended = watch_ended(WatchEnded("staging", "the 15 min 00 s are up", summary))
    assert "180 polls (2 unanswered)" in ended.text
    assert "3 alerts (1 long query, 1 lost connection, 1 reconnection)" in ended.text
    assert "longest query 2 min 05 s (pid 4242: `ALTER TABLE sales …`)" in ended.text
    started = watch_started(WatchStarted("staging", "db:5432/crm", 15, "U0OPS1", 5, 120, 10))
    assert "Watching `staging` (db:5432/crm) for 15 min 00 s, started by <@U0OPS1>" in started.text
    assert "queries over 2 min 00 s" in started.text and "stuck for 10 min 00 s" in started.text
