"""Slack's side of the conversation: signed slash commands and button clicks sent to the bot."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import aiohttp

from .responses import new_hook
from .signing import sign as _sign
from .state import Ephemeral, Message, Workspace

if TYPE_CHECKING:
    from .socket_mode import SocketModeEdge

ACK_DEADLINE_MS = 3000  # Slack gives up on an ack after 3 s and shows "operation_timeout"
VERIFICATION_TOKEN = "gIkuvaNzQIHg97ATvDxqgjtO"  # deprecated field Slack still sends


@dataclass
class SentRequest:
    """Exactly what was POSTed to the bot (kept for replay tests)."""

    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class BotReply:
    """The bot's HTTP answer (its ack) to a command or a click."""

    status: int
    body: str
    json: dict | None
    elapsed_ms: float
    headers: dict[str, str] = field(default_factory=dict)
    request: SentRequest | None = None
    response_url: str | None = None
    trigger_id: str | None = None

    @property
    def ok(self) -> bool:
        """HTTP 200, i.e. Slack would consider the request acknowledged."""
        return self.status == 200

    @property
    def timed_out(self) -> bool:
        """True when the ack took longer than Slack's 3 second deadline."""
        return self.elapsed_ms > ACK_DEADLINE_MS


def find_action(blocks: list, action_id: str) -> tuple[str | None, dict]:
    """``(block_id, element)`` of the interactive element with ``action_id``.

    Looks into ``actions`` blocks' elements and section accessories; raises LookupError
    naming the action_ids that do exist, so a failing test says what was on screen.
    """
    present = []
    for block in blocks or []:
        elements = list(block.get("elements") or [])
        if block.get("accessory"):
            elements.append(block["accessory"])
        for element in elements:
            if isinstance(element, dict) and element.get("action_id"):
                if element["action_id"] == action_id:
                    return block.get("block_id"), element
                present.append(element["action_id"])
    raise LookupError(f"no element with action_id {action_id!r} in the message; present: {present}")


def signed_headers(secret: str, body: bytes, *, sign: bool = True, signature: str | None = None,
                   timestamp: str | int | None = None) -> dict[str, str]:
    """Headers Slack sends, with knobs to break the signature on purpose."""
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}
    if sign:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        headers["X-Slack-Request-Timestamp"] = ts
        headers["X-Slack-Signature"] = signature or _sign(secret, ts, body)
    return headers


def _urls_in(body: bytes) -> tuple[str | None, str | None]:
    """``(response_url, trigger_id)`` found in a command or interactivity body."""
    fields = dict(parse_qsl(body.decode("utf-8", "replace")))
    if "payload" in fields:
        try:
            fields = json.loads(fields["payload"])
        except ValueError:
            return None, None
    if not isinstance(fields, dict):
        return None, None
    return fields.get("response_url"), fields.get("trigger_id")


