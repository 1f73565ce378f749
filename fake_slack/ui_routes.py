"""The local workspace in the browser: the page, what a person sees, live updates, what they do.

Mounted by ``FakeSlack(..., ui=True)``:

- ``GET /`` the page; ``GET /ui/static/app.js|app.css`` its script and style;
- ``GET /ui/state?user=U…`` what that person sees (see ``ui_state.user_state``), with the side panels
  ``FakeSlack.add_panel`` added (see ``ui_state.panel_json``);
- ``GET /ui/events`` server-sent events: ``data: {"version": n}`` on every change (``FakeSlack.notify_change``
  makes one for a panel's data);
- ``POST /ui/command`` ``{user, channel, text, thread_ts?}``: ``/cmd rest`` -> a signed slash command,
  anything else -> that person's message;
- ``POST /ui/action`` ``{user, channel, ts, action_id, value?, selected?}``: a click;
- ``POST /ui/view`` ``{user, view_id, values: {block_id: text}}``: a modal submission;
- ``POST /ui/view/close`` ``{user, view_id}``: dismiss a modal.

Bad input answers HTTP 400 ``{"ok": false, "error": "<what is wrong>"}``.
"""

from __future__ import annotations

import asyncio
import json
import re
from importlib import resources
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from .apiutil import resolve_channel
from .outgoing import BotReply, find_action
from .state import Channel, User
from .ui_state import UiError, can_see, dm_id, pick_user, user_state

if TYPE_CHECKING:
    from .server import FakeSlack

STATIC = {"app.js": "application/javascript", "app.css": "text/css"}
NO_CACHE = {"Cache-Control": "no-cache"}
# The page loads nothing from elsewhere: it must work offline.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
_MENTION = re.compile(r"(?<![\w<@])@([\w.-]*\w)")
_CHANNEL_REF = re.compile(r"(?<![\w<#&])#([a-z0-9_-]+)")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("ui", name).read_text("utf-8")


def _error(message: str) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=400)


