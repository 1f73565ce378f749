"""`/rollback watch` through the real stack: signed slash commands to the real Bolt app over HTTP,
the fake Slack's channels, a real PostgreSQL CRM with real sessions that sleep and lock, the
audit trail. Short limits come from the environment's config (0.2 s polls, 0.5 s long queries).
"""

from __future__ import annotations

import asyncio
import re

import psycopg

from support.harness import BYSTANDER, CHANNEL, LEAD, OPERATOR, Harness, start_harness

WAIT = 30.0
LIMITS = "watch_poll_seconds = 0.2\nlong_query_seconds = 0.5\nhung_minutes = 5"
USAGE = "Usage: `/rollback watch <env> [minutes|stop]`."


async def command(h: Harness, text: str, user: str = OPERATOR):
    """Send `/rollback <text>`; the bot acks at once and answers through the response_url: return that."""
    seen = len(h.slack.ephemerals(user))
    reply = await h.slack.send_command(user, text, channel_id=CHANNEL)
    assert reply.status == 200 and reply.elapsed_ms < 3000, reply.body
    return await h.slack.wait_for(lambda: next(iter(h.slack.ephemerals(user)[seen:]), None), timeout=WAIT,
                                  what=f"the reply to /rollback {text}")


async def until(predicate, what: str) -> None:
    """For what the fake Slack does not see change (the log): look every 50 ms."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"no {what} within {WAIT} s"
        await asyncio.sleep(0.05)


def posted(h: Harness, channel: str, contains: str) -> list:
    return [m for m in h.slack.messages(channel, include_replies=True) if contains in m.all_text()]


def audit(h: Harness, action: str) -> list:
    return [e for e in h.store().audit_events() if e.action == action]


async def connect(h: Harness, *, autocommit: bool = True) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(h.crm.dsn, autocommit=autocommit)


async def finish(conn: psycopg.AsyncConnection, task: asyncio.Task | None = None) -> None:
    """End a background session: cancel what it runs, wait for the task, close the connection."""
    if task is not None and not task.done():
        await conn.cancel_safe()
        try:
            await asyncio.wait_for(task, 10)
        except psycopg.Error:
            pass  # cancelled on purpose
    await conn.close()


async def test_a_long_query_is_posted_in_the_incident_channel_naming_its_pid(tmp_path, crm, stand_in):
    h = await start_harness(tmp_path, crm, stand_in, env_extra=LIMITS)
    sleeper, running = await connect(h), None
    try:
        reply = await command(h, "watch staging 1")
        assert reply.all_text().startswith(f"👀 Started watching `staging` for 1 min 00 s; alerts go to <#{CHANNEL}>.")
        assert "`/rollback watch staging stop`" in reply.all_text()
        started = await h.slack.wait_for_message(CHANNEL, "👀 Watching `staging`", timeout=WAIT)
        assert f"for 1 min 00 s, started by <@{OPERATOR}>" in started.text and "Polling every 0.2 s" in started.text
        assert "queries over 0.5 s" in started.text

        pid = sleeper.info.backend_pid
        running = asyncio.create_task(sleeper.execute("SELECT pg_sleep(30) /* migration 42 */"))
        alert = await h.slack.wait_for_message(CHANNEL, f"pid {pid} (postgres) has been running", timeout=WAIT)
        assert alert.text.startswith("🕑 Long-running query in staging: ")
        assert "(limit 0.5 s): `SELECT pg_sleep(30) /* migration 42 */`" in alert.all_text()
        assert "Runbook Part 2, Level 1" in alert.all_text()
        await asyncio.sleep(0.6)  # three more polls: the same statement is not reported again
        assert len(posted(h, CHANNEL, "Long-running query")) == 1

        [start] = audit(h, "watch.started")
        assert (start.actor, start.environment, start.detail["minutes"], start.incident_id) == (OPERATOR, "staging", 1.0, None)
        [alerted] = audit(h, "watch.alert")
        assert (alerted.actor, alerted.detail) == ("bot", {"kind": "long_query", "pid": pid})
    finally:
        try:
            await finish(sleeper, running)
        finally:
            await h.close()
    # Shutting the bot down ended the watch, and its end was posted and audited before the store closed.
    ended = posted(h, CHANNEL, "🏁 Watch of `staging` ended")
    assert len(ended) == 1 and "the bot is shutting down" in ended[0].text and f"(pid {pid}: `SELECT pg_sleep(30)" in ended[0].text


async def test_one_watch_per_environment_and_stop_posts_its_figures(tmp_path, crm, stand_in, caplog):
    h = await start_harness(tmp_path, crm, stand_in, env_extra=LIMITS)
    sleeper, running = await connect(h), None
    try:
        # Slack refuses the first post (the watch's start): it is logged and the watch goes on.
        h.slack.inject_failure("chat.postMessage", error="channel_not_found")
        await command(h, "watch staging 5")
        await until(lambda: any("could not send the watch's WatchStarted for staging to C0INCIDENTS (channel_not_found)"
                                in r.getMessage() for r in caplog.records), "the failed post in the log")
        second = (await command(h, "watch staging 2", user=LEAD)).all_text()
        assert f"`staging` is already being watched: started by <@{OPERATOR}> for 5 min 00 s" in second
        left = re.search(r"(\d+) min (\d\d) s left", second)
        assert left and 4 * 60 <= int(left[1]) * 60 + int(left[2]) <= 5 * 60, second
        assert "first stop it with `/rollback watch staging stop`" in second and "Nothing was changed." in second
        assert h.runtime.service.watches.running("staging").watcher.started_by == OPERATOR
        assert posted(h, CHANNEL, "👀 Watching") == [] and len(audit(h, "watch.started")) == 1

        pid = sleeper.info.backend_pid
        running = asyncio.create_task(sleeper.execute("SELECT pg_sleep(1.5)"))
        await h.slack.wait_for_message(CHANNEL, f"pid {pid} (postgres) has been running", timeout=WAIT)
        await asyncio.wait_for(running, WAIT)

        stopped = (await command(h, "watch staging stop", user=LEAD)).all_text()
        assert re.match(rf"🏁 The watch of `staging` ended after [\d.]+ s: stopped by <@{LEAD}>\. "
                        rf"Its summary is posted in <#{CHANNEL}>\.", stopped), stopped
        end = await h.slack.wait_for_message(CHANNEL, "🏁 Watch of `staging` ended", timeout=WAIT)
        assert f": stopped by <@{LEAD}>" in end.text
        figures = re.search(r"(\d+) polls · 1 alert \(1 long query\) · longest query (\d+\.\d) s "
                            rf"\(pid {pid}: `SELECT pg_sleep\(1\.5\)`\)", end.text)
        assert figures and 1.0 <= float(figures[2]) <= 1.6, end.text
        [ended] = audit(h, "watch.ended")
        assert ended.detail["polls"] == int(figures[1]) >= 5 and ended.detail["alerts"] == 1
        [stop] = audit(h, "watch.stopped")
        assert (stop.actor, stop.environment, stop.detail["minutes"], stop.detail["started_by"]) == (
            LEAD, "staging", 5.0, OPERATOR)

        nothing = (await command(h, "watch staging stop")).all_text()
        assert "Not done: no watch of `staging` is running, so there is nothing to stop" in nothing
        assert len(audit(h, "watch.stopped")) == 1
        # The ended watch left the registry: a new one may start at once.
        again = await command(h, "watch staging 2", user=LEAD)
        assert again.all_text().startswith("👀 Started watching `staging` for 2 min 00 s")
        assert h.runtime.service.watches.running("staging").watcher.started_by == LEAD
    finally:
        try:
            await finish(sleeper, running)
        finally:
            await h.close()


async def test_non_operators_and_bad_arguments_are_refused_and_start_nothing(tmp_path, crm, stand_in):
    h = await start_harness(tmp_path, crm, stand_in, env_extra=LIMITS)
    try:
        refused = (await command(h, "watch staging", user=BYSTANDER)).all_text()
        assert refused.startswith("🚫 Not done: only operators may start or stop a watch.")
        assert f"Who may: <@{OPERATOR}>, <@{LEAD}>" in refused
        refused_stop = (await command(h, "watch staging stop", user=BYSTANDER)).all_text()
        assert "only operators may start or stop a watch" in refused_stop
        assert [(e.actor, e.outcome, e.environment, e.detail["stop"]) for e in audit(h, "watch.refused")] == [
            (BYSTANDER, "refused", "staging", False), (BYSTANDER, "refused", "staging", True)]

        for word in ("abc", "0", "-3", "nan"):
            text = (await command(h, f"watch staging {word}")).all_text()
            assert text.startswith(f"Minutes must be a positive number (like `30`) or `stop`, not `{word}`. {USAGE}")
            assert "Nothing was started." in text
        too_long = (await command(h, "watch staging 500")).all_text()
        assert too_long.startswith("A watch lasts at most 240 minutes, not 500;") and USAGE in too_long
        unknown = (await command(h, "watch prod")).all_text()
        assert "There is no environment `prod` in the configuration. Configured: `staging`." in unknown
        assert (await command(h, "watch")).all_text().startswith(f"Name one environment. {USAGE}")
        extra = (await command(h, "watch staging 5 please")).all_text()
        assert extra.startswith(f"Unexpected words after `5`: please. {USAGE}")

        await asyncio.sleep(0.5)  # anything wrongly started would have posted by now
        assert h.runtime.service.watches.running("staging") is None
        assert posted(h, CHANNEL, "Watching") == [] and audit(h, "watch.started") == []
    finally:
        await h.close()


async def test_a_lock_wait_names_its_blocker_in_the_open_incidents_channel(tmp_path, crm, stand_in):
    h = await start_harness(tmp_path, crm, stand_in, bot_extra="create_channel = true",
                            env_extra="watch_poll_seconds = 0.2\nlong_query_seconds = 60\nhung_minutes = 5")
    holder, waiter, waiting = await connect(h, autocommit=False), await connect(h), None
    try:
        await command(h, "declare staging migration 42 is slow")
        link = await h.slack.wait_for_message(CHANNEL, "was declared by", timeout=WAIT)
        incident_channel = re.search(r"<#(C\w+)>", link.text)[1]
        [incident] = h.store().open_incidents()

        reply = await command(h, "watch staging")
        assert reply.all_text().startswith(f"👀 Started watching `staging` for 30 min 00 s; alerts go to <#{incident_channel}>.")
        await h.slack.wait_for_message(incident_channel, "👀 Watching `staging`", timeout=WAIT)

        holder_pid, waiter_pid = holder.info.backend_pid, waiter.info.backend_pid
        await holder.execute("LOCK TABLE contracts IN ACCESS EXCLUSIVE MODE")  # the transaction stays open
        waiting = asyncio.create_task(waiter.execute("SELECT count(*) FROM contracts"))
        alert = await h.slack.wait_for_message(incident_channel, "🔒", timeout=WAIT)
        text = alert.all_text()
        assert alert.text.startswith("🔒 Lock wait in staging: ")
        assert (f"pid {waiter_pid} (postgres) is waiting for AccessShareLock on contracts, held by pid {holder_pid} "
                "(postgres, idle in transaction") in text
        assert "`LOCK TABLE contracts IN ACCESS EXCLUSIVE MODE`" in text and "`SELECT count(*) FROM contracts`" in text
        assert "Runbook Contingency 1: look at the blocker" in text
        assert posted(h, CHANNEL, "Lock wait") == [] and posted(h, CHANNEL, "Watching") == []
        [alerted] = audit(h, "watch.alert")
        assert (alerted.incident_id, alerted.detail) == (incident.id, {"kind": "lock_wait", "pid": waiter_pid})
        assert audit(h, "watch.started")[0].incident_id == incident.id
    finally:
        try:
            await holder.rollback()  # releases the lock: the waiter's SELECT finishes
            if waiting is not None:
                await asyncio.wait_for(waiting, WAIT)
        finally:
            await holder.close()
            await waiter.close()
            await h.close()
