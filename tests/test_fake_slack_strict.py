"""The fake as strict as Slack: Block Kit validation (``invalid_blocks``), ``msg_too_long``, the
per-channel rate limit on chat.postMessage, "applied, then failed" faults, and finding a message
again by its metadata. slack_sdk's own client against a started FakeSlack; no database."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncServerErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from fake_slack import FakeSlack
from fake_slack.responses import new_hook

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-test-token"
SHARED = Path(__file__).parent / "slack_wire"
APPROVAL_BLOCKS = json.loads((SHARED / "block_actions.json").read_text())["message"]["blocks"]


@pytest.fixture
async def fake():
    async with FakeSlack(SECRET, bot_token=TOKEN) as f:
        f.add_user("U2147483697", "dba.alice", "Alice")
        f.add_channel("C0OTHER", "other")
        yield f


@pytest.fixture
def client(fake):
    return AsyncWebClient(token=TOKEN, base_url=fake.api_url)


def plain(text: str) -> dict:
    return {"type": "plain_text", "text": text}


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(**fields) -> dict:
    return {"type": "actions", "elements": [{"type": "button", "action_id": "go", "value": "1", **fields}]}


async def refused(call) -> dict:
    """The answer of a call that must fail with a SlackApiError."""
    with pytest.raises(SlackApiError) as e:
        await call
    return e.value.response


# --- Block Kit -------------------------------------------------------------------------------


INVALID = {
    "button without text": ([button()], "missing required field: text"),
    "button text as a bare string": ([button(text="Go")], "expected an object, got a string"),
    "button text over 75": ([button(text=plain("x" * 76))], "cannot exceed 75 characters"),
    "button text in mrkdwn": ([button(text={"type": "mrkdwn", "text": "Go"})], "must be of type plain_text"),
    "confirm dialog without title": ([button(text=plain("Go"), confirm={"text": {"type": "mrkdwn", "text": "?"},
                                                                        "confirm": plain("Y"), "deny": plain("N")})],
                                     "missing required field: title"),
    "button value over 2,000": ([button(text=plain("Go"), value="v" * 2001)], "cannot exceed 2000 characters"),
    "section text of 3,001": ([section("x" * 3001)], "cannot exceed 3000 characters"),
    "empty section text": ([section("")], "must be more than 0 characters"),
    "section without text or fields": ([{"type": "section"}], "text or fields attribute must be specified"),
    "field over 2,000": ([{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}],
                         "must be less than 2001 characters"),
    "11 fields": ([{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}], "cannot exceed 10 items"),
    "header over 150": ([{"type": "header", "text": plain("h" * 151)}], "cannot exceed 150 characters"),
    "block_id over 255": ([{**section("x"), "block_id": "b" * 256}], "block_id cannot exceed 255"),
    "unknown block type": ([{"type": "sektion", "text": {"type": "mrkdwn", "text": "x"}}],
                           "unsupported block type: sektion"),
    "unknown element type": ([{"type": "actions", "elements": [{"type": "buton", "text": plain("x")}]}],
                             "unsupported element type: buton"),
    "51 blocks": ([{"type": "divider"}] * 51, "no more than 50 items allowed"),
    "blocks not a list": ({"type": "divider"}, "expected an array of blocks"),
}


@pytest.mark.parametrize("case", list(INVALID))
async def test_invalid_blocks_are_refused_like_slack(fake, client, case):
    blocks, why = INVALID[case]
    r = await refused(client.chat_postMessage(channel="C0INCIDENTS", text="fallback", blocks=blocks))
    assert r.status_code == 200 and r["error"] == "invalid_blocks"
    (message,) = r["response_metadata"]["messages"]
    assert message.startswith("[ERROR] ") and why in message and "[json-pointer:/blocks" in message
    assert fake.messages("C0INCIDENTS") == []  # nothing posted
    assert fake.calls("chat.postMessage")[-1].error == "invalid_blocks"


async def test_valid_blocks_are_accepted_and_stored_with_block_ids(fake, client):
    blocks = [
        {"type": "header", "text": plain("h" * 150)},
        section("x" * 3000),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2000}] * 10},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 10},
        {"type": "divider"},
        button(text=plain("b" * 75), value="v" * 2000, style="danger",
               confirm={"title": plain("Sure?"), "text": {"type": "mrkdwn", "text": "*really*"},
                        "confirm": plain("Yes"), "deny": plain("No")}),
        {"type": "actions", "elements": [{"type": "checkboxes", "action_id": "pick", "options": [
            {"text": {"type": "mrkdwn", "text": "*a*"}, "value": "a"}]}]},
    ]
    r = await client.chat_postMessage(channel="C0INCIDENTS", text="ok", blocks=blocks + APPROVAL_BLOCKS)
    assert r["ok"]
    stored = fake.messages("C0INCIDENTS")[-1].blocks
    assert len(stored) == len(blocks) + len(APPROVAL_BLOCKS) and all(b.get("block_id") for b in stored)
    assert stored[-1]["block_id"] == APPROVAL_BLOCKS[-1]["block_id"]  # given ids are kept
    assert (await client.chat_postMessage(channel="C0INCIDENTS", text="50", blocks=[{"type": "divider"}] * 50))["ok"]


async def test_update_and_ephemeral_are_checked_and_a_refused_update_changes_nothing(fake, client):
    r = await client.chat_postMessage(channel="C0INCIDENTS", text="before", blocks=[section("before")])
    bad = await refused(client.chat_update(channel="C0INCIDENTS", ts=r["ts"], text="after", blocks=[section("")]))
    assert bad["error"] == "invalid_blocks"
    msg = fake.messages("C0INCIDENTS")[-1]
    assert msg.text == "before" and msg.blocks[0]["text"]["text"] == "before" and msg.history == []
    bad = await refused(client.chat_postEphemeral(channel="C0INCIDENTS", user="U2147483697", text="e",
                                                   blocks=[button()]))
    assert bad["error"] == "invalid_blocks" and fake.ephemerals() == []
    await client.chat_update(channel="C0INCIDENTS", ts=r["ts"], text="after", blocks=[section("after")])
    assert msg.text == "after"


async def test_text_over_40000_is_msg_too_long(fake, client):
    r = await refused(client.chat_postMessage(channel="C0INCIDENTS", text="x" * 40_001))
    assert r["error"] == "msg_too_long"
    ok = await client.chat_postMessage(channel="C0INCIDENTS", text="x" * 40_000)
    r = await refused(client.chat_update(channel="C0INCIDENTS", ts=ok["ts"], text="y" * 40_001))
    assert r["error"] == "msg_too_long" and fake.messages("C0INCIDENTS")[-1].text == "x" * 40_000


async def test_views_are_checked(fake, client):
    # A trigger as a command would hand out (no bot here to send one to); no 3-second expiry.
    fake.workspace.trigger_ttl = None
    fake.workspace.triggers["1.2.abc"] = ("U2147483697", time.time())
    view = {"type": "modal", "title": plain("Report"), "blocks": [section("fine")]}
    for bad, why in (({**view, "title": plain("t" * 25)}, "title must be between 1 and 24 characters"),
                     ({**view, "blocks": [{"type": "divider"}] * 101}, "no more than 100 items allowed"),
                     ({**view, "blocks": [section("")]}, "must be more than 0 characters [json-pointer:/view/blocks/0"),
                     ({**view, "submit": "Send"}, "expected an object, got a string"),
                     ({k: v for k, v in view.items() if k != "title"}, "missing required field: title")):
        r = await refused(client.views_open(trigger_id="1.2.abc", view=bad))
        assert r["error"] == "invalid_blocks" and why in r["response_metadata"]["messages"][0], why
    assert fake.views == []  # and the trigger was not used up by a refused view
    opened = await client.views_open(trigger_id="1.2.abc", view={**view, "blocks": [{"type": "divider"}] * 100})
    r = await refused(client.views_update(view_id=opened["view"]["id"], view={**view, "blocks": [button()]}))
    assert r["error"] == "invalid_blocks" and len(fake.views[0].view["blocks"]) == 100


async def test_response_url_refuses_invalid_blocks_with_http_400(fake):
    url = new_hook(fake.workspace, "U2147483697", "C0INCIDENTS")  # as a command would hand it out
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json={"text": "x", "blocks": [section("y" * 3001)]}) as resp:
            assert resp.status == 400
            body = await resp.json()
        async with s.post(url, json={"text": "x", "blocks": [section("fine")]}) as resp:
            assert resp.status == 200
    assert body["error"] == "invalid_blocks" and "3000" in body["response_metadata"]["messages"][0]
    assert [p.status for p in fake.response_posts] == [400, 200] and len(fake.ephemerals()) == 1


# --- rate limit --------------------------------------------------------------------------------


async def test_rate_limit_burst_then_429_then_refill(fake, client):
    fake.rate_limit(per_second=1.0, burst=3, retry_after=2)
    for i in range(3):
        await client.chat_postMessage(channel="C0INCIDENTS", text=f"burst {i}")
    r = await refused(client.chat_postMessage(channel="C0INCIDENTS", text="too fast"))
    assert r.status_code == 429 and r.headers["Retry-After"] == "2" and r["error"] == "ratelimited"
    assert [m.text for m in fake.messages("C0INCIDENTS")] == ["burst 0", "burst 1", "burst 2"]
    assert fake.ratelimited == 1 and fake.ratelimited_in("incidents") == 1
    assert [c.status for c in fake.calls("chat.postMessage")] == [200, 200, 200, 429]

    # Channels have their own buckets; other methods are not limited.
    for i in range(3):
        await client.chat_postMessage(channel="C0OTHER", text=f"other {i}")
    await client.chat_update(channel="C0INCIDENTS", ts=fake.messages("C0INCIDENTS")[0].ts, text="edited")
    assert fake.ratelimited_in("C0OTHER") == 0

    await asyncio.sleep(1.05)  # one token back
    await client.chat_postMessage(channel="C0INCIDENTS", text="after a second")
    assert (await refused(client.chat_postMessage(channel="C0INCIDENTS", text="again"))).status_code == 429
    assert fake.ratelimited == 2 and fake.ratelimited_in("C0INCIDENTS") == 2

    fake.rate_limit(None)
    for i in range(5):
        await client.chat_postMessage(channel="C0INCIDENTS", text=f"free {i}")
    assert fake.ratelimited == 2


async def test_rate_limit_is_off_by_default(fake, client):
    for i in range(10):
        await client.chat_postMessage(channel="C0INCIDENTS", text=f"m{i}")
    assert fake.ratelimited == 0 and len(fake.messages("C0INCIDENTS")) == 10


# --- applied, then failed -------------------------------------------------------------------------


async def test_applied_then_500_posts_once_and_a_retry_posts_a_duplicate(fake, client):
    fake.inject_failure("chat.postMessage", status=500, apply=True)
    r = await refused(client.chat_postMessage(channel="C0INCIDENTS", text="posted anyway"))
    assert r.status_code == 500 and r["error"] == "internal_error"
    assert [m.text for m in fake.messages("C0INCIDENTS")] == ["posted anyway"]
    assert [(c.status, c.error) for c in fake.calls("chat.postMessage")] == [(500, "internal_error")]

    # The naive client that retries 5xx posts it twice: what a bot must guard against.
    fake.inject_failure("chat.postMessage", status=500, apply=True)
    retrying = AsyncWebClient(token=TOKEN, base_url=fake.api_url,
                              retry_handlers=[AsyncServerErrorRetryHandler(max_retry_count=1)])
    await retrying.chat_postMessage(channel="C0INCIDENTS", text="twice")
    assert [m.text for m in fake.messages("C0INCIDENTS")] == ["posted anyway", "twice", "twice"]


async def test_applied_then_slow_answer_makes_a_short_timeout_give_up(fake):
    fake.inject_failure("chat.postMessage", delay=1.0, apply=True)
    impatient = AsyncWebClient(token=TOKEN, base_url=fake.api_url, timeout=0.2)
    with pytest.raises(asyncio.TimeoutError):
        await impatient.chat_postMessage(channel="C0INCIDENTS", text="slow")
    assert [m.text for m in fake.messages("C0INCIDENTS")] == ["slow"]  # applied before the sleep
    call = await fake.wait_for(lambda: fake.calls("chat.postMessage"), timeout=3)
    assert call[0].status == 200 and call[0].ok  # the late answer was the real one


async def test_old_inject_failure_calls_keep_working(fake, client):
    fake.inject_failure("chat.postMessage")  # default: 429, nothing applied
    r = await refused(client.chat_postMessage(channel="C0INCIDENTS", text="x"))
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    fake.inject_failure("chat.postMessage", error="channel_not_found")
    assert (await refused(client.chat_postMessage(channel="C0INCIDENTS", text="x")))["error"] == "channel_not_found"
    assert fake.messages("C0INCIDENTS") == []


# --- metadata ----------------------------------------------------------------------------------


async def test_history_and_replies_return_metadata_when_asked(fake, client):
    meta = {"event_type": "rollback_started", "event_payload": {"run_id": "r-42"}}
    root = await client.chat_postMessage(channel="C0INCIDENTS", text="rollback r-42", metadata=meta)
    assert root["message"]["metadata"] == meta
    await client.chat_postMessage(channel="C0INCIDENTS", text="step", thread_ts=root["ts"],
                                  metadata={"event_type": "step", "event_payload": {"n": 1}})
    await client.chat_postMessage(channel="C0INCIDENTS", text="unrelated")

    hist = await client.conversations_history(channel="C0INCIDENTS", include_all_metadata=True)
    assert [m["text"] for m in hist["messages"]] == ["unrelated", "rollback r-42"]  # newest first, no replies
    found = [m for m in hist["messages"] if m.get("metadata", {}).get("event_payload", {}).get("run_id") == "r-42"]
    assert [m["ts"] for m in found] == [root["ts"]]
    plain_hist = await client.conversations_history(channel="C0INCIDENTS")
    assert all("metadata" not in m for m in plain_hist["messages"])  # not without the flag

    window = await client.conversations_history(channel="C0INCIDENTS", include_all_metadata=True,
                                                oldest=root["ts"], inclusive=True, limit=1)
    assert [m["text"] for m in window["messages"]] == ["unrelated"] and window["has_more"]
    older = await client.conversations_history(channel="C0INCIDENTS", include_all_metadata=True,
                                               latest=hist["messages"][0]["ts"])
    assert [m["metadata"]["event_type"] for m in older["messages"]] == ["rollback_started"]

    reps = await client.conversations_replies(channel="C0INCIDENTS", ts=root["ts"], include_all_metadata=True)
    assert [m.get("metadata", {}).get("event_type") for m in reps["messages"]] == ["rollback_started", "step"]
    reps = await client.conversations_replies(channel="C0INCIDENTS", ts=root["ts"])
    assert all("metadata" not in m for m in reps["messages"])


async def test_malformed_metadata_is_refused(fake, client):
    for bad in ({"event_payload": {}}, {"event_type": "x", "event_payload": "nope"}):
        r = await refused(client.chat_postMessage(channel="C0INCIDENTS", text="x", metadata=bad))
        assert r["error"] == "invalid_metadata_format"
    assert fake.messages("C0INCIDENTS") == []
