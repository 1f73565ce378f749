"""A stateful fake of Slack served over HTTP on localhost, for tests and local demos.

It answers the bot's Web API calls (point slack_sdk's ``base_url`` at ``fake.api_url``) and
plays Slack's side towards the bot: signed slash commands, button clicks, response_urls::

    async with FakeSlack(signing_secret, bot_token="xoxb-fake") as fake:
        fake.add_user("U1", "dba.alice")
        fake.bot_url = "http://127.0.0.1:3000/slack/events"
        reply = await fake.send_command("U1", "full staging")
        msg = await fake.wait_for_message("C0INCIDENTS", "Approval needed")
        await fake.click("U2", msg, "approval-approve")

``FakeSlack(..., ui=True)`` also serves a Slack-like page at ``fake.base_url`` (see ``ui_routes``):
a local workspace in the browser where people can try the bot without a Slack app.
"""

from .outgoing import BotReply, SentRequest
from .server import FakeSlack
from .signing import sign
from .state import ApiCall, Channel, Ephemeral, File, Message, Panel, User, View, Workspace

__all__ = ["FakeSlack", "BotReply", "SentRequest", "sign", "ApiCall", "Channel", "Ephemeral", "File",
           "Message", "Panel", "User", "View", "Workspace"]