class Outgoing:
    """Builds, signs and delivers Slack's requests to ``bot_url`` (or over an open Socket Mode
    connection, when the app has one); interprets the acks."""

    def __init__(self, ws: Workspace, signing_secret: str, ack_timeout: float = 10.0) -> None:
        self.ws = ws
        self.signing_secret = signing_secret
        self.bot_url: str | None = None
        self.ack_timeout = ack_timeout
        self.last_request: SentRequest | None = None
        self.socket: SocketModeEdge | None = None  # set by FakeSlack when it has an app token
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the HTTP client session, if one was opened."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _user(self, user_id: str):
        user = self.ws.users.get(user_id)
        if user is None:
            raise ValueError(f"unknown user {user_id!r}; seed it with add_user() (known: {sorted(self.ws.users)})")
        return user

    def _trigger(self, user_id: str) -> str:
        trigger = f"{int(time.time() * 1000)}.{secrets.randbelow(10**9)}.{secrets.token_hex(16)}"
        self.ws.triggers[trigger] = (user_id, time.time())
        return trigger

    async def send_command(self, user_id: str, text: str, channel_id: str = "C0INCIDENTS",
                           command: str = "/rollback", **knobs: Any) -> BotReply:
        """Post a slash command as ``slash_command.form`` does; store what the ack displays."""
        user = self._user(user_id)
        chan = self.ws.channel(channel_id)
        if chan is None:
            raise ValueError(f"unknown channel {channel_id!r}; seed it with add_channel()")
        response_url = new_hook(self.ws, user.id, chan.id)
        trigger = self._trigger(user.id)
        fields = {
            "token": VERIFICATION_TOKEN, "team_id": self.ws.team_id, "team_domain": self.ws.team_domain,
            "enterprise_id": "", "enterprise_name": "", "channel_id": chan.id,
            "channel_name": "directmessage" if chan.is_im else chan.name, "user_id": user.id,
            "user_name": user.name, "command": command, "text": text, "api_app_id": self.ws.app_id,
            "is_enterprise_install": "false", "response_url": response_url, "trigger_id": trigger,
        }
        reply = await self._deliver(urlencode(fields).encode(), response_url, trigger, **knobs)
        if reply.ok and not reply.timed_out:
            self._show_command_ack(reply, user.id, chan.id, f"{command} {text}".strip())
        return reply

    def _show_command_ack(self, reply: BotReply, user_id: str, channel: str, echo: str) -> None:
        """What Slack displays for a command ack: a plain-text or JSON body becomes a message."""
        content = reply.json if reply.json is not None else ({"text": reply.body} if reply.body.strip() else None)
        if not content or not (content.get("text") or content.get("blocks")):
            return
        ws = self.ws
        if content.get("response_type") == "in_channel":
            # Slack then also shows the user's command itself in the channel.
            ws.add_message(Message(ts=ws.next_ts(), channel=channel, text=echo, user=user_id))
            ws.add_message(Message(ts=ws.next_ts(), channel=channel, text=content.get("text") or "",
                                   blocks=content.get("blocks") or [], user=ws.bot_user_id,
                                   bot_id=ws.bot_id, subtype="bot_message"))
        else:
            ws.ephemerals.append(Ephemeral(ts=ws.next_ts(), channel=channel, user=user_id,
                                           text=content.get("text") or "", blocks=content.get("blocks") or [],
                                           source="ack", bot_id=ws.bot_id))
        ws.changed()

    async def click(self, user_id: str, message: Message | Ephemeral | tuple[str, str], action_id: str,
                    value: str | None = None, selected: list[str] | None = None, **knobs: Any) -> BotReply:
        """Click the button ``action_id`` of a stored message, sending a ``block_actions`` payload.

        For a checkboxes element, ``selected`` is the values ticked after the click (Slack sends
        the whole selection, as ``selected_options``). Slack ignores the body of an action's ack,
        so nothing is displayed from it.
        """
        user = self._user(user_id)
        if isinstance(message, tuple):
            found = self.ws.message(*message)
            if found is None:
                raise LookupError(f"no message {message[1]!r} in channel {message[0]!r}")
            message = found
        block_id, element = find_action(message.blocks, action_id)
        is_eph = isinstance(message, Ephemeral)
        chan = self.ws.channel(message.channel)
        response_url = new_hook(self.ws, user.id, message.channel, message.ts, is_ephemeral=is_eph)
        trigger = self._trigger(user.id)
        action = {"action_id": action_id, "block_id": block_id, "type": element.get("type", "button"),
                  "text": element.get("text"), "value": element.get("value") if value is None else value,
                  "action_ts": f"{time.time():.6f}"}
        if element.get("style"):
            action["style"] = element["style"]
        if element.get("type") == "checkboxes":
            chosen = set(selected or [])
            action.pop("value")
            action["selected_options"] = [o for o in element.get("options", []) if o.get("value") in chosen]
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": self.ws.team_id},
            "api_app_id": self.ws.app_id, "token": VERIFICATION_TOKEN,
            "container": {"type": "message", "message_ts": message.ts, "channel_id": message.channel,
                          "is_ephemeral": is_eph},
            "trigger_id": trigger, "team": {"id": self.ws.team_id, "domain": self.ws.team_domain},
            "enterprise": None, "is_enterprise_install": False,
            "channel": {"id": message.channel, "name": chan.name if chan else message.channel},
        }
        if not is_eph:  # Slack leaves the message out for clicks inside ephemerals
            payload["message"] = self.ws.message_api(message)
        payload.update({"state": {"values": {}}, "response_url": response_url, "actions": [action]})
        body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
        return await self._deliver(body, response_url, trigger, **knobs)

    async def submit_view(self, user_id: str, view_id: str, values: dict[str, str], **knobs: Any) -> BotReply:
        """Submit an open modal as ``user_id``: ``values`` maps input block ids to the text typed.

        Sends a ``view_submission`` payload shaped like Slack's. An empty ack closes the modal
        (it is removed from the workspace); ``response_action: errors`` leaves it open.
        """
        user = self._user(user_id)
        stored = self.ws.views[view_id]
        state = {}
        for block in stored.view.get("blocks", []):
            element = block.get("element") or {}
            if block.get("type") == "input" and block.get("block_id") in values:
                state[block["block_id"]] = {element.get("action_id", "value"): {
                    "type": element.get("type", "plain_text_input"), "value": values[block["block_id"]]}}
        view = stored.to_api(self.ws.team_id, self.ws.app_id, self.ws.bot_id)
        view["state"] = {"values": state}
        payload = {
            "type": "view_submission", "team": {"id": self.ws.team_id, "domain": self.ws.team_domain},
            "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": self.ws.team_id},
            "api_app_id": self.ws.app_id, "token": VERIFICATION_TOKEN, "trigger_id": self._trigger(user.id),
            "is_enterprise_install": False, "response_urls": [], "view": view,
        }
        body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()
        reply = await self._deliver(body, None, payload["trigger_id"], **knobs)
        if reply.status == 200 and not (reply.json or {}).get("response_action"):
            self.ws.views.pop(view_id, None)
            self.ws.changed()
        return reply

    async def replay(self, request: SentRequest | None = None) -> BotReply:
        """Send an earlier request again, byte for byte and with its original headers."""
        request = request or self.last_request
        if request is None:
            raise RuntimeError("nothing was sent yet")
        return await self._post(request.url, dict(request.headers), request.body)

    async def _deliver(self, body: bytes, response_url: str | None, trigger: str | None, *,
                       sign: bool = True, signature: str | None = None, timestamp: str | int | None = None,
                       raw_body: bytes | str | None = None) -> BotReply:
        if raw_body is not None:
            body = raw_body.encode() if isinstance(raw_body, str) else raw_body
            response_url, trigger = _urls_in(body)  # the replayed body's own, not fresh ones
        if self.socket is not None and self.socket.connections:
            # Like Slack: an app with an open socket gets its requests there, unsigned, as JSON.
            return await self.socket.deliver(body, self.ack_timeout, response_url, trigger)
        if not self.bot_url:
            raise RuntimeError("fake.bot_url is not set (e.g. http://127.0.0.1:PORT/slack/events)"
                               " and no Socket Mode connection is open")
        headers = signed_headers(self.signing_secret, body, sign=sign, signature=signature, timestamp=timestamp)
        reply = await self._post(self.bot_url, headers, body)
        reply.response_url, reply.trigger_id = response_url, trigger
        return reply

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> BotReply:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.ack_timeout))
        self.last_request = SentRequest(url=url, headers=headers, body=body)
        started = time.perf_counter()
        async with self._session.post(url, data=body, headers=headers) as resp:
            text = await resp.text()
            elapsed = (time.perf_counter() - started) * 1000
            parsed = None
            if text.strip().startswith("{"):
                try:
                    parsed = json.loads(text)
                except ValueError:
                    parsed = None
            return BotReply(status=resp.status, body=text, json=parsed, elapsed_ms=elapsed,
                            headers=dict(resp.headers), request=self.last_request)
