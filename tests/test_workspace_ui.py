"""The fake's local workspace (``FakeSlack(..., ui=True)``) over real HTTP: what each person sees,
and what they do reaching a tiny signature-checking bot exactly as Slack's requests would."""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from email.message import EmailMessage
from urllib.parse import parse_qsl

import aiohttp
import aiosmtplib
import pytest
from slack_sdk.signature import SignatureVerifier

from actions.config import load_settings
from bot.local import start_workspace
from bot.local_peers import PANEL_NAME
from fake_slack import FakeSlack
from support.cli import MINIMAL, config
from support.workspace import ALICE, BOB, CHANNEL, SECRET, SHARED, plain, workspace


@pytest.fixture
async def ws():
    async with workspace() as pair, aiohttp.ClientSession() as http:
        yield (*pair, http)


async def call(http: aiohttp.ClientSession, fake: FakeSlack, path: str, body=None, **query) -> tuple[int, dict]:
    url = fake.base_url + path
    if body is None:
        async with http.get(url, params=query) as resp:
            return resp.status, await resp.json()
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    async with http.post(url, data=data, headers={"Content-Type": "application/json"}) as resp:
        return resp.status, await resp.json()


async def test_page_and_assets_are_served(ws):
    fake, _, http = ws
    async with http.get(fake.base_url + "/") as resp:
        page = await resp.text()
        assert resp.status == 200 and resp.content_type == "text/html"
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert 'id="composer"' in page and 'id="user"' in page and "/ui/static/app.js" in page
    assert "http" not in page.replace("http-equiv", "")  # nothing loaded from elsewhere
    async with http.get(fake.base_url + "/ui/static/app.js") as resp:
        assert resp.status == 200 and resp.content_type == "application/javascript"
    async with http.get(fake.base_url + "/ui/static/app.css") as resp:
        assert resp.status == 200 and resp.content_type == "text/css"
    async with http.get(fake.base_url + "/ui/static/secrets.py") as resp:
        assert resp.status == 404
    async with FakeSlack(SECRET) as plain_fake, http.get(plain_fake.base_url + "/") as resp:
        assert resp.status == 404  # no page unless ui=True


async def test_state_shows_each_person_only_their_own(ws):
    fake, _, http = ws
    fake.add_channel("C0SECRET", "secret", members=[ALICE], is_private=True)
    status, answer = await call(http, fake, "/ui/command", {"user": ALICE, "channel": CHANNEL, "text": "/demo hello"})
    assert status == 200 and answer["status"] == 200 and answer["acked"]
    await call(http, fake, "/ui/command", {"user": ALICE, "channel": CHANNEL, "text": "/demo modal"})
    await call(http, fake, "/ui/command", {"user": BOB, "channel": "D0BOB", "text": "psst, bot"})

    _, alice = await call(http, fake, "/ui/state", user=ALICE)
    _, bob = await call(http, fake, "/ui/state", user=BOB)
    assert alice["me"]["id"] == ALICE and alice["team"]["name"] == "Example"
    assert {"id": BOB, "name": "bob", "real_name": "Bob Baker", "is_bot": False} in alice["users"]
    assert [c["id"] for c in alice["channels"]] == [CHANNEL, "C0SECRET", "D0ALICE"]
    assert [c["id"] for c in bob["channels"]] == [CHANNEL, "D0BOB"]  # no private channel, no other DM
    assert [e["text"] for e in alice["ephemerals"]] == ["Hi <@U0ALICE>, you said: hello"]
    assert alice["ephemerals"][0]["channel"] == CHANNEL and bob["ephemerals"] == []
    assert [v["title"]["text"] for v in alice["views"]] == ["Incident report"] and bob["views"] == []
    dm = next(c for c in bob["channels"] if c["id"] == "D0BOB")
    assert dm["is_im"] and dm["name"] == "Rollback Bot" and dm["messages"][0]["text"] == "psst, bot"
    assert alice["version"] <= bob["version"]
    _, default = await call(http, fake, "/ui/state")
    assert default["me"]["id"] == ALICE  # no user given: the first person


