"""`rollback-bot local`: the bot and a Slack-like workspace in the browser, in one process.

The workspace is the project's Slack fake with its web page switched on: it serves the Web API the
bot calls (through SLACK_API_URL, as in production) and sends the bot signed requests exactly as
Slack does. Tokens and the signing secret are made up for the run; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import webbrowser

from pydantic import SecretStr

from actions.config import Settings
from bot.credentials import SlackCredentials
from bot.server import BotRuntime
from fake_slack import FakeSlack

log = logging.getLogger(__name__)


def people(settings: Settings) -> dict[str, str]:
    """Every user id the config names, with a display name (from `[local.users]`, else by role)."""
    named: dict[str, str] = {}
    groups = settings.local.usergroups
    roles = [("operator", settings.bot.operators), ("approver", settings.bot.approvers),
             *((role.replace("_", "-"), settings.bot.signers(role)) for role in settings.bot.signoffs)]
    for role, entries in roles:
        for entry in entries:
            for user in groups.get(entry, []) if entry.startswith("S") else [entry]:
                named.setdefault(user, settings.local.users.get(user) or f"{role}-{len(named) + 1}")
    for user, name in settings.local.users.items():
        named.setdefault(user, name)
    return named


async def start_workspace(settings: Settings, port: int) -> tuple[FakeSlack, BotRuntime]:
    """Start the workspace on `port` and the bot beside it; both on 127.0.0.1."""
    credentials = SlackCredentials(SecretStr("xoxb-local-" + secrets.token_hex(12)),
                                   SecretStr(secrets.token_hex(16)), None, "")
    workspace = FakeSlack(credentials.signing_secret.get_secret_value(),
                          bot_token=credentials.bot_token.get_secret_value(), ui=True)
    workspace.workspace.team_name = "rollback-bot · local"
    for user, name in people(settings).items():
        workspace.add_user(user, name)
    for group, members in settings.local.usergroups.items():
        workspace.add_usergroup(group, members)
    members = list(people(settings))
    for number, channel in enumerate([settings.bot.incident_channel, *settings.bot.notify_channels]):
        if workspace.channel(channel) is None:
            workspace.add_channel(channel, "incidents" if number == 0 else f"notify-{number}", members=members)
        else:
            existing = workspace.channel(channel).members
            existing.extend(user for user in members if user not in existing)
    await workspace.start(port=port)
    runtime = BotRuntime(settings, SlackCredentials(credentials.bot_token, credentials.signing_secret, None,
                                                    workspace.api_url))
    bot_port = await runtime.serve_http("127.0.0.1", 0)
    workspace.bot_url = f"http://127.0.0.1:{bot_port}/slack/events"
    return workspace, runtime


async def run_local(settings: Settings, *, port: int, open_browser: bool, hint: str = "") -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    workspace, runtime = await start_workspace(settings, port)
    url = f"http://127.0.0.1:{workspace.port}/"
    print(f"Local workspace: {url}" + (f"\n{hint}" if hint else ""), flush=True)
    if open_browser:
        await asyncio.to_thread(webbrowser.open, url)
    await stop.wait()
    await runtime.stop()
    await workspace.stop()
