"""The fake Slack's Socket Mode edge, driven by slack_sdk's real aiohttp SocketModeClient as the app.

No database and no bot: the "app" here is the SocketModeClient plus a listener that records each
request and acks it the way Bolt would (``{"envelope_id", "payload"?}``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from aiohttp import WSMessage
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from fake_slack import FakeSlack

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-1-A123456-1-0123456789abcdef"
SHARED = Path(__file__).parent / "slack_wire"  # copies of the shared Slack wire formats
APPROVAL_BLOCKS = json.loads((SHARED / "block_actions.json").read_text())["message"]["blocks"]


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``predicate`` (for state on the client's side, which the fake cannot announce)."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {predicate!r}")
        await asyncio.sleep(0.02)
    return result


class App:
    """slack_sdk's SocketModeClient, recording every message and request and acking like Bolt."""

    def __init__(self, fake: FakeSlack) -> None:
        self.messages: list[dict] = []  # hello, disconnect and envelopes, in arrival order
        self.requests: list[SocketModeRequest] = []
        self.ack: dict | None = None  # the ack's payload; None acks with no payload
        self.silent = False  # True: never ack
        self.web = AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url)
        # A short ping interval: the client notices a dropped connection after about one interval.
        self.client = SocketModeClient(app_token=APP_TOKEN, web_client=self.web, ping_interval=0.5)
        # Raw frames: the client's message_listeners never see a disconnect (it handles those itself).
        self.client.on_message_listeners.append(self._on_frame)
        self.client.socket_mode_request_listeners.append(self._on_request)

    async def _on_frame(self, frame: WSMessage) -> None:
        self.messages.append(json.loads(frame.data))

    async def _on_request(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        self.requests.append(request)
        if not self.silent:
            await client.send_socket_mode_response(SocketModeResponse(request.envelope_id, self.ack))

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m.get("type") == kind]


@pytest.fixture
async def fake():
    async with FakeSlack(SECRET, bot_token=BOT_TOKEN, app_token=APP_TOKEN, ack_timeout=2.0) as f:
        f.add_user("U1", "dba.alice", "Alice")
        yield f


@pytest.fixture
async def app(fake):
    a = App(fake)
    await a.client.connect()
    await fake.wait_for_socket(1, timeout=5)
    yield a
    await a.client.close()


# --- apps.connections.open and the handshake ----------------------------------------------


async def test_connections_open_takes_only_the_app_token(fake):
    web = AsyncWebClient(base_url=fake.api_url)
    for token, code in ((BOT_TOKEN, "not_allowed_token_type"), ("xapp-1-wrong", "invalid_auth"),
                        ("", "not_authed")):
        with pytest.raises(SlackApiError) as e:
            await web.apps_connections_open(app_token=token)
        assert e.value.response["error"] == code, token
    ok = await web.apps_connections_open(app_token=APP_TOKEN)
    assert ok["url"].startswith(f"ws://127.0.0.1:{fake.port}/link/?ticket=")
    by_form = await web.api_call("apps.connections.open", data={"token": APP_TOKEN})  # the token form field
    assert by_form["ok"] and by_form["url"] != ok["url"]  # a fresh ticket every time

    # The app-level token is no good for the bot's methods.
    with pytest.raises(SlackApiError) as e:
        await AsyncWebClient(token=APP_TOKEN, base_url=fake.api_url).chat_postMessage(channel="C0INCIDENTS", text="x")
    assert e.value.response["error"] == "not_allowed_token_type"

    calls = fake.calls("apps.connections.open")
    assert [c.error for c in calls] == ["not_allowed_token_type", "invalid_auth", "not_authed", None, None]
    assert all("token" not in c.args for c in calls)  # logged without the secret


async def test_without_an_app_token_there_is_no_socket_mode():
    async with FakeSlack(SECRET, bot_token=BOT_TOKEN) as f:
        with pytest.raises(SlackApiError) as e:
            await AsyncWebClient(base_url=f.api_url).apps_connections_open(app_token="xapp-1-any")
        assert e.value.response["error"] == "unknown_method"


async def test_a_ticket_opens_one_connection_with_hello(fake):
    url = (await AsyncWebClient(base_url=fake.api_url).apps_connections_open(app_token=APP_TOKEN))["url"]
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello" and hello["num_connections"] == 1
            assert hello["connection_info"] == {"app_id": "A123456"} and hello["debug_info"]["host"]
            assert fake.socket_connections == 1 and fake.socket_connects == 1
            for bad in (url, url.split("?")[0] + "?ticket=guessed", url.split("?")[0]):  # used, unknown, none
                with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                    await session.ws_connect(bad)
                assert e.value.status == 401
        await fake.wait_for(lambda: fake.socket_connections == 0, timeout=5, what="the close")
    assert fake.socket_connects == 1


