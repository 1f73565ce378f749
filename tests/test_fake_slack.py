"""Tests of fake_slack over real HTTP: slack_sdk against the fake, and the fake against a tiny bot."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from fake_slack import FakeSlack, Message, sign

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-test-token"
SHARED = Path(__file__).parent / "slack_wire"  # copies of the shared Slack wire formats

APPROVAL_BLOCKS = json.loads((SHARED / "block_actions.json").read_text())["message"]["blocks"]


@pytest.fixture
async def fake():
    async with FakeSlack(SECRET, bot_token=TOKEN) as f:
        f.add_user("U2147483697", "dba.alice", "Alice")
        f.add_user("U2147483698", "bob", "Bob")
        f.add_usergroup("S0DBA", ["U2147483697", "U2147483698"])
        yield f


@pytest.fixture
def client(fake):
    return AsyncWebClient(token=TOKEN, base_url=fake.api_url)


class Bot:
    """A tiny stand-in for the bot: verifies signatures like Bolt, records bodies, acks."""

    def __init__(self) -> None:
        self.verifier = SignatureVerifier(SECRET)
        self.requests: list[dict] = []
        self.ack: tuple[int, str, str] = (200, "", "text/plain")

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        valid = self.verifier.is_valid_request(body, dict(request.headers))
        self.requests.append({"body": body, "headers": dict(request.headers), "valid": valid})
        if not valid:
            return web.Response(status=401, text="invalid signature")
        status, text, ctype = self.ack
        return web.Response(status=status, text=text, content_type=ctype)

    def form(self, i: int = -1) -> dict:
        return dict(parse_qsl(self.requests[i]["body"].decode(), keep_blank_values=True))

    def payload(self, i: int = -1) -> dict:
        return json.loads(self.form(i)["payload"])


@pytest.fixture
async def bot(fake):
    b = Bot()
    app = web.Application()
    app.router.add_post("/slack/events", b.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.bot_url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    yield b
    await runner.cleanup()


async def post_json(url: str, body: dict) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json=body) as r:
            return r.status, await r.json()


# --- signing -----------------------------------------------------------------------------


def test_sign_is_what_slack_sdk_verifies():
    ts = str(int(time.time()))
    body = b"token=x&text=full+staging"
    assert SignatureVerifier(SECRET).is_valid(body, ts, sign(SECRET, ts, body))
    assert sign(SECRET, ts, body) == sign(SECRET, int(ts), body.decode())
    assert not SignatureVerifier(SECRET).is_valid(body, ts, sign("other", ts, body))


# --- Web API ---------------------------------------------------------------------------


async def test_post_update_thread_and_ephemeral(fake, client):
    r = await client.chat_postMessage(channel="C0INCIDENTS", text="Approval needed", blocks=APPROVAL_BLOCKS)
    assert r["ok"] and r["channel"] == "C0INCIDENTS"
    assert r["message"]["bot_id"] == "B0001" and r["message"]["ts"] == r["ts"]
    msg = fake.messages("C0INCIDENTS")[-1]
    assert msg.ts == r["ts"] and msg.user == "U0BOT" and msg.blocks[0]["block_id"] == "plan"
    seen = msg.all_text()
    assert "Approval needed" in seen and "Approve" in seen and "Roll back staging?" in seen and "Cancel" in seen
    assert "ap_01" not in seen  # button values are not visible

    up = await client.chat_update(channel="C0INCIDENTS", ts=msg.ts, text="Approved by alice", blocks=[])
    assert up["text"] == "Approved by alice"
    assert msg.text == "Approved by alice" and msg.blocks == [] and msg.edited["user"] == "U0BOT"
    assert msg.history[0]["text"] == "Approval needed" and msg.history[0]["blocks"]

    r1 = await client.chat_postMessage(channel="C0INCIDENTS", text="step 1", thread_ts=msg.ts)
    r2 = await client.chat_postMessage(channel="C0INCIDENTS", text="done", thread_ts=r1["ts"],
                                       reply_broadcast=True)
    assert [m.text for m in fake.replies("C0INCIDENTS", msg.ts)] == ["step 1", "done"]
    assert [m.text for m in fake.messages("C0INCIDENTS")] == ["Approved by alice", "done"]  # broadcast
    assert len(fake.messages("C0INCIDENTS", include_replies=True)) == 3

    hist = await client.conversations_history(channel="C0INCIDENTS")
    assert [m["text"] for m in hist["messages"]] == ["done", "Approved by alice"]  # newest first
    assert hist["messages"][1]["reply_count"] == 2
    reps = await client.conversations_replies(channel="C0INCIDENTS", ts=msg.ts)
    assert [m["text"] for m in reps["messages"]] == ["Approved by alice", "step 1", "done"]
    assert reps["messages"][2]["thread_ts"] == msg.ts

    e = await client.chat_postEphemeral(channel="C0INCIDENTS", user="U2147483697", text="only you")
    assert fake.ephemerals(user="U2147483697")[0].ts == e["message_ts"]
    assert fake.ephemerals(user="U2147483698") == []

    link = await client.chat_getPermalink(channel="C0INCIDENTS", message_ts=r2["ts"])
    assert link["permalink"].startswith(fake.base_url + "/archives/C0INCIDENTS/p")
    assert fake.find_message("C0INCIDENTS", lambda m: m.text == "step 1").ts == r1["ts"]


async def test_errors(fake, client):
    with pytest.raises(SlackApiError) as e:
        await client.chat_postMessage(channel="C0NOPE", text="x")
    assert e.value.response["error"] == "channel_not_found"
    with pytest.raises(SlackApiError) as e:
        await client.chat_update(channel="C0INCIDENTS", ts="1.000001", text="x")
    assert e.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as e:
        await client.users_info(user="U0NOBODY")
    assert e.value.response["error"] == "user_not_found"
    with pytest.raises(SlackApiError) as e:
        await client.usergroups_users_list(usergroup="S0NOPE")
    assert e.value.response["error"] == "no_such_subteam"
    with pytest.raises(SlackApiError) as e:
        await client.api_call("chat.teleport")
    assert e.value.response["error"] == "unknown_method"
    for token, code in (("xoxb-wrong", "invalid_auth"), ("", "not_authed")):
        with pytest.raises(SlackApiError) as e:
            await AsyncWebClient(token=token, base_url=fake.api_url).auth_test()
        assert e.value.response["error"] == code
    assert [c.error for c in fake.calls("auth.test")] == ["invalid_auth", "not_authed"]


async def test_form_encoded_calls_work(fake, client):
    r = await client.api_call("chat.postMessage", data={"channel": "incidents", "text": "hi",
                                                        "blocks": json.dumps(APPROVAL_BLOCKS)})
    assert r["ok"] and fake.messages("C0INCIDENTS")[-1].blocks[1]["block_id"] == "decision"
    assert (await client.auth_test())["user_id"] == "U0BOT"


async def test_channels_users_usergroups(fake, client):
    for bad, code in (("Inc-Upper", "invalid_name_specials"), ("a" * 81, "invalid_name_maxlength"),
                      ("has space", "invalid_name_specials"), ("--", "invalid_name_punctuation"),
                      ("incidents", "name_taken")):
        with pytest.raises(SlackApiError) as e:
            await client.conversations_create(name=bad)
        assert e.value.response["error"] == code, bad
    c = await client.conversations_create(name="inc-20261124-staging-0001")
    cid = c["channel"]["id"]
    assert c["channel"]["is_channel"] and fake.channel("inc-20261124-staging-0001").id == cid
    await client.conversations_invite(channel=cid, users=["U2147483697", "U2147483698"])
    assert fake.channel(cid).members == ["U0BOT", "U2147483697", "U2147483698"]
    with pytest.raises(SlackApiError) as e:
        await client.conversations_invite(channel=cid, users="U2147483697")
    assert e.value.response["error"] == "already_in_channel"
    info = await client.conversations_info(channel=cid)
    assert info["channel"]["name"] == "inc-20261124-staging-0001" and info["channel"]["num_members"] == 3
    u = await client.users_info(user="U2147483697")
    assert u["user"]["name"] == "dba.alice" and u["user"]["profile"]["real_name"] == "Alice"
    g = await client.usergroups_users_list(usergroup="S0DBA")
    assert g["users"] == ["U2147483697", "U2147483698"]
    assert [c.method for c in fake.calls()][-3:] == ["conversations.info", "users.info", "usergroups.users.list"]


async def test_files_upload_v2(fake, client):
    parent = await client.chat_postMessage(channel="C0INCIDENTS", text="incident")
    content = b"# Incident report\n\nrolled back.\n"
    r = await client.files_upload_v2(content=content, filename="INCIDENT_REPORT.md", title="Incident report",
                                     channel="C0INCIDENTS", thread_ts=parent["ts"], initial_comment="report")
    fid = r["file"]["id"]
    assert r["file"]["title"] == "Incident report"
    (f,) = fake.files
    assert f.id == fid and f.content == content and f.channels == ["C0INCIDENTS"]
    (msg,) = fake.replies("C0INCIDENTS", parent["ts"])
    assert msg.text == "report" and msg.files[0].content == content
    assert [c.method for c in fake.calls()][-2:] == ["files.getUploadURLExternal", "files.completeUploadExternal"]
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{fake.base_url}/files/{fid}") as resp:
            assert await resp.read() == content


# --- fault injection -------------------------------------------------------------------


def retrying_client(fake) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=fake.api_url, retry_handlers=[
        AsyncRateLimitErrorRetryHandler(max_retry_count=2), AsyncServerErrorRetryHandler(max_retry_count=2)])


async def test_rate_limit_then_retry_succeeds(fake, client):
    fake.inject_failure("chat.postMessage", status=429, retry_after=1)
    r = await retrying_client(fake).chat_postMessage(channel="C0INCIDENTS", text="after 429")
    assert r["ok"]
    assert [c.status for c in fake.calls("chat.postMessage")] == [429, 200]
    assert [m.text for m in fake.messages("C0INCIDENTS")] == ["after 429"]

    fake.inject_failure("chat.postMessage", status=429, retry_after=7)  # no retry handler: surfaces
    with pytest.raises(SlackApiError) as e:
        await client.chat_postMessage(channel="C0INCIDENTS", text="x")
    assert e.value.response.status_code == 429 and e.value.response.headers["Retry-After"] == "7"
    assert e.value.response["error"] == "ratelimited"


async def test_server_errors_then_retry_succeeds(fake, client):
    fake.inject_failure("chat.update", status=503)
    fake.inject_failure("chat.postMessage", status=500)
    r = await retrying_client(fake).chat_postMessage(channel="C0INCIDENTS", text="after 500")
    assert [c.status for c in fake.calls("chat.postMessage")] == [500, 200]
    await retrying_client(fake).chat_update(channel="C0INCIDENTS", ts=r["ts"], text="edited")
    assert [c.status for c in fake.calls("chat.update")] == [503, 200]

    fake.inject_failure("conversations.invite", error="not_in_channel", times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as e:
            await client.conversations_invite(channel="C0INCIDENTS", users="U2147483697")
        assert e.value.response.status_code == 200 and e.value.response["error"] == "not_in_channel"
    await client.conversations_invite(channel="C0INCIDENTS", users="U2147483697")


# --- Slack -> bot ----------------------------------------------------------------------


async def test_send_command_form_and_ack(fake, bot):
    bot.ack = (200, "Working on it", "text/plain")
    reply = await fake.send_command("U2147483697", "full staging")
    assert reply.status == 200 and reply.body == "Working on it" and reply.elapsed_ms > 0
    req = bot.requests[-1]
    assert req["valid"] and req["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    expected = dict(parse_qsl((SHARED / "slash_command.form").read_text().strip(), keep_blank_values=True))
    form = bot.form()
    assert list(form) == list(expected)
    assert form["user_name"] == "dba.alice" and form["text"] == "full staging" and form["command"] == "/rollback"
    assert form["channel_id"] == "C0INCIDENTS" and form["channel_name"] == "incidents" and form["team_id"] == "T0001"
    assert form["response_url"] == reply.response_url and form["response_url"].startswith(fake.base_url)
    assert fake.ephemerals("U2147483697", "C0INCIDENTS")[-1].text == "Working on it"

    # The response_url: ephemeral by default, in_channel as a channel message, 5 posts at most.
    assert await post_json(reply.response_url, {"text": "plan: 3 steps"}) == (200, {"ok": True})
    assert fake.ephemerals("U2147483697")[-1].text == "plan: 3 steps"
    await post_json(reply.response_url, {"text": "Rolling back staging", "response_type": "in_channel"})
    assert fake.messages("C0INCIDENTS")[-1].text == "Rolling back staging"
    for _ in range(3):
        assert (await post_json(reply.response_url, {"text": "more"}))[0] == 200
    assert await post_json(reply.response_url, {"text": "sixth"}) == (404, {"ok": False, "error": "used_url"})

    # A JSON in_channel ack is shown in the channel, preceded by the user's command.
    bot.ack = (200, json.dumps({"text": "On it", "response_type": "in_channel"}), "application/json")
    reply = await fake.send_command("U2147483698", "status")
    assert reply.json == {"text": "On it", "response_type": "in_channel"}
    assert [m.text for m in fake.messages("C0INCIDENTS")][-2:] == ["/rollback status", "On it"]


async def test_click_payload_and_response_url(fake, client, bot):
    r = await client.chat_postMessage(channel="C0INCIDENTS", text="Approval needed", blocks=APPROVAL_BLOCKS)
    msg = fake.messages("C0INCIDENTS")[-1]
    reply = await fake.click("U2147483698", msg, "approval-approve")
    assert reply.ok and bot.requests[-1]["valid"]
    p = bot.payload()
    reference = json.loads((SHARED / "block_actions.json").read_text())
    assert set(p) == set(reference)
    assert set(p["actions"][0]) == set(reference["actions"][0])
    assert p["type"] == "block_actions" and p["user"] == {"id": "U2147483698", "username": "bob", "name": "bob",
                                                           "team_id": "T0001"}
    assert p["container"] == {"type": "message", "message_ts": r["ts"], "channel_id": "C0INCIDENTS",
                              "is_ephemeral": False}
    assert p["message"]["ts"] == r["ts"] and p["message"]["blocks"] == msg.blocks
    assert p["actions"][0]["value"] == '{"approval":"ap_01"}' and p["actions"][0]["block_id"] == "decision"
    assert p["channel"] == {"id": "C0INCIDENTS", "name": "incidents"}

    await fake.click("U2147483698", ("C0INCIDENTS", r["ts"]), "approval-deny", value="override")
    assert bot.payload()["actions"][0]["value"] == "override" and "style" not in bot.payload()["actions"][0]
    with pytest.raises(LookupError, match="approval-approve"):
        await fake.click("U2147483698", msg, "nope")

    status, _ = await post_json(reply.response_url, {"replace_original": True, "text": "Approved by bob",
                                                     "blocks": [{"type": "section", "text": {
                                                         "type": "mrkdwn", "text": "*Approved* by bob"}}]})
    assert status == 200 and msg.text == "Approved by bob" and "*Approved* by bob" in msg.all_text()
    assert msg.history and fake.messages("C0INCIDENTS") == [msg]
    await post_json(reply.response_url, {"delete_original": True})
    assert fake.messages("C0INCIDENTS") == []


async def test_click_inside_ephemeral(fake, client, bot):
    await client.chat_postEphemeral(channel="C0INCIDENTS", user="U2147483697", text="confirm?",
                                    blocks=APPROVAL_BLOCKS)
    eph = fake.ephemerals("U2147483697")[-1]
    reply = await fake.click("U2147483697", eph, "approval-deny")
    assert bot.payload()["container"]["is_ephemeral"] is True and "message" not in bot.payload()
    await post_json(reply.response_url, {"replace_original": True, "text": "Cancelled"})
    assert eph.text == "Cancelled"


async def test_security_knobs(fake, bot):
    assert (await fake.send_command("U2147483697", "x", sign=False)).status == 401
    assert "X-Slack-Signature" not in bot.requests[-1]["headers"]
    assert (await fake.send_command("U2147483697", "x", signature="v0=bad")).status == 401
    old = int(time.time()) - 600
    assert (await fake.send_command("U2147483697", "x", timestamp=old)).status == 401
    assert bot.requests[-1]["headers"]["X-Slack-Signature"] == sign(SECRET, old, bot.requests[-1]["body"])

    ok = await fake.send_command("U2147483697", "full staging")
    first = fake.last_request
    assert ok.status == 200 and first.body == bot.requests[-1]["body"]
    again = await fake.replay()  # byte-identical, original headers: valid for Slack's 5 min window
    assert again.status == 200 and bot.requests[-1]["body"] == first.body
    assert bot.requests[-1]["headers"]["X-Slack-Signature"] == first.headers["X-Slack-Signature"]
    resigned = await fake.send_command("U2147483697", "ignored", raw_body=first.body)
    assert resigned.status == 200 and bot.requests[-1]["body"] == first.body
    assert resigned.response_url == ok.response_url  # the replayed body's own response_url


async def test_views_need_a_fresh_trigger(fake, client, bot):
    reply = await fake.send_command("U2147483697", "report")
    view = {"type": "modal", "callback_id": "incident-report", "title": {"type": "plain_text", "text": "Report"},
            "blocks": []}
    r = await client.views_open(trigger_id=reply.trigger_id, view=view)
    assert r["view"]["id"] == fake.views[0].id and fake.views[0].user == "U2147483697"
    u = await client.views_update(view_id=r["view"]["id"], view={**view, "blocks": []}, hash=r["view"]["hash"])
    assert u["view"]["hash"] != r["view"]["hash"]
    for trigger, code in ((reply.trigger_id, "trigger_exchanged"), ("1.2.3", "invalid_trigger_id")):
        with pytest.raises(SlackApiError) as e:
            await client.views_open(trigger_id=trigger, view=view)
        assert e.value.response["error"] == code


# --- waiting ----------------------------------------------------------------------------


async def test_wait_for_message(fake, client):
    async def later():
        await asyncio.sleep(0.05)
        r = await client.chat_postMessage(channel="C0INCIDENTS", text="Rollback started")
        await asyncio.sleep(0.05)
        await client.chat_postMessage(channel="C0INCIDENTS", text="Rollback *done*", thread_ts=r["ts"])

    task = asyncio.create_task(later())
    started = await fake.wait_for_message("C0INCIDENTS", "started", timeout=5)
    done = await fake.wait_for_message("C0INCIDENTS", "done", timeout=5, in_thread_of=started)
    assert isinstance(done, Message) and done.thread_ts == started.ts
    await task
    with pytest.raises(TimeoutError) as e:
        await fake.wait_for_message("C0INCIDENTS", "never", timeout=0.2)
    assert "Rollback started" in str(e.value) and "never" in str(e.value)


# --- with a real Bolt app ------------------------------------------------------------------


async def test_bolt_app_round_trip(fake):
    from slack_bolt.async_app import AsyncApp

    app = AsyncApp(signing_secret=SECRET, client=AsyncWebClient(token=TOKEN, base_url=fake.api_url))

    @app.command("/rollback")
    async def on_command(ack, respond, command, client):
        await ack("Checking staging…")
        await respond(text="Plan ready")
        await client.chat_postMessage(channel=command["channel_id"], text="Approval needed", blocks=APPROVAL_BLOCKS)

    @app.action("approval-approve")
    async def on_approve(ack, respond, body, client):
        await ack()
        await respond(replace_original=True, text=f"Approved by <@{body['user']['id']}>")
        await client.chat_postMessage(channel=body["channel"]["id"], thread_ts=body["message"]["ts"],
                                      text="Rolling back")

    runner = web.AppRunner(app.web_app(), shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    fake.bot_url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
    try:
        assert (await fake.send_command("U2147483697", "full staging")).body == "Checking staging…"
        msg = await fake.wait_for_message("C0INCIDENTS", "Approval needed", timeout=5)
        await fake.wait_for_ephemeral("U2147483697", "Plan ready", timeout=5)
        assert (await fake.click("U2147483698", msg, "approval-approve")).status == 200
        await fake.wait_for_message("C0INCIDENTS", "Rolling back", in_thread_of=msg, timeout=5)
        await fake.wait_for(lambda: msg.text.startswith("Approved by <@U2147483698>"), timeout=5)
        assert (await fake.send_command("U2147483697", "x", signature="v0=bad")).status == 401
    finally:
        await runner.cleanup()
