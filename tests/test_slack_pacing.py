"""Slack in production, over HTTP: a full rollback within Slack's per-channel pace, no message posted
twice when Slack's answer is lost, and the health and metrics routes.

The fake enforces Slack's documented limit (`rate_limit`: a token bucket per channel for
chat.postMessage, 429 with Retry-After past it) and can apply a post and still answer 500
(`inject_failure(..., apply=True)`), which is what a timeout or a 5xx after the fact looks like.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from support.harness import APPROVER, APPROVER_2, CHANNEL, GROUP_MEMBER, LEAD, Harness, start_harness
from support.slack import STEP_TITLES, WAIT, approval_message, lines, run_end, start_rollback


async def fetch(h: Harness, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{h.runtime.port}{path}") as answer:
            return answer.status, await answer.text()


async def metrics(h: Harness) -> dict[tuple[str, tuple], float]:
    """Every sample served at /metrics: (name, sorted labels) -> value."""
    status, text = await fetch(h, "/metrics")
    assert status == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def poll(predicate, what: str, timeout: float = 10.0) -> None:
    """For what the fake Slack does not see change (the bot's own state): look every 20 ms."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"no {what} within {timeout} s"
        await asyncio.sleep(0.02)


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: dict, name: str, **labels: str) -> float:
    """The sum over every sample of `name` whose labels include `labels`."""
    return sum(v for (n, got), v in samples.items() if n == name and set(labels.items()) <= set(got))


async def test_a_full_rollback_keeps_slacks_pace_and_says_what_matters_first(tmp_path, crm, stand_in):
    h = await start_harness(tmp_path, crm, stand_in, slack_posts_per_second="1", slack_post_burst="3")
    h.slack.rate_limit(per_second=1.0, burst=3, retry_after=1)  # Slack's documented pace per channel
    try:
        await start_rollback(h)
        request = await approval_message(h)
        waiting = await metrics(h)
        await h.slack.click(APPROVER, request, "approval-approve")
        resolved = await run_end(h, "INCIDENT RESOLVED")
        await h.settle(timeout=WAIT)

        assert h.slack.ratelimited <= 3, f"{h.slack.ratelimited} posts were refused with 429"
        # Every step line arrived, in the order the steps ran; lines that piled up came together.
        said = lines(h)
        where = [next((i for i, line in enumerate(said) if line.startswith(f"✅ {title}")), None)
                 for title in STEP_TITLES]
        assert None not in where and where == sorted(where), said
        thread = [m for m in h.slack.messages(CHANNEL, include_replies=True) if m.thread_ts and m.ts != m.thread_ts]
        assert len(thread) < len([line for m in thread for line in m.text.splitlines()])  # coalesced, not dropped
        assert not [t for t, n in Counter(m.text for m in h.slack.messages(CHANNEL)).items() if n > 1]

        # RESOLVED went ahead of the progress lines queued before it: within 3 s of the swap.
        run = h.store().runs()[0]
        swap = next(s for s in h.store().steps(run.id) if s.key == "swap")
        assert float(resolved.ts) - swap.ended_at.timestamp() < 3.0
        requested = next(e for e in h.store().audit_events() if e.action == "approval.requested")
        assert float(request.ts) - requested.at.timestamp() < 1.0  # the burst's last token waits for it

        # The metrics tell the same story as Slack's side.
        assert value(waiting, "rollback_approvals_waiting") == 1
        done = await metrics(h)
        assert value(done, "rollback_approvals_waiting") == 0
        assert value(done, "rollback_runs_total", plan="full", environment="staging", outcome="succeeded") == 1
        assert value(done, "rollback_step_duration_seconds_count", plan="full", step="restore_aside",
                     state="succeeded") == 1
        assert total(done, "rollback_slack_calls_total", method="chat.postMessage", result="ratelimited") \
            == h.slack.ratelimited
        assert total(done, "rollback_slack_calls_total", method="chat.postMessage", result="ok") \
            == len([c for c in h.slack.calls("chat.postMessage") if c.status == 200])
        assert value(done, "rollback_restore_items_per_second", environment="staging") > 0
        assert value(done, "rollback_restore_bytes_per_second", environment="staging") > 0
        assert value(done, "rollback_restore_progress_ratio", environment="staging") == 1
        assert value(done, "rollback_slack_queue_depth") == 0
        assert value(done, "rollback_slack_queue_oldest_seconds") == 0
        assert all(name.startswith("rollback_") for name, _ in done if not name.startswith(("python_", "process_")))
    finally:
        await h.close()