async def test_messages_threads_and_files_in_state(ws):
    fake, _, http = ws
    for text in ("thread", "file", "card"):
        _, answer = await call(http, fake, "/ui/command", {"user": ALICE, "channel": CHANNEL, "text": f"/demo {text}"})
        assert answer["status"] == 200, answer
    await call(http, fake, "/ui/command", {"user": BOB, "channel": CHANNEL, "text": "thanks @alice, see #incidents <3"})
    _, state = await call(http, fake, "/ui/state", user=BOB)
    chan = state["channels"][0]
    parent, upload, card, human = chan["messages"]
    assert parent["text"] == "Status thread" and parent["reply_count"] == 1 and parent["thread_ts"] == parent["ts"]
    assert [r["text"] for r in chan["threads"][parent["ts"]]] == ["First reply"]
    assert upload["files"][0] | {"id": None} == {"id": None, "name": "report.md", "title": "Incident report",
                                                 "size": 36, "mimetype": "text/markdown",
                                                 "url": f"/files/{upload['files'][0]['id']}"}
    async with http.get(fake.base_url + upload["files"][0]["url"]) as resp:
        assert (await resp.text()).startswith("# Report")
    assert card["is_bot"] and card["user_name"] == "Rollback Bot" and card["blocks"][0]["type"] == "header"
    assert human["user"] == BOB and not human["is_bot"] and not human["edited"]
    assert human["text"] == "thanks <@U0ALICE>, see <#C0INCIDENTS|incidents> &lt;3"  # as Slack stores typing
    assert fake.messages(CHANNEL)[-1].user == BOB


async def test_commands_reach_the_bot_signed_and_failures_are_reported(ws):
    fake, bot, http = ws
    status, answer = await call(http, fake, "/ui/command", {"user": BOB, "channel": CHANNEL, "text": "/demo  full staging "})
    assert status == 200 and answer["kind"] == "command" and answer["command"] == "/demo" and answer["status"] == 200
    form = bot.last("command")
    assert form["command"] == "/demo" and form["text"] == "full staging" and form["user_id"] == BOB
    assert form["channel_id"] == CHANNEL and form["user_name"] == "bob"
    assert set(dict(parse_qsl((SHARED / "slash_command.form").read_text().strip()))) <= set(form)
    assert SignatureVerifier(SECRET).is_valid_request(fake.last_request.body, fake.last_request.headers)
    status, answer = await call(http, fake, "/ui/command", {"user": BOB, "channel": CHANNEL, "text": "/demo fail"})
    assert status == 200 and answer["status"] == 500 and not answer["acked"]


async def test_clicks_on_messages_and_ephemerals_are_shaped_like_slack(ws):
    fake, bot, http = ws
    await call(http, fake, "/ui/command", {"user": ALICE, "channel": CHANNEL, "text": "/demo card"})
    card = fake.messages(CHANNEL)[-1]
    status, answer = await call(http, fake, "/ui/action", {"user": BOB, "channel": CHANNEL, "ts": card.ts, "action_id": "approve"})
    assert status == 200 and answer["status"] == 200
    payload = bot.last("block_actions")
    assert set(json.loads((SHARED / "block_actions.json").read_text())) <= set(payload)
    assert payload["user"]["id"] == BOB and payload["message"]["ts"] == card.ts and payload["container"]["is_ephemeral"] is False
    assert payload["actions"][0] | {"action_ts": None} == {
        "action_id": "approve", "block_id": "decide", "type": "button", "style": "danger", "text": plain("Approve"),
        "value": '{"approval":"ap_01"}', "action_ts": None}
    await fake.wait_for_message(CHANNEL, "Approved by <@U0BOB>")

    await call(http, fake, "/ui/action", {"user": BOB, "channel": CHANNEL, "ts": card.ts, "action_id": "tick", "selected": ["a", "c"]})
    action = bot.last("block_actions")["actions"][0]
    assert action["type"] == "checkboxes" and [o["value"] for o in action["selected_options"]] == ["a", "c"]
    assert "value" not in action and card.edited  # the bot redrew the card with the new ticks

    await call(http, fake, "/ui/command", {"user": ALICE, "channel": CHANNEL, "text": "/demo eph"})
    eph = fake.ephemerals(ALICE)[-1]
    status, answer = await call(http, fake, "/ui/action", {"user": BOB, "channel": CHANNEL, "ts": eph.ts, "action_id": "dismiss"})
    assert status == 400 and "unknown message" in answer["error"]  # Bob never saw Alice's ephemeral
    status, answer = await call(http, fake, "/ui/action", {"user": ALICE, "channel": CHANNEL, "ts": eph.ts, "action_id": "dismiss"})
    assert status == 200 and bot.last("block_actions")["container"] == {
        "type": "message", "message_ts": eph.ts, "channel_id": CHANNEL, "is_ephemeral": True}


