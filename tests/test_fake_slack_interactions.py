"""The fake Slack's interactive parts beyond buttons: checkbox clicks and modal submissions,
checked against Slack's wire formats with a tiny signed-request-verifying bot."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl

from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from fake_slack import FakeSlack

SHARED = Path(__file__).parent / "slack_wire"  # copies of the shared Slack wire formats


async def test_checkbox_clicks_and_modal_submissions_are_shaped_like_slack():
    from aiohttp import web
    from slack_sdk.signature import SignatureVerifier

    received: list[dict] = []

    async def bot(request: web.Request) -> web.Response:
        body = await request.read()
        assert SignatureVerifier("s3cret").is_valid_request(body, dict(request.headers))
        payload = json.loads(dict(parse_qsl(body.decode()))["payload"])
        received.append(payload)
        if payload["type"] == "view_submission" and "bad" in json.dumps(payload["view"]["state"]):
            return web.json_response({"response_action": "errors", "errors": {"root_cause": "no"}})
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/slack/events", bot)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with FakeSlack("s3cret", bot_token="xoxb-t", bot_url=f"http://127.0.0.1:{port}/slack/events") as fake:
            fake.add_user("U1", "alice")
            client = AsyncWebClient(token="xoxb-t", base_url=fake.api_url)
            options = [{"text": {"type": "plain_text", "text": t}, "value": t} for t in ("a", "b", "c")]
            blocks = [{"type": "actions", "block_id": "checklist|INC-1|g",
                       "elements": [{"type": "checkboxes", "action_id": "checklist-g", "options": options}]}]
            await client.chat_postMessage(channel="C0INCIDENTS", text="list", blocks=blocks)
            message = fake.messages("C0INCIDENTS")[0]
            await fake.click("U1", message, "checklist-g", selected=["a", "c"])
            action = received[-1]["actions"][0]
            assert action["type"] == "checkboxes" and action["block_id"] == "checklist|INC-1|g"
            assert [o["value"] for o in action["selected_options"]] == ["a", "c"] and "value" not in action

            trigger = received[-1]["trigger_id"]
            modal = {"type": "modal", "callback_id": "incident-report", "private_metadata": "{}",
                     "title": {"type": "plain_text", "text": "Report"},
                     "blocks": [{"type": "input", "block_id": "root_cause", "label": {"type": "plain_text", "text": "R"},
                                 "element": {"type": "plain_text_input", "action_id": "value"}}]}
            view_id = (await client.views_open(trigger_id=trigger, view=modal))["view"]["id"]
            refused = await fake.submit_view("U1", view_id, {"root_cause": "bad"})
            assert refused.json["response_action"] == "errors" and fake.views  # stays open
            ok = await fake.submit_view("U1", view_id, {"root_cause": "fine"})
            assert ok.status == 200 and not fake.views  # closed
            submitted = received[-1]
            assert set(json.load(open(SHARED / "view_submission.json"))) <= set(submitted)
            assert submitted["view"]["state"]["values"] == {"root_cause": {"value": {"type": "plain_text_input", "value": "fine"}}}
            assert submitted["view"]["callback_id"] == "incident-report"
    finally:
        await runner.cleanup()