async def test_a_post_whose_answer_was_lost_is_not_posted_again(harness: Harness, caplog):
    h = harness
    caplog.set_level(logging.INFO, logger="bot.poster")
    # Slack takes the first posts (the alert, then lines in its thread) and then answers 500.
    h.slack.inject_failure("chat.postMessage", status=500, apply=True, times=4)
    await start_rollback(h)
    await h.slack.click(APPROVER, await approval_message(h), "approval-approve")
    await run_end(h, "INCIDENT RESOLVED")
    await h.settle()
    assert [c.status for c in h.slack.calls("chat.postMessage")][:4] == [500] * 4
    messages = h.slack.messages(CHANNEL, include_replies=True)
    assert len([m for m in messages if "INCIDENT ALERT" in m.text]) == 1
    twice = [text for text, n in Counter(line for line in lines(h) if line.startswith("✅")).items() if n > 1]
    assert twice == []
    assert all(any(line.startswith(f"✅ {title}") for line in lines(h)) for title in STEP_TITLES)
    found = [r for r in caplog.records if "reached Slack although the answer was lost" in r.getMessage()]
    assert len(found) == 4
    assert total(await metrics(h), "rollback_slack_calls_total", method="chat.postMessage", result="http_5xx") == 4


async def test_readyz_names_what_is_wrong_and_healthz_stays_alive(tmp_path, crm, stand_in):
    h = await start_harness(tmp_path, crm, stand_in)
    try:
        # Ready once auth.test, asked in the background at start-up, was answered.
        await poll(lambda: h.runtime.slack_checked is None, "auth.test answered")
        status, body = await fetch(h, "/readyz")
        assert status == 200 and '"status": "ready"' in body and '"store": "ok"' in body and '"slack": "ok"' in body
    finally:
        await h.close()
    # Slack refuses the bot token: alive, not ready, and the body says which token and why.
    (tmp_path / "refused").mkdir()
    h = await start_harness(tmp_path / "refused", crm, stand_in,
                            prepare=lambda slack: slack.inject_failure("auth.test", error="invalid_auth"))
    try:
        await poll(lambda: h.runtime.fatal.done(), "auth.test refused")
        status, body = await fetch(h, "/readyz")
        assert status == 503 and "Slack refused SLACK_BOT_TOKEN (invalid_auth)" in body and '"store": "ok"' in body
        status, body = await fetch(h, "/healthz")
        assert status == 200 and '"status": "alive"' in body
        assert "invalid_auth" in h.runtime.fatal.result() and "xoxb-" in h.runtime.fatal.result()
    finally:
        await h.close()


async def test_a_page_whose_answer_was_lost_is_not_sent_twice(harness: Harness):
    """Pages go to each approver's DM (opened with conversations.open), searched like a channel."""
    h = harness
    await h.slack.send_command(LEAD, "assess staging")
    question = await h.slack.wait_for_message(CHANNEL, "CRITICAL, MINOR or UNSURE", timeout=WAIT)
    await h.runtime.deps.notifier.drain()
    h.slack.inject_failure("chat.postMessage", status=500, apply=True, times=4)  # the channel's line and 3 pages
    await h.slack.click(LEAD, question, "severity-unsure")
    await h.slack.wait_for(lambda: all(any("needs you" in m.text for m in h.slack.messages(u))
                                       for u in (APPROVER, APPROVER_2, GROUP_MEMBER)), timeout=WAIT)
    await h.settle()
    assert [c.status for c in h.slack.calls("chat.postMessage")].count(500) == 4
    for user in (APPROVER, APPROVER_2, GROUP_MEMBER):
        assert len(h.slack.messages(user)) == 1, [m.text for m in h.slack.messages(user)]
    assert len([m for m in h.slack.messages(CHANNEL) if "is UNSURE about" in m.text]) == 1