async def test_modal_round_trip_with_errors_and_close(ws):
    fake, bot, http = ws
    await call(http, fake, "/ui/command", {"user": ALICE, "channel": CHANNEL, "text": "/demo modal"})
    _, state = await call(http, fake, "/ui/state", user=ALICE)
    view = state["views"][0]
    assert view["submit"]["text"] == "Save" and view["blocks"][0]["element"]["multiline"]
    status, answer = await call(http, fake, "/ui/view", {"user": BOB, "view_id": view["id"], "values": {"reason": "x"}})
    assert status == 400 and "unknown view" in answer["error"]
    status, answer = await call(http, fake, "/ui/view", {"user": ALICE, "view_id": view["id"], "values": {"reason": "bad"}})
    assert status == 200 and answer["response_action"] == "errors" and answer["errors"] == {"reason": "Give a real cause"}
    assert not answer["closed"] and fake.views
    status, answer = await call(http, fake, "/ui/view", {"user": ALICE, "view_id": view["id"], "values": {"reason": "Migration 7"}})
    assert answer == {"ok": True, "status": 200, "acked": True, "elapsed_ms": answer["elapsed_ms"],
                      "response_action": None, "errors": {}, "closed": True}
    submitted = bot.last("view_submission")
    assert submitted["view"]["state"]["values"] == {"reason": {"value": {"type": "plain_text_input", "value": "Migration 7"}}}
    await fake.wait_for_message(CHANNEL, "Saved: Migration 7")

    await call(http, fake, "/ui/command", {"user": ALICE, "channel": CHANNEL, "text": "/demo modal"})
    status, answer = await call(http, fake, "/ui/view/close", {"user": ALICE, "view_id": fake.views[0].id})
    assert status == 200 and answer["closed"] and not fake.views


async def test_events_stream_a_version_bump_per_change_and_end_at_stop():
    async with workspace() as (fake, _), aiohttp.ClientSession() as http:
        fake.ui.keepalive = 0.2
        resp = await http.get(fake.base_url + "/ui/events")
        assert resp.status == 200 and resp.content_type == "text/event-stream"

        async def next_event() -> str:
            lines = []
            while (line := (await asyncio.wait_for(resp.content.readline(), 5)).decode()) != "\n":
                lines.append(line.strip())
            return "\n".join(lines)

        first = await next_event()
        start = json.loads(first.rsplit("data: ", 1)[1])["version"]
        assert start == fake.workspace.version
        fake.post_message(CHANNEL, "something happened", ALICE)
        bumped = json.loads((await next_event()).removeprefix("data: "))["version"]
        assert bumped > start
        assert await next_event() == ": keepalive"  # nothing changed for a while

        began = time.monotonic()
        await fake.stop()  # an open stream must not hold the server
        assert time.monotonic() - began < 1.0
        assert await asyncio.wait_for(resp.content.read(), 2) == b""
        resp.release()