class WorkspaceUI:
    """The page's routes on the fake's aiohttp app, and its event streams."""

    keepalive = 15.0  # seconds between ``: keepalive`` comments on an idle event stream

    def __init__(self, fake: FakeSlack) -> None:
        self.fake = fake
        self.ws = fake.workspace
        self._streams: set[asyncio.Event] = set()
        self._closed = False
        self.ws.listeners.append(self._on_change)

    def mount(self, app: web.Application) -> None:
        """Add the routes to ``app`` (called by ``FakeSlack.start``)."""
        self._closed = False
        app.router.add_get("/", self.index)
        app.router.add_get("/ui/static/{name}", self.static)
        app.router.add_get("/ui/state", self.state)
        app.router.add_get("/ui/events", self.events)
        for path, handler in (("/ui/command", self.command), ("/ui/action", self.action),
                              ("/ui/view", self.view), ("/ui/view/close", self.view_close)):
            app.router.add_post(path, self._guarded(handler))

    async def close(self) -> None:
        """End every event stream (before the server stops, so none holds it open)."""
        self._closed = True
        for wake in list(self._streams):
            wake.set()
        await asyncio.sleep(0)

    def _on_change(self) -> None:
        for wake in list(self._streams):
            wake.set()

    # --- page and state -----------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text=_asset("index.html"), content_type="text/html",
                            headers={**NO_CACHE, "Content-Security-Policy": CSP})

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound(text="no such file")
        return web.Response(text=_asset(name), content_type=STATIC[name], headers=NO_CACHE)

    async def state(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(user_state(self.ws, request.query.get("user")), headers=NO_CACHE)
        except UiError as exc:
            return _error(str(exc))

    async def events(self, request: web.Request) -> web.StreamResponse:
        """``text/event-stream``: the current version at once, then one event per change
        (changes in a burst coalesce into one event), a keepalive comment when idle."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        wake = asyncio.Event()
        self._streams.add(wake)
        try:
            await resp.prepare(request)
            await resp.write(f"retry: 1000\ndata: {json.dumps({'version': self.ws.version})}\n\n".encode())
            while not self._closed:
                try:
                    await asyncio.wait_for(wake.wait(), self.keepalive)
                except TimeoutError:
                    await resp.write(b": keepalive\n\n")
                    continue
                wake.clear()
                if self._closed:
                    break
                await resp.write(f"data: {json.dumps({'version': self.ws.version})}\n\n".encode())
        except ConnectionError:
            pass  # the browser went away
        finally:
            self._streams.discard(wake)
        return resp

    # --- what a person does ---------------------------------------------------------------

    def _guarded(self, handler):
        async def run(request: web.Request) -> web.Response:
            try:
                body = await request.json()
            except ValueError:
                return _error("the body must be JSON")
            if not isinstance(body, dict):
                return _error("the body must be a JSON object")
            try:
                return web.json_response({"ok": True, **await handler(body)})
            except UiError as exc:
                return _error(str(exc))
        return run

    def _user(self, body: dict) -> User:
        if not body.get("user"):
            raise UiError("missing field: user")
        user = pick_user(self.ws, str(body["user"]))
        if user is None or user.is_bot:
            raise UiError(f"{body['user']!r} is the bot; act as a person")
        return user

    def _channel(self, user: User, ref: Any) -> Channel:
        ref = str(ref or "")
        chan = self.ws.channel(ref)
        if chan is None and ref == dm_id(user.id):
            chan = resolve_channel(self.ws, user.id)  # the DM comes to exist when first used
        if chan is None or not can_see(self.ws, chan, user.id):
            raise UiError(f"unknown channel {ref!r} (for {user.id})")
        return chan

    async def _to_bot(self, sending) -> BotReply:
        url = self.fake.bot_url
        if not url and not self.fake.socket_connections:  # a Socket Mode app is reachable without one
            sending.close()
            raise UiError("the bot is not reachable: fake.bot_url is not set and no Socket Mode connection is open")
        try:
            return await sending
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            where = url or "its Socket Mode connection"
            raise UiError(f"the bot is not reachable at {where}: {exc or type(exc).__name__}") from None

    @staticmethod
    def _ack(reply: BotReply) -> dict:
        return {"status": reply.status, "acked": reply.ok and not reply.timed_out,
                "elapsed_ms": round(reply.elapsed_ms, 1)}

    def _as_typed(self, text: str) -> str:
        """What Slack stores for typed text: &, <, > escaped, @name and #channel turned into links."""
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        names = {u.name: u.id for u in self.ws.users.values()}
        text = _MENTION.sub(lambda m: f"<@{names[m[1]]}>" if m[1] in names else m[0], text)
        chans = {c.name: c.id for c in self.ws.channels.values() if not c.is_im and not c.is_private}
        return _CHANNEL_REF.sub(lambda m: f"<#{chans[m[1]]}|{m[1]}>" if m[1] in chans else m[0], text)

    async def command(self, body: dict) -> dict:
        user = self._user(body)
        chan = self._channel(user, body.get("channel"))
        text = str(body.get("text") or "").strip()
        if not text:
            raise UiError("nothing to send: text is empty")
        if text.startswith("/"):
            command, _, rest = text.partition(" ")
            reply = await self._to_bot(self.fake.send_command(user.id, rest.strip(), chan.id, command))
            return {"kind": "command", "command": command, **self._ack(reply)}
        thread_ts = body.get("thread_ts") or None
        if thread_ts and self.ws.message(chan.id, thread_ts) is None:
            raise UiError(f"unknown thread {thread_ts!r} in {chan.id}")
        msg = self.fake.post_message(chan.id, self._as_typed(text), user.id, thread_ts=thread_ts)
        return {"kind": "message", "channel": chan.id, "ts": msg.ts}

    async def action(self, body: dict) -> dict:
        user = self._user(body)
        chan = self._channel(user, body.get("channel"))
        ts, action_id = str(body.get("ts") or ""), str(body.get("action_id") or "")
        target = self.ws.message(chan.id, ts) or next(
            (e for e in self.ws.ephemerals if e.channel == chan.id and e.ts == ts and e.user == user.id), None)
        if target is None:
            raise UiError(f"unknown message {ts!r} in {chan.id}")
        try:
            find_action(target.blocks, action_id)
        except LookupError as exc:
            raise UiError(str(exc)) from None
        selected = body.get("selected")
        if selected is not None and not (isinstance(selected, list) and all(isinstance(s, str) for s in selected)):
            raise UiError("selected must be a list of option values")
        value = body.get("value")
        reply = await self._to_bot(self.fake.click(user.id, target, action_id,
                                                   None if value is None else str(value), selected))
        return self._ack(reply)

    def _own_view(self, user: User, body: dict):
        view = self.ws.views.get(str(body.get("view_id") or ""))
        if view is None or view.user != user.id:
            raise UiError(f"unknown view {body.get('view_id')!r} (for {user.id})")
        return view

    async def view(self, body: dict) -> dict:
        user = self._user(body)
        view = self._own_view(user, body)
        values = body.get("values") or {}
        if not isinstance(values, dict):
            raise UiError("values must map block ids to texts")
        values = {str(k): (None if v in (None, "") else str(v)) for k, v in values.items()}
        reply = await self._to_bot(self.fake.submit_view(user.id, view.id, values))
        answer = reply.json or {}
        return {**self._ack(reply), "response_action": answer.get("response_action"),
                "errors": answer.get("errors") or {}, "closed": view.id not in self.ws.views}

    async def view_close(self, body: dict) -> dict:
        user = self._user(body)
        view = self._own_view(user, body)
        self.ws.views.pop(view.id, None)
        self.ws.changed()
        return {"closed": True}
