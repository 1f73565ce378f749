"""Slack's Socket Mode edge: ``apps.connections.open`` tickets, the websockets, envelopes and acks.

The wire format (see ``shared/slack/README.md``, "Socket Mode"):

- the app calls ``apps.connections.open`` with its app-level token and gets
  ``ws://…/link/?ticket=…`` (see ``WebApi``); a ticket opens one connection, once;
- on connect Slack sends ``{"type": "hello", "num_connections": n, "debug_info": {…},
  "connection_info": {"app_id": …}}``;
- each request is an envelope ``{"envelope_id", "type", "payload", "accepts_response_payload"}``,
  acked by the app with ``{"envelope_id": <same>, "payload": {…optional…}}``;
- ``{"type": "disconnect", "reason": …}`` asks the app to open a new connection.

Everything runs on the fake's event loop, so plain lists and dicts need no locking.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSCloseCode, WSMsgType, web

from .outgoing import BotReply
from .state import Workspace

PATH = "/link/"
CLOSE_TIMEOUT = 1.0  # seconds to wait for the app's close frame before the transport is cut


def envelope_for(body: bytes) -> tuple[str, dict[str, Any], bool]:
    """``(type, payload, accepts_response_payload)`` for the form body the HTTP edge would POST.

    A slash command's form fields become a JSON object of the same (string) fields; an
    interactivity body's ``payload=`` is the JSON payload itself, no longer url-encoded.
    """
    fields = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if "payload" in fields:
        try:
            payload = json.loads(fields["payload"])
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            # Slack ignores what a block_actions ack carries, and says so in the envelope.
            return "interactive", payload, payload.get("type") != "block_actions"
    return "slash_commands", fields, True


@dataclass
class Connection:
    """One open websocket, with the request it came in on (whose transport ``drop`` cuts)."""

    id: int
    sock: web.WebSocketResponse
    request: web.Request
    opened: float = field(default_factory=time.time)


class SocketModeEdge:
    """Issues tickets, holds the open connections, sends envelopes and matches the acks."""

    def __init__(self, ws: Workspace, app_token: str | None, notify: Callable[[], None]) -> None:
        self.ws = ws
        self.app_token = app_token
        self._notify = notify  # wakes FakeSlack.wait_for; not ws.changed(): the page need not redraw
        self._tickets: set[str] = set()
        self._open: list[Connection] = []
        self._pending: dict[str, asyncio.Future[dict | None]] = {}  # None: stopped before the ack
        self._ids = itertools.count(1)
        self._turn = itertools.count()
        self.connects = 0
        self.envelopes: list[dict] = []  # every envelope sent, oldest first

    # --- apps.connections.open -------------------------------------------------------------

    def issue_url(self) -> str:
        """A fresh single-use ``ws://…/link/?ticket=…`` URL (what ``apps.connections.open`` returns)."""
        if not self.ws.base_url:
            raise RuntimeError("FakeSlack is not started")
        ticket = secrets.token_urlsafe(18)
        self._tickets.add(ticket)
        return f"ws{self.ws.base_url[len('http'):]}{PATH}?ticket={ticket}"

    # --- the websocket route ---------------------------------------------------------------

    @property
    def connections(self) -> int:
        """How many connections are open now."""
        return len(self._open)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """``GET /link/?ticket=…``: upgrade to a websocket, say hello, then read acks until closed."""
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            # Refused before the upgrade, so the client's handshake fails (a used ticket too).
            return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)
        self._tickets.discard(ticket)
        sock = web.WebSocketResponse(timeout=CLOSE_TIMEOUT)
        await sock.prepare(request)
        conn = Connection(id=next(self._ids), sock=sock, request=request)
        try:
            await sock.send_json({
                "type": "hello", "num_connections": len(self._open) + 1,
                "debug_info": {"host": "fake", "build_number": 1, "approximate_connection_time": 18060},
                "connection_info": {"app_id": self.ws.app_id},
            })
            # Counted only now: an envelope must not overtake the hello.
            self._open.append(conn)
            self.connects += 1
            self._notify()
            async for msg in sock:
                if msg.type == WSMsgType.TEXT:
                    self._on_text(msg.data)
        except (ConnectionError, RuntimeError):
            pass  # the app went away mid-send; same as a close
        finally:
            self._forget(conn)
        return sock

    def _on_text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return  # Slack ignores what it cannot parse
        if not isinstance(message, dict):
            return
        # Acks are matched by envelope id on any connection: an app may answer on a fresh one.
        future = self._pending.get(str(message.get("envelope_id") or ""))
        if future is not None and not future.done():
            future.set_result(message)

    def _forget(self, conn: Connection) -> None:
        if conn in self._open:
            self._open.remove(conn)
            self._notify()

    # --- delivering ------------------------------------------------------------------------

    async def deliver(self, body: bytes, timeout: float, response_url: str | None = None,
                      trigger_id: str | None = None) -> BotReply:
        """Send ``body`` (the HTTP edge's form body) as an envelope and wait up to ``timeout`` for the ack.

        The reply looks like the HTTP edge's: status 200 with the ack's payload as ``json`` (and
        its JSON text as ``body``), or 408 with ``json=None`` when no ack came in time. Raises
        ConnectionError when no open connection would take the envelope.
        """
        kind, payload, accepts = envelope_for(body)
        envelope_id = str(uuid.uuid4())
        envelope = {"envelope_id": envelope_id, "type": kind, "payload": payload,
                    "accepts_response_payload": accepts}
        future: asyncio.Future[dict | None] = asyncio.get_running_loop().create_future()
        self._pending[envelope_id] = future
        started = time.perf_counter()
        try:
            await self._send(envelope)
            self.envelopes.append(envelope)
            try:
                ack: dict | None = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                ack = None
        finally:
            self._pending.pop(envelope_id, None)
        elapsed = (time.perf_counter() - started) * 1000
        if ack is None:
            return BotReply(status=408, body="", json=None, elapsed_ms=elapsed,
                            response_url=response_url, trigger_id=trigger_id)
        answer = ack.get("payload")
        if isinstance(answer, str):  # a bare string ack reads like a plain-text HTTP body
            text, parsed = answer, None
        else:
            text = "" if answer is None else json.dumps(answer)
            parsed = answer if isinstance(answer, dict) else None
        return BotReply(status=200, body=text, json=parsed, elapsed_ms=elapsed,
                        response_url=response_url, trigger_id=trigger_id)

    async def _send(self, envelope: dict) -> None:
        # Slack spreads envelopes over an app's connections; round robin, skipping dead ones.
        text = json.dumps(envelope, separators=(",", ":"))
        conns = list(self._open)
        start = next(self._turn) % len(conns) if conns else 0
        for conn in conns[start:] + conns[:start]:
            if conn.sock.closed:
                continue
            try:
                await conn.sock.send_str(text)
                return
            except (ConnectionError, RuntimeError):
                self._forget(conn)
        raise ConnectionError("no open Socket Mode connection took the envelope")

    # --- test knobs ------------------------------------------------------------------------

    async def disconnect(self, reason: str = "refresh_requested") -> int:
        """Send ``{"type": "disconnect", …}`` on every open connection; returns how many got it.

        The connections stay open: a real client opens a new one and then closes the old.
        """
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}}
        sent = 0
        for conn in list(self._open):
            try:
                await conn.sock.send_json(message)
                sent += 1
            except (ConnectionError, RuntimeError):
                self._forget(conn)
        return sent

    def drop(self) -> int:
        """Cut every connection's TCP transport, no close frame (a network failure); returns how many."""
        dropped = list(self._open)
        for conn in dropped:
            transport = conn.request.transport
            if transport is not None:
                transport.abort()
            self._forget(conn)
        return len(dropped)

    async def close(self) -> None:
        """Close every connection (code 1001, going away) and release pending waits; for ``stop``."""
        for future in self._pending.values():
            if not future.done():
                future.set_result(None)  # the sender gets its 408 now, not after the ack timeout
        conns = list(self._open)
        await asyncio.gather(*(self._close_one(c) for c in conns), return_exceptions=True)
        self._tickets.clear()

    async def _close_one(self, conn: Connection) -> None:
        try:
            await asyncio.wait_for(conn.sock.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping"),
                                   CLOSE_TIMEOUT + 0.5)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            transport = conn.request.transport
            if transport is not None and not transport.is_closing():
                transport.abort()  # the app never answered the close frame
            self._forget(conn)