async def test_bad_input_answers_400_with_a_reason(ws):
    fake, _, http = ws
    status, answer = await call(http, fake, "/ui/state", user="U0NOBODY")
    assert status == 400 and "unknown user 'U0NOBODY'" in answer["error"]
    cases = [
        ("/ui/command", {"user": "U0NOBODY", "channel": CHANNEL, "text": "hi"}, "unknown user"),
        ("/ui/command", {"channel": CHANNEL, "text": "hi"}, "missing field: user"),
        ("/ui/command", {"user": "U0BOT", "channel": CHANNEL, "text": "hi"}, "is the bot"),
        ("/ui/command", {"user": ALICE, "channel": "C0NOPE", "text": "hi"}, "unknown channel"),
        ("/ui/command", {"user": ALICE, "channel": "D0BOB", "text": "hi"}, "unknown channel"),
        ("/ui/command", {"user": ALICE, "channel": CHANNEL, "text": "  "}, "text is empty"),
        ("/ui/command", {"user": ALICE, "channel": CHANNEL, "text": "hi", "thread_ts": "1.2"}, "unknown thread"),
        ("/ui/action", {"user": ALICE, "channel": CHANNEL, "ts": "1.000001", "action_id": "x"}, "unknown message"),
        ("/ui/view", {"user": ALICE, "view_id": "V0NOPE", "values": {}}, "unknown view"),
        ("/ui/view/close", {"user": ALICE, "view_id": "V0NOPE"}, "unknown view"),
        ("/ui/command", b"{not json", "must be JSON"),
        ("/ui/command", [1, 2], "JSON object"),
    ]
    for path, body, reason in cases:
        status, answer = await call(http, fake, path, body)
        assert status == 400 and answer["ok"] is False and reason in answer["error"], (path, body, answer)

    fake.post_message(CHANNEL, "plain", ALICE)
    ts = fake.messages(CHANNEL)[-1].ts
    status, answer = await call(http, fake, "/ui/action", {"user": ALICE, "channel": CHANNEL, "ts": ts, "action_id": "x"})
    assert status == 400 and "no element with action_id 'x'" in answer["error"]

    fake.bot_url = "http://127.0.0.1:9/slack/events"  # nothing listens there
    status, answer = await call(http, fake, "/ui/command", {"user": ALICE, "channel": CHANNEL, "text": "/demo hi"})
    assert status == 400 and "not reachable" in answer["error"]
    fake.bot_url = None
    status, answer = await call(http, fake, "/ui/command", {"user": ALICE, "channel": CHANNEL, "text": "/demo hi"})
    assert status == 400 and "bot_url is not set" in answer["error"]


async def test_panels_show_what_their_provider_gives_and_a_change_from_any_thread_refreshes_the_page(ws):
    fake, _, http = ws
    items = [{"key": "a", "time": 1700000000.5, "title": "<b>first</b>", "badges": [{"text": "new", "tone": "info"}],
              "fields": [["Where", "here"]]}]
    fake.add_panel("things", "Things & stuff", lambda: {"sections": [{"title": "Seen", "items": list(items)}]})
    _, state = await call(http, fake, "/ui/state", user=BOB)
    assert state["panels"] == [{"name": "things", "title": "Things & stuff",
                                "data": {"sections": [{"title": "Seen", "items": items}]}}]

    # Something beside the workspace changed, told from a thread of its own (as aiosmtpd's handler would).
    before = fake.workspace.version
    items.append({"key": "b", "time": None, "title": "second", "badges": [], "fields": []})
    caller = threading.Thread(target=fake.notify_change)
    caller.start()
    caller.join()
    await fake.wait_for(lambda: fake.workspace.version > before, timeout=5, what="the version bumped from a thread")
    _, state = await call(http, fake, "/ui/state", user=ALICE)
    assert state["version"] > before
    assert [i["title"] for i in state["panels"][0]["data"]["sections"][0]["items"]] == ["<b>first</b>", "second"]

    # A broken provider breaks its panel, not the page; a removed panel is gone.
    fake.add_panel("broken", "Broken", lambda: 1 / 0)
    fake.add_panel("odd", "Odd", lambda: {"not json": object()})
    status, state = await call(http, fake, "/ui/state", user=ALICE)
    assert status == 200 and [p["name"] for p in state["panels"]] == ["things", "broken", "odd"]
    broken, odd = state["panels"][1:]
    assert broken["data"] is None and "ZeroDivisionError" in broken["error"]
    assert odd["data"] is None and "not JSON serializable" in odd["error"]
    fake.remove_panel("broken")
    fake.remove_panel("odd")
    _, state = await call(http, fake, "/ui/state", user=ALICE)
    assert [p["name"] for p in state["panels"]] == ["things"]