async def test_the_real_client_connects_and_gets_hello(fake, app):
    hello = (await eventually(lambda: app.of_type("hello")))[0]
    assert hello["num_connections"] == 1 and hello["connection_info"]["app_id"] == fake.workspace.app_id
    assert fake.socket_connections == 1 and fake.socket_connects == 1
    assert len(fake.calls("apps.connections.open")) == 1


# --- envelopes and acks ------------------------------------------------------------------


async def test_slash_command_goes_over_the_socket_and_its_ack_is_shown(fake, app):
    app.ack = {"text": "Checking staging…"}
    reply = await fake.send_command("U1", "status staging")
    assert reply.ok and not reply.timed_out
    assert reply.json == {"text": "Checking staging…"} and json.loads(reply.body) == reply.json
    assert reply.response_url.startswith(fake.base_url + "/response/") and reply.trigger_id

    request = app.requests[-1]
    assert request.type == "slash_commands" and request.accepts_response_payload
    expected = dict(parse_qsl((SHARED / "slash_command.form").read_text().strip(), keep_blank_values=True))
    assert set(request.payload) == set(expected)  # the HTTP form's fields, as a JSON object
    assert request.payload["command"] == "/rollback" and request.payload["text"] == "status staging"
    assert request.payload["user_id"] == "U1" and request.payload["channel_id"] == "C0INCIDENTS"
    assert request.payload["response_url"] == reply.response_url and request.payload["trigger_id"] == reply.trigger_id
    assert fake.socket_envelopes[-1]["envelope_id"] == request.envelope_id
    assert fake.last_request is None  # nothing went over HTTP

    shown = await fake.wait_for_ephemeral("U1", "Checking staging", timeout=2)
    assert shown.source == "ack" and shown.channel == "C0INCIDENTS"

    # An in_channel ack shows the command and the answer in the channel, as over HTTP.
    app.ack = {"response_type": "in_channel", "text": "Rolling back staging"}
    assert (await fake.send_command("U1", "full staging")).ok
    assert [m.text for m in fake.messages("C0INCIDENTS")] == ["/rollback full staging", "Rolling back staging"]

    # An ack without a payload shows nothing.
    app.ack = None
    reply = await fake.send_command("U1", "help")
    assert reply.ok and reply.json is None and reply.body == ""
    assert len(fake.ephemerals("U1")) == 1


async def test_click_goes_over_the_socket_as_interactive(fake, app):
    posted = await app.web.chat_postMessage(channel="C0INCIDENTS", text="Approval needed", blocks=APPROVAL_BLOCKS)
    message = fake.messages("C0INCIDENTS")[-1]
    assert message.ts == posted["ts"]
    reply = await fake.click("U1", message, "approval-approve")
    assert reply.ok and reply.json is None and reply.response_url and reply.trigger_id

    request = app.requests[-1]
    assert request.type == "interactive"
    payload = request.payload  # the JSON payload itself, not url-encoded
    assert payload["type"] == "block_actions" and payload["user"]["id"] == "U1"
    assert payload["actions"][0]["action_id"] == "approval-approve"
    assert payload["container"]["message_ts"] == message.ts and payload["message"]["ts"] == message.ts
    assert payload["response_url"] == reply.response_url
    assert not request.accepts_response_payload  # Slack ignores a block_actions ack's body


async def test_view_submission_over_the_socket_closes_or_keeps_the_modal(fake, app):
    trigger = (await fake.send_command("U1", "report")).trigger_id
    modal = {"type": "modal", "callback_id": "incident-report", "title": {"type": "plain_text", "text": "Report"},
             "blocks": [{"type": "input", "block_id": "root_cause", "label": {"type": "plain_text", "text": "R"},
                         "element": {"type": "plain_text_input", "action_id": "value"}}]}
    view_id = (await app.web.views_open(trigger_id=trigger, view=modal))["view"]["id"]

    app.ack = {"response_action": "errors", "errors": {"root_cause": "say more"}}
    refused = await fake.submit_view("U1", view_id, {"root_cause": "bad"})
    assert refused.json["response_action"] == "errors" and fake.views  # stays open
    request = app.requests[-1]
    assert request.type == "interactive" and request.accepts_response_payload
    assert request.payload["type"] == "view_submission"
    assert request.payload["view"]["state"]["values"]["root_cause"]["value"]["value"] == "bad"

    app.ack = None
    assert (await fake.submit_view("U1", view_id, {"root_cause": "fine"})).ok and not fake.views  # closed


