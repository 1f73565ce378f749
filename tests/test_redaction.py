"""The boundary check: whatever a caller puts in a message — text, blocks, a button's confirm
dialog — a secret is masked before the request leaves for Slack, and the token still works."""

from __future__ import annotations

from actions.redact import MASK, Redactor
from bot.redaction import RedactingWebClient, redact_payload
from fake_slack import FakeSlack
from support.harness import BOT_TOKEN, CHANNEL, SIGNING_SECRET

SECRET = "rbtest-Pw-boundary-7c1e"


async def test_every_string_of_a_web_api_body_is_masked_before_it_is_sent():
    slack = FakeSlack(SIGNING_SECRET, bot_token=BOT_TOKEN)
    await slack.start()
    try:
        client = RedactingWebClient(redact=Redactor([SECRET]), token=BOT_TOKEN, base_url=slack.api_url)
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"failed: password={SECRET}"}},
                  {"type": "context", "elements": [{"type": "mrkdwn", "text": f"postgresql://app:{SECRET}@db/crm"}]},
                  {"type": "actions", "elements": [{"type": "button", "action_id": "x", "value": "1",
                                                    "text": {"type": "plain_text", "text": "Retry"},
                                                    "confirm": {"title": {"type": "plain_text", "text": "Sure?"},
                                                                "text": {"type": "mrkdwn", "text": SECRET},
                                                                "confirm": {"type": "plain_text", "text": "Yes"},
                                                                "deny": {"type": "plain_text", "text": "No"}}}]}]
        answer = await client.chat_postMessage(channel=CHANNEL, text=f"dsn password {SECRET}", blocks=blocks)
        assert answer["ok"]  # the token, in its header, was not touched
        stored = slack.messages(CHANNEL)[-1]
        sent = stored.all_text() + str(stored.blocks)
        assert SECRET not in sent and sent.count(MASK) >= 4
        assert stored.blocks[2]["elements"][0]["action_id"] == "x"  # structure kept
        await client.chat_update(channel=CHANNEL, ts=stored.ts, text="now", blocks=[
            {"type": "section", "text": {"type": "mrkdwn", "text": f"again {SECRET}"}}])
        assert SECRET not in str(slack.messages(CHANNEL)[-1].blocks)
    finally:
        await slack.stop()


def test_redact_payload_keeps_shape_and_non_strings():
    redact = Redactor([SECRET])
    payload = {"n": 3, "ok": True, "none": None, "list": [SECRET, {"deep": f"x{SECRET}y"}]}
    assert redact_payload(redact, payload) == {"n": 3, "ok": True, "none": None,
                                               "list": [MASK, {"deep": f"x{MASK}y"}]}


async def test_a_reply_through_response_url_is_masked_too(harness):
    """A reply that quotes what was typed (here: the unexpected words) goes out masked."""
    from support.harness import OPERATOR

    await harness.slack.send_command(OPERATOR, f"watch staging 5 password={SECRET}", channel_id=CHANNEL)
    reply = await harness.slack.wait_for_ephemeral(OPERATOR, "Unexpected words", timeout=30)
    assert SECRET not in reply.all_text() + str(reply.blocks) and f"password={MASK}" in reply.all_text()


def test_credentials_the_sdk_sends_are_never_masked():
    """Socket Mode's apps.connections.open sends the app-level token as a `token` parameter: masked,
    Slack would answer invalid_auth and the bot would never connect."""
    redact = Redactor([SECRET])
    assert redact_payload(redact, {"token": SECRET, "text": f"a {SECRET}"}) == {"token": SECRET, "text": f"a {MASK}"}