REAL_KEY = "REALkey0123456789abcdef012345678"  # as if the config's PagerDuty integration key were exported
LOCAL_TABLES = """
[paging]
pagerduty_url = "https://events.pagerduty.com/v2/enqueue"
page_at_level = 2
tries = 2
retry_seconds = 0.1

[email]
smtp_host = "smtp.example.com"
smtp_port = 587
starttls = true
username_env = "SMTP_USERNAME"
password_env = "SMTP_PASSWORD"
sender = "rollback@example.com"
recipients = ["oncall@example.com", "dba@example.com"]
email_at_level = 1
"""


def panel(state: dict) -> dict:
    found = next(p for p in state["panels"] if p["name"] == PANEL_NAME)
    assert found["title"] == "Pager & mail" and "error" not in found, found
    return {section["title"]: section["items"] for section in found["data"]["sections"]} | {
        "note": found["data"]["note"]}


async def test_local_mode_pages_and_mails_local_peers_and_the_panel_lists_them(tmp_path, monkeypatch):
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", REAL_KEY)
    monkeypatch.setenv("SMTP_USERNAME", "relay-user")
    monkeypatch.setenv("SMTP_PASSWORD", "relay-Pa55word")
    settings = load_settings(config(tmp_path, MINIMAL + LOCAL_TABLES))
    local = await start_workspace(settings, 0)
    slack, pager, mail = local.slack, local.peers.pager, local.peers.mail
    try:
        # The bot's pager and mail server are the local peers; the config's levels, people and tries are kept.
        key = os.environ["PAGERDUTY_ROUTING_KEY"]
        assert key != REAL_KEY and re.fullmatch(r"[A-Za-z0-9]{32}", key) and key not in local.peers.describe()
        assert "nothing leaves this machine" in local.peers.describe()
        paging, email = local.runtime.settings.paging, local.runtime.settings.email
        assert (paging.pagerduty_url, paging.page_at_level, paging.tries) == (pager.url, 2, 2)
        assert (email.smtp_host, email.port, email.starttls, email.ssl) == ("127.0.0.1", mail.port, False, False)
        assert (email.username_env, email.password_env, email.ca_file) == (None, None, None)
        assert (email.sender, email.recipients, email.email_at_level) == (
            "rollback@example.com", ["oncall@example.com", "dba@example.com"], 1)

        async with aiohttp.ClientSession() as http:
            _, state = await call(http, slack, "/ui/state", user="U0OPS1")
            before = panel(state)
            assert before["Paged"] == [] and before["Mailed"] == []
            assert f"127.0.0.1:{mail.port}" in before["note"] and pager.base_url in before["note"]

            # Declared at level 1: mailed (email_at_level 1), not paged (page_at_level 2).
            _, answer = await call(http, slack, "/ui/command", {"user": "U0OPS1", "channel": "C0INCIDENTS",
                                                                 "text": "/rollback declare staging checkout <fails>"})
            assert answer["acked"], answer
            await mail.wait_for(lambda: len(mail.messages) == 1)
            assert pager.events == []
            alert = await slack.wait_for(lambda: next((m for m in slack.messages("C0INCIDENTS")
                                                       if "incident-escalate" in json.dumps(m.blocks)), None),
                                         timeout=10, what="the alert with its escalate button")
            for level in (2, 3):
                _, answer = await call(http, slack, "/ui/action", {"user": "U0OPS1", "channel": "C0INCIDENTS",
                                                                    "ts": alert.ts, "action_id": "incident-escalate"})
                assert answer["acked"], answer
                await pager.wait_for(lambda pages=level - 1: len(pager.events) == pages)  # page_at_level 2 kept
                await mail.wait_for(lambda mails=level: len(mail.messages) == mails)
            _, state = await call(http, slack, "/ui/state", user="U0DBA1")

        incident = pager.events[0].dedup_key
        assert incident.startswith("INC-") and all(e.routing_key == key for e in pager.events)
        assert all(not m.tls and m.login is None and list(m.rcpt_tos) == email.recipients for m in mail.messages)
        shown = panel(state)
        fields = [dict(item["fields"]) for item in shown["Paged"]]
        assert [f["Action"] for f in fields] == ["trigger", "trigger"]  # level 2, then level 3: newest first
        assert [f["Severity"] for f in fields] == [e.body["payload"]["severity"] for e in reversed(pager.events)]
        assert all(f["dedup_key"] == incident and f["PagerDuty incident"] == "#1 triggered" for f in fields)
        assert [item["title"] for item in shown["Paged"]] == [e.body["payload"]["summary"]
                                                              for e in reversed(pager.events)]
        assert "checkout <fails>" in shown["Paged"][0]["title"]  # the page escapes it, not the data
        assert [item["time"] for item in shown["Paged"]] == [e.time for e in reversed(pager.events)]

        mails = shown["Mailed"]
        received = list(reversed(mail.messages))
        assert [item["title"] for item in mails] == [m.subject for m in received]
        assert mails[-1]["title"].startswith("INCIDENT ALERT") and incident in mails[-1]["title"]
        for item, message in zip(mails, received):
            got = dict(item["fields"])
            assert got["To"] == "oncall@example.com, dba@example.com" and got["From"] == "rollback@example.com"
            assert got["Attachments"] == "none"
            is_reply = message.message["In-Reply-To"] is not None
            assert got.get("In-Reply-To") == (str(message.message["In-Reply-To"]) if is_reply else None)
            assert ({"text": "reply", "tone": "info"} in item["badges"]) == is_reply
        assert [("In-Reply-To" in dict(item["fields"])) for item in mails] == [True, True, False]  # the alert starts it

        # Mail that reaches the catcher (in aiosmtpd's thread) bumps the workspace's version: open pages refresh.
        version = slack.workspace.version
        note = EmailMessage()
        note["From"], note["To"], note["Subject"] = "someone@example.com", "dba@example.com", "Postmortem <draft>"
        note["In-Reply-To"] = "<thread@example.com>"
        note.set_content("see attached")
        note.add_attachment(b"# notes", maintype="text", subtype="markdown", filename="notes.md")
        await aiosmtplib.send(note, hostname=mail.host, port=mail.port, start_tls=False)
        await slack.wait_for(lambda: slack.workspace.version > version, timeout=5, what="a version bump from the mail")
        async with aiohttp.ClientSession() as http:
            _, state = await call(http, slack, "/ui/state", user="U0OPS1")
        newest = panel(state)["Mailed"][0]
        assert newest["title"] == "Postmortem <draft>" and dict(newest["fields"])["Attachments"] == "notes.md"
        assert dict(newest["fields"])["In-Reply-To"] == "<thread@example.com>"
    finally:
        await local.stop()

    # Stopped together, and the config's own key is back where it was.
    assert os.environ["PAGERDUTY_ROUTING_KEY"] == REAL_KEY
    assert not mail.is_up
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", pager.port)
    await local.stop()  # twice is harmless
