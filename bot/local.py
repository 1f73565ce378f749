"""`rollback-bot local`: the bot and a Slack-like workspace in the browser, in one process.

The workspace is the project's Slack fake with its web page switched on: it serves the Web API the
bot calls (through SLACK_API_URL, as in production) and sends the bot signed requests exactly as
Slack does. Tokens and the signing secret are made up for the run; nothing leaves the machine.
The pager and the mail server are local stand-ins too (`bot.local_peers`), and the page's
"Pager & mail" panel shows what the bot paged and mailed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import webbrowser
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from actions.config import Settings
from bot.credentials import SlackCredentials
from bot.local_peers import PANEL_NAME, PANEL_TITLE, LocalPeers, pager_mail_panel, start_peers
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


@dataclass
class LocalWorkspace:
    """What `start_workspace` started: the workspace page, the bot, and the pager and mail stand-ins."""

    slack: FakeSlack
    runtime: BotRuntime
    peers: LocalPeers

    @property
    def url(self) -> str:
        return f"{self.slack.base_url}/"

    def __iter__(self) -> Iterator[Any]:
        """Unpacks as the (workspace, runtime) pair `start_workspace` used to return."""
        return iter((self.slack, self.runtime))

    async def stop(self) -> None:
        """The bot first (it may still be sending), then the workspace, then the pager and the mail catcher."""
        try:
            await self.runtime.stop()
        finally:
            try:
                await self.slack.stop()
            finally:
                await self.peers.stop()


async def start_workspace(settings: Settings, port: int) -> LocalWorkspace:
    """Start the workspace on `port`, the pager and mail stand-ins, and the bot beside them; all on 127.0.0.1.

    The bot runs with `[paging]` and `[email]` pointed at the stand-ins (`LocalPeers.settings_for`); the
    page's "Pager & mail" panel lists what they received. `LocalWorkspace.stop()` stops everything.
    """
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
    peers: LocalPeers | None = None
    runtime: BotRuntime | None = None
    try:
        # The mail catcher calls back from its own thread: notify_change hands the bump to the workspace's loop.
        peers = await start_peers(settings, on_change=workspace.notify_change)
        local_settings = peers.settings_for(settings)
        levels = {"page_at_level": local_settings.paging.page_at_level,
                  "email_at_level": local_settings.email.email_at_level}
        workspace.add_panel(PANEL_NAME, PANEL_TITLE, lambda: pager_mail_panel(peers.pager, peers.mail, **levels))
        runtime = BotRuntime(local_settings, SlackCredentials(credentials.bot_token, credentials.signing_secret, None,
                                                              workspace.api_url))
        bot_port = await runtime.serve_http("127.0.0.1", 0)
    except BaseException:
        if runtime is not None:
            await runtime.stop()
        await workspace.stop()
        if peers is not None:
            await peers.stop()
        raise
    workspace.bot_url = f"http://127.0.0.1:{bot_port}/slack/events"
    return LocalWorkspace(workspace, runtime, peers)


async def run_local(settings: Settings, *, port: int, open_browser: bool, hint: str = "") -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    local = await start_workspace(settings, port)
    try:
        url = local.url
        print(f"Local workspace: {url}\n{local.peers.describe()}" + (f"\n{hint}" if hint else ""), flush=True)
        if open_browser:
            await asyncio.to_thread(webbrowser.open, url)
        await stop.wait()
    finally:
        await local.stop()