async def test_no_ack_is_a_non_200_reply(fake, app):
    fake.outgoing.ack_timeout = 0.3  # keep the test fast; Slack itself waits 3 s
    app.silent = True
    reply = await fake.send_command("U1", "status staging")
    assert reply.status == 408 and not reply.ok and reply.json is None
    assert 250 < reply.elapsed_ms < 2000
    assert app.requests and fake.ephemerals("U1") == []  # delivered, but nothing shown
    app.silent = False
    app.ack = {"text": "late but fine"}
    assert (await fake.send_command("U1", "status staging")).json == {"text": "late but fine"}


async def test_stop_ends_a_pending_delivery_at_once(fake, app):
    app.silent = True
    sending = asyncio.create_task(fake.send_command("U1", "status staging"))
    await eventually(lambda: app.requests)
    started = time.monotonic()
    await fake.stop()
    reply = await asyncio.wait_for(sending, 1)
    assert reply.status == 408 and time.monotonic() - started < 1.5


async def test_without_a_socket_delivery_needs_bot_url(fake):
    with pytest.raises(RuntimeError, match="no Socket Mode connection"):
        await fake.send_command("U1", "status staging")


# --- refreshes and failures ----------------------------------------------------------------


async def test_refresh_requested_makes_the_client_reconnect(fake, app):
    assert await fake.socket_disconnect("refresh_requested") == 1
    await fake.wait_for_socket(1, timeout=5, connects=2)
    disconnect = (await eventually(lambda: app.of_type("disconnect")))[0]
    assert disconnect == {"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "fake"}}
    await fake.wait_for(lambda: fake.socket_connections == 1, timeout=5, what="the old connection to close")
    assert len(fake.calls("apps.connections.open")) == 2
    await eventually(lambda: len(app.of_type("hello")) == 2)  # the new connection said hello too

    app.ack = {"text": "still here"}
    reply = await fake.send_command("U1", "status staging")
    assert reply.ok and reply.json == {"text": "still here"}
    assert fake.socket_connects == 2


async def test_a_dropped_connection_makes_the_client_reconnect(fake, app):
    assert await fake.socket_drop() == 1
    assert fake.socket_connections == 0
    await fake.wait_for_socket(1, timeout=5, connects=2)
    assert len(fake.calls("apps.connections.open")) == 2

    app.ack = {"text": "back"}
    reply = await fake.send_command("U1", "status staging")
    assert reply.ok and reply.json == {"text": "back"}
    await fake.wait_for_ephemeral("U1", "back", timeout=2)


async def test_stop_closes_sockets_promptly():
    fake = await FakeSlack(SECRET, bot_token=BOT_TOKEN, app_token=APP_TOKEN).start()
    url = (await AsyncWebClient(base_url=fake.api_url).apps_connections_open(app_token=APP_TOKEN))["url"]
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url)  # never reads, so never answers the close frame
        await fake.wait_for_socket(1, timeout=5)
        started = time.monotonic()
        await fake.stop()
        assert time.monotonic() - started < 3
        assert fake.socket_connections == 0
        await ws.close()


async def test_a_bolt_app_in_socket_mode_works_against_the_fake(fake):
    """What ``rollback-bot serve`` does without ``--http``: Bolt's AsyncSocketModeHandler."""
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
    from slack_bolt.async_app import AsyncApp

    bolt = AsyncApp(client=AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url))

    @bolt.command("/rollback")
    async def command(ack, body):
        await ack(f"Checking {body['text']}")

    @bolt.action("approval-approve")
    async def approve(ack, respond):
        await ack()
        await respond("Approved")

    handler = AsyncSocketModeHandler(bolt, APP_TOKEN)
    await handler.connect_async()
    try:
        await fake.wait_for_socket(1, timeout=5)
        reply = await fake.send_command("U1", "staging")
        assert reply.ok and reply.json == {"text": "Checking staging"}
        await fake.wait_for_ephemeral("U1", "Checking staging", timeout=2)
        await bolt.client.chat_postMessage(channel="C0INCIDENTS", text="Approval needed", blocks=APPROVAL_BLOCKS)
        assert (await fake.click("U1", fake.messages("C0INCIDENTS")[-1], "approval-approve")).ok
        await fake.wait_for(lambda: fake.response_posts, timeout=2, what="the response_url post")
        assert fake.response_posts[0].body["text"] == "Approved"
    finally:
        await handler.close_async()
