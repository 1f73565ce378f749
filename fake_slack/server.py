"""``FakeSlack``: the HTTP server, seeding helpers, queries and async waiting."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterable

from aiohttp import web

from . import api_files, responses
from .outgoing import BotReply, Outgoing, SentRequest
from .socket_mode import PATH as SOCKET_PATH
from .socket_mode import SocketModeEdge
from .state import ApiCall, Channel, Ephemeral, File, Message, Panel, ResponsePost, User, View, Workspace, ts_key
from .ui_routes import WorkspaceUI
from .webapi import WebApi


class FakeSlack:
    """A stateful fake of Slack on localhost: Web API for the bot, signed requests to the bot.

    Seeded with team T0001, channel C0INCIDENTS "incidents" and the bot user U0BOT/B0001.
    ``ui=True`` also serves the workspace as a Slack-like page at ``base_url`` (see ui_routes).
    ``app_token="xapp-…"`` enables Socket Mode (see socket_mode): while the app holds an open
    connection, commands, clicks and submissions go there as envelopes instead of to ``bot_url``.
    """

    def __init__(self, signing_secret: str, bot_token: str = "xoxb-fake", bot_url: str | None = None,
                 *, ack_timeout: float = 10.0, ui: bool = False, app_token: str | None = None) -> None:
        self.workspace = Workspace()
        self.signing_secret = signing_secret
        self.bot_token = bot_token
        self.app_token = app_token
        self.socket = SocketModeEdge(self.workspace, app_token, notify=self._on_change)
        self.web_api = WebApi(self.workspace, bot_token, app_token=app_token, socket_url=self.socket.issue_url)
        self.outgoing = Outgoing(self.workspace, signing_secret, ack_timeout=ack_timeout)
        self.outgoing.bot_url = bot_url
        self.outgoing.socket = self.socket
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None  # the one serving, once started (see notify_change)
        self.workspace.listeners.append(self._on_change)
        self.ui = WorkspaceUI(self) if ui else None
        self.workspace.users["U0BOT"] = User(id="U0BOT", name="rollback-bot", real_name="Rollback Bot", is_bot=True)
        self.add_channel("C0INCIDENTS", "incidents")

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> "FakeSlack":
        """Listen on ``host:port`` (0 = a free port); returns self."""
        ws = self.workspace
        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self.web_api.handle)

        async def upload(request: web.Request) -> web.StreamResponse:
            return await api_files.upload(ws, request)

        async def download(request: web.Request) -> web.StreamResponse:
            return await api_files.download(ws, request)

        async def respond(request: web.Request) -> web.StreamResponse:
            return await responses.handle(ws, request)

        app.router.add_post("/upload/{file_id}", upload)
        app.router.add_get("/files/{file_id}", download)
        app.router.add_post("/response/{hook_id}", respond)
        app.router.add_get(SOCKET_PATH, self.socket.handle)  # refuses all but apps.connections.open's tickets
        if self.ui is not None:
            self.ui.mount(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        ws.base_url = f"http://{host}:{self.port}"
        self._changed = asyncio.Event()  # bind to the loop we run in
        self._loop = asyncio.get_running_loop()
        return self

    async def stop(self) -> None:
        """Close the Socket Mode connections, the outgoing client and the server."""
        await self.socket.close()  # first: an open websocket would hold the server's shutdown
        await self.outgoing.close()
        if self.ui is not None:
            await self.ui.close()  # end the page's event streams, or they would hold the server
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeSlack":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` once started."""
        if not self.workspace.base_url:
            raise RuntimeError("FakeSlack is not started")
        return self.workspace.base_url

    @property
    def api_url(self) -> str:
        """What slack_sdk's ``base_url`` / ``SLACK_API_URL`` should be (ends with a slash)."""
        return f"{self.base_url}/api/"

    @property
    def bot_url(self) -> str | None:
        """Where commands and clicks are POSTed, e.g. ``http://127.0.0.1:3000/slack/events``."""
        return self.outgoing.bot_url

    @bot_url.setter
    def bot_url(self, url: str | None) -> None:
        self.outgoing.bot_url = url

    # --- seeding -----------------------------------------------------------------------

    def add_user(self, id: str, name: str, real_name: str | None = None, **extra: Any) -> User:
        """Add (or replace) a user; ``extra`` may set ``tz``, ``email``, ``is_bot``."""
        user = User(id=id, name=name, real_name=real_name, **extra)
        self.workspace.users[id] = user
        self.workspace.changed()
        return user

    def add_channel(self, id: str, name: str, members: Iterable[str] = (), is_private: bool = False,
                    bot_member: bool = True) -> Channel:
        """Add a channel; the bot is a member unless ``bot_member=False``."""
        ws = self.workspace
        first = [ws.bot_user_id] if bot_member else []
        chan = Channel(id=id, name=name, members=list(dict.fromkeys([*first, *members])), is_private=is_private)
        ws.channels[id] = chan
        ws.messages.setdefault(id, [])
        ws.changed()
        return chan

    def add_usergroup(self, id: str, users: Iterable[str], handle: str | None = None) -> None:
        """Add a user group (``S…`` id) with these members; ``handle`` (e.g. "dbas") is what the page shows."""
        self.workspace.usergroups[id] = list(users)
        if handle:
            self.workspace.usergroup_handles[id] = handle
        self.workspace.changed()

    def add_panel(self, name: str, title: str, provider: Callable[[], Any]) -> Panel:
        """Show a side panel titled ``title`` on the workspace page (``ui=True``), beside the channels:
        something the bot talks to other than Slack, say. ``provider()`` is called on the event loop for
        every ``/ui/state`` and returns JSON-able data (``ui_state.panel_json`` gives the shape the page
        lays out). Call ``notify_change()`` whenever that data changes, so open pages refresh. Adding a
        panel under an existing ``name`` replaces it."""
        panel = Panel(name, title, provider)
        self.workspace.panels[name] = panel
        self.workspace.changed()
        return panel

    def remove_panel(self, name: str) -> None:
        if self.workspace.panels.pop(name, None) is not None:
            self.workspace.changed()

    def notify_change(self) -> None:
        """Record that something the page shows changed outside the workspace (a panel's data): bumps the
        version, so ``/ui/events`` tells open pages to refresh, and wakes ``wait_for``. Safe to call from
        any thread: off the fake's event loop, the bump is handed to it with ``call_soon_threadsafe``."""
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            self.workspace.changed()
            return
        try:
            loop.call_soon_threadsafe(self.workspace.changed)
        except RuntimeError:  # the fake's loop has closed: no page is left to tell
            pass

    def post_message(self, channel: str, text: str, user: str, blocks: list | None = None,
                     thread_ts: str | None = None) -> Message:
        """Post a message as a human user (what a person typing in Slack would produce)."""
        ws = self.workspace
        chan = ws.channel(channel)
        if chan is None:
            raise ValueError(f"unknown channel {channel!r}")
        if thread_ts:
            parent = ws.message(chan.id, thread_ts)
            if parent is not None and parent.thread_ts is None:
                parent.thread_ts = parent.ts
        return ws.add_message(Message(ts=ws.next_ts(), channel=chan.id, text=text, blocks=blocks or [],
                                      thread_ts=thread_ts, user=user))

    # --- driving the bot -------------------------------------------------------------------

    def inject_failure(self, method: str, status: int | None = None, retry_after: int | None = 1, times: int = 1,
                       error: str | None = None, *, apply: bool = False, delay: float | None = None) -> None:
        """Fail the next ``times`` calls of ``method``: 429 (default) / 5xx, or HTTP 200 ``error`` code;
        ``apply=True`` carries the call out first, ``delay`` answers late (see WebApi.inject_failure)."""
        self.web_api.inject_failure(method, status=status, retry_after=retry_after, times=times, error=error,
                                    apply=apply, delay=delay)

    def clear_failures(self) -> None:
        """Drop pending injected failures."""
        self.web_api.clear_failures()

    async def send_command(self, user_id: str, text: str, channel_id: str = "C0INCIDENTS",
                           command: str = "/rollback", **knobs: Any) -> BotReply:
        """Send a signed slash command to ``bot_url``.

        Knobs: ``sign=False``, ``signature="v0=bad"``, ``timestamp=<int>``, ``raw_body=<bytes>``.
        """
        return await self.outgoing.send_command(user_id, text, channel_id, command, **knobs)

    async def click(self, user_id: str, message: Message | Ephemeral | tuple[str, str], action_id: str,
                    value: str | None = None, selected: list[str] | None = None, **knobs: Any) -> BotReply:
        """Click a button (or tick checkboxes: ``selected``) of a stored message (``Message``,
        ``Ephemeral`` or ``(channel, ts)``)."""
        return await self.outgoing.click(user_id, message, action_id, value, selected, **knobs)

    async def submit_view(self, user_id: str, view_id: str, values: dict[str, str], **knobs: Any) -> BotReply:
        """Submit an open modal (see ``views``) with the texts typed into its input blocks."""
        return await self.outgoing.submit_view(user_id, view_id, values, **knobs)

    async def replay(self, request: SentRequest | None = None) -> BotReply:
        """Resend an earlier request (default: the last one) with its original headers."""
        return await self.outgoing.replay(request)

    @property
    def last_request(self) -> SentRequest | None:
        """Headers and body of the last request sent to the bot."""
        return self.outgoing.last_request

    # --- Socket Mode -----------------------------------------------------------------------

    @property
    def socket_connections(self) -> int:
        """How many Socket Mode connections are open now."""
        return self.socket.connections

    @property
    def socket_connects(self) -> int:
        """How many Socket Mode connections were ever accepted (a reconnect adds one)."""
        return self.socket.connects

    @property
    def socket_envelopes(self) -> list[dict]:
        """Every envelope sent over Socket Mode, oldest first."""
        return list(self.socket.envelopes)

    async def wait_for_socket(self, count: int = 1, timeout: float = 10.0, *, connects: int | None = None) -> int:
        """Wait until at least ``count`` connections are open (and, if given, ``connects`` were
        ever accepted, e.g. ``socket_connects + 1`` to wait for a reconnect); returns how many are open."""
        def ready() -> bool:
            return self.socket_connections >= count and (connects is None or self.socket_connects >= connects)

        await self.wait_for(ready, timeout, what=f"{count} open Socket Mode connection(s)"
                            + (f" after {connects} connects" if connects is not None else ""))
        return self.socket_connections

    async def socket_disconnect(self, reason: str = "refresh_requested") -> int:
        """Send ``{"type": "disconnect", "reason": reason}`` on every open connection, as Slack does
        before a refresh; a real client then opens a new one. Returns how many got it."""
        return await self.socket.disconnect(reason)

    async def socket_drop(self) -> int:
        """Abort every connection's TCP transport without a close frame (a network failure).
        Returns how many were cut."""
        return self.socket.drop()

    # --- queries -----------------------------------------------------------------------

    def channel(self, ref: str) -> Channel | None:
        """A channel by id, name or #name."""
        return self.workspace.channel(ref)

    def _channel_id(self, ref: str) -> str:
        chan = self.workspace.channel(ref)
        return chan.id if chan else ref

    def messages(self, channel: str, include_replies: bool = False) -> list[Message]:
        """Messages of a channel, oldest first; thread replies only if asked (or broadcast)."""
        msgs = self.workspace.messages.get(self._channel_id(channel), [])
        return [m for m in msgs if include_replies or not m.is_reply or m.reply_broadcast]

    def replies(self, channel: str, thread_ts: str) -> list[Message]:
        """The replies in a thread, oldest first (the parent is not included)."""
        return self.workspace.thread(self._channel_id(channel), thread_ts)

    def ephemerals(self, user: str | None = None, channel: str | None = None) -> list[Ephemeral]:
        """Ephemeral messages, oldest first, optionally for one user and/or channel."""
        chan = self._channel_id(channel) if channel else None
        return [e for e in self.workspace.ephemerals
                if (user is None or e.user == user) and (chan is None or e.channel == chan)]

    @property
    def files(self) -> list[File]:
        """All files (uploaded or only reserved); ``.content`` holds the bytes."""
        return list(self.workspace.files.values())

    @property
    def views(self) -> list[View]:
        """All views opened/pushed by the bot."""
        return list(self.workspace.views.values())

    @property
    def response_posts(self) -> list[ResponsePost]:
        """Every post the bot made to a response_url, with the status it got."""
        return list(self.workspace.response_posts)

    def calls(self, method: str | None = None) -> list[ApiCall]:
        """The Web API call log (every call, including failed and injected ones)."""
        return [c for c in self.workspace.calls if method is None or c.method == method]

    def find_message(self, channel: str | None, predicate: Callable[[Message], Any]) -> Message | None:
        """The newest message (replies included) in ``channel`` (None = any) matching ``predicate``."""
        chans = [self._channel_id(channel)] if channel else list(self.workspace.messages)
        candidates = [m for c in chans for m in self.workspace.messages.get(c, [])]
        candidates.sort(key=lambda m: ts_key(m.ts), reverse=True)
        return next((m for m in candidates if predicate(m)), None)

    # --- waiting -------------------------------------------------------------------------

    def _on_change(self) -> None:
        # Swap in a fresh Event, then wake everyone waiting on the old one.
        event, self._changed = self._changed, asyncio.Event()
        event.set()
    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0, what: str | None = None) -> Any:
        """Re-evaluate ``predicate`` on every state change until it returns something truthy
        (a message, a non-empty list, True), and return that. Raises TimeoutError describing
        recent activity."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._changed
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate!r}\n"
                                   + self.describe())
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def wait_for_message(self, channel: str | None, contains: str, timeout: float = 30.0,
                               in_thread_of: str | Message | None = None) -> Message:
        """Wait for a message whose ``all_text()`` contains ``contains`` (newest match wins).

        ``in_thread_of`` (a ts or Message) restricts the search to that thread's replies.
        """
        root = in_thread_of.ts if isinstance(in_thread_of, Message) else in_thread_of

        def match(m: Message) -> bool:
            return contains in m.all_text() and (root is None or (m.is_reply and m.thread_ts == root))

        where = f" in thread {root}" if root else ""
        return await self.wait_for(lambda: self.find_message(channel, match), timeout,
                                   what=f"a message containing {contains!r} in {channel or 'any channel'}{where}")

    async def wait_for_ephemeral(self, user: str, contains: str, channel: str | None = None,
                                 timeout: float = 30.0) -> Ephemeral:
        """Wait for an ephemeral to ``user`` whose text contains ``contains`` (newest wins)."""
        def find() -> Ephemeral | None:
            return next((e for e in reversed(self.ephemerals(user, channel)) if contains in e.all_text()), None)

        return await self.wait_for(find, timeout, what=f"an ephemeral to {user} containing {contains!r}")

    def describe(self, limit: int = 8) -> str:
        """A short human-readable dump of recent messages, ephemerals and API errors."""
        ws = self.workspace
        msgs = sorted((m for ms in ws.messages.values() for m in ms), key=lambda m: ts_key(m.ts))[-limit:]
        lines = ["last messages:"] + [
            f"  [{m.channel} {m.ts}{' thread ' + str(m.thread_ts) if m.is_reply else ''}] "
            f"{m.all_text()[:200]!r}" for m in msgs]
        lines += ["last ephemerals:"] + [f"  [{e.channel} to {e.user}] {e.all_text()[:200]!r}"
                                         for e in ws.ephemerals[-limit:]]
        errors = [c for c in ws.calls if not c.ok][-limit:]
        lines += ["last failed API calls:"] + [f"  {c.method} -> {c.status} {c.error}" for c in errors]
        if self.app_token:
            lines.append(f"socket mode: {self.socket_connections} open, {self.socket_connects} accepted")
        return "\n".join(lines)

    # --- Slack's rate limit on chat.postMessage (delegates to WebApi) ------------------------

    def rate_limit(self, per_second: float | None = 1.0, burst: int = 3, retry_after: int = 1) -> None:
        """Token bucket per channel for ``chat.postMessage`` (off by default); ``rate_limit(None)`` lifts it."""
        self.web_api.rate_limit(per_second, burst=burst, retry_after=retry_after)

    @property
    def ratelimited(self) -> int:
        """How many posts the rate limit refused with HTTP 429, all channels together."""
        return sum(self.workspace.ratelimited.values())

    def ratelimited_in(self, channel: str) -> int:
        """How many posts to ``channel`` (id, name or #name) the rate limit refused."""
        return self.workspace.ratelimited.get(self._channel_id(channel), 0)
