"""The local workspace (``FakeSlack(..., ui=True)``) with Alice and Bob, and a tiny signature-checking
bot wired to it, for the tests of the page itself (not of rollback-bot)."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qsl

from aiohttp import web
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from fake_slack import FakeSlack

SECRET = "workspace-ui-secret"
TOKEN = "xoxb-workspace-ui"
ALICE, BOB = "U0ALICE", "U0BOB"
CHANNEL = "C0INCIDENTS"
SHARED = Path(__file__).parent.parent / "slack_wire"


def plain(text: str) -> dict:
    return {"type": "plain_text", "text": text}


def option(value: str, text: str) -> dict:
    return {"text": plain(text), "value": value}


CARD = [
    {"type": "header", "text": plain("Rollback plan")},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Staging* for <@U0ALICE> in <#C0INCIDENTS>"},
     "fields": [{"type": "mrkdwn", "text": "*Backup*\nnightly"}, {"type": "mrkdwn", "text": "*Size*\n2 GB"}],
     "accessory": {"type": "button", "action_id": "details", "text": plain("Details"), "value": "d"}},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "Approvers: <!subteam^S0DBAS>"}]},
    {"type": "divider"},
    {"type": "actions", "block_id": "decide", "elements": [
        {"type": "button", "action_id": "open-modal", "style": "primary", "text": plain("Write report"), "value": "r"},
        {"type": "button", "action_id": "approve", "style": "danger", "text": plain("Approve"), "value": '{"approval":"ap_01"}',
         "confirm": {"title": plain("Roll back staging?"), "text": {"type": "mrkdwn", "text": "This *replaces* live."},
                     "confirm": plain("Yes, roll back"), "deny": plain("Keep it"), "style": "danger"}}]},
    {"type": "actions", "block_id": "checks", "elements": [
        {"type": "checkboxes", "action_id": "tick", "initial_options": [option("b", "Notify")],
         "options": [option("a", "Backup verified"), option("b", "Notify"), option("c", "Smoke tests")]}]},
]
MODAL = {"type": "modal", "callback_id": "report", "title": plain("Incident report"), "submit": plain("Save"),
         "close": plain("Cancel"), "private_metadata": "{}",
         "blocks": [{"type": "input", "block_id": "reason", "label": plain("Root cause"),
                     "element": {"type": "plain_text_input", "action_id": "value", "multiline": True,
                                 "placeholder": plain("What caused it?")}}]}


class TinyBot:
    """A stand-in app: checks Slack's signature like Bolt, records what arrives, answers like a bot.

    ``/demo card|file|thread|modal|eph|fail|<anything>``; clicks ``open-modal``, ``approve``,
    ``tick``, ``dismiss``; a modal submitted with "bad" is refused with an error.
    """

    def __init__(self, fake: FakeSlack) -> None:
        self.fake = fake
        self.verifier = SignatureVerifier(SECRET)
        self.received: list[dict] = []  # command forms and interactivity payloads, in order
        self.client = AsyncWebClient(token=TOKEN, base_url=fake.api_url)
        self._runner: web.AppRunner | None = None

    async def start(self) -> TinyBot:
        app = web.Application()
        app.router.add_post("/slack/events", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.fake.bot_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/slack/events"
        return self

    async def stop(self) -> None:
        await self._runner.cleanup()

    def last(self, kind: str) -> dict:
        return next(r for r in reversed(self.received) if r.get("type", "command") == kind)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if not self.verifier.is_valid_request(raw, dict(request.headers)):
            return web.Response(status=401, text="invalid signature")
        fields = dict(parse_qsl(raw.decode()))
        if "payload" not in fields:
            self.received.append(fields)
            return await self.command(fields)
        payload = json.loads(fields["payload"])
        self.received.append(payload)
        if payload["type"] == "view_submission":
            reason = payload["view"]["state"]["values"]["reason"]["value"]["value"] or ""
            if reason == "bad":
                return web.json_response({"response_action": "errors", "errors": {"reason": "Give a real cause"}})
            await self.client.chat_postMessage(channel=CHANNEL, text=f"Saved: {reason}")
            return web.Response()
        action, chan = payload["actions"][0], payload["channel"]["id"]
        if action["action_id"] == "open-modal":
            await self.client.views_open(trigger_id=payload["trigger_id"], view=MODAL)
        elif action["action_id"] == "approve":
            await self.client.chat_postMessage(channel=chan, text=f"Approved by <@{payload['user']['id']}>")
        elif action["action_id"] == "tick":
            blocks = json.loads(json.dumps(payload["message"]["blocks"]))
            element = blocks[-1]["elements"][0]
            element["initial_options"] = action["selected_options"]
            await self.client.chat_update(channel=chan, ts=payload["container"]["message_ts"], text="card", blocks=blocks)
        return web.Response()

    async def command(self, form: dict) -> web.Response:
        chan, user, text = form["channel_id"], form["user_id"], form["text"]
        if text == "card":
            await self.client.chat_postMessage(channel=chan, text="Rollback plan", blocks=CARD)
        elif text == "file":
            await self.client.files_upload_v2(channel=chan, filename="report.md", title="Incident report",
                                              content="# Report\n\nRoot cause: *migration 7*\n")
        elif text == "thread":
            parent = await self.client.chat_postMessage(channel=chan, text="Status thread")
            await self.client.chat_postMessage(channel=chan, thread_ts=parent["ts"], text="First reply")
        elif text == "modal":
            await self.client.views_open(trigger_id=form["trigger_id"], view=MODAL)
            return web.Response()
        elif text == "eph":
            await self.client.chat_postEphemeral(channel=chan, user=user, text="Private note", blocks=[
                {"type": "section", "text": {"type": "mrkdwn", "text": "Private note"}},
                {"type": "actions", "elements": [{"type": "button", "action_id": "dismiss", "text": plain("Dismiss")}]}])
            return web.Response()
        elif text == "fail":
            return web.Response(status=500, text="boom")
        return web.json_response({"text": f"Hi <@{user}>, you said: {text}"})


@asynccontextmanager
async def workspace():
    """A started ``FakeSlack(ui=True)`` with Alice and Bob, and the tiny bot wired to it."""
    async with FakeSlack(SECRET, bot_token=TOKEN, ui=True) as fake:
        fake.add_user(ALICE, "alice", "Alice Archer")
        fake.add_user(BOB, "bob", "Bob Baker")
        fake.add_usergroup("S0DBAS", [ALICE], handle="dbas")
        bot = await TinyBot(fake).start()
        try:
            yield fake, bot
        finally:
            await bot.stop()
