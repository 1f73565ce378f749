"""In-memory state of the fake workspace: plain dataclasses and one container, no I/O.

Everything here is synchronous and only ever touched from the event loop that runs the
fake's HTTP server, so no locking is needed.
"""

from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .text import blocks_text


def ts_key(ts: str | float) -> tuple[int, int]:
    """Sort key for Slack ts strings; exact, unlike float() at microsecond precision."""
    sec, _, frac = str(ts).partition(".")
    return int(sec or 0), int((frac + "000000")[:6])


@dataclass
class User:
    id: str
    name: str
    real_name: str | None = None
    tz: str = "UTC"
    email: str | None = None
    is_bot: bool = False

    def to_api(self, team_id: str) -> dict:
        """Shape of ``users.info``'s ``user``."""
        real = self.real_name or self.name
        return {
            "id": self.id, "team_id": team_id, "name": self.name, "real_name": real, "tz": self.tz,
            "is_bot": self.is_bot, "deleted": False,
            "profile": {"real_name": real, "display_name": self.name,
                        "email": self.email or f"{self.name}@example.com"},
        }


@dataclass
class Channel:
    id: str
    name: str
    members: list[str] = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))
    creator: str | None = None
    is_private: bool = False
    is_im: bool = False

    def to_api(self, viewer: str | None = None) -> dict:
        """Shape of a conversation object as returned by ``conversations.*``."""
        return {
            "id": self.id, "name": self.name, "name_normalized": self.name,
            "is_channel": not (self.is_private or self.is_im), "is_group": self.is_private,
            "is_im": self.is_im, "is_private": self.is_private or self.is_im,
            "created": self.created, "creator": self.creator, "is_archived": False,
            "is_member": viewer in self.members, "num_members": len(self.members),
        }


@dataclass
class File:
    id: str
    name: str
    title: str | None = None
    length: int | None = None
    content: bytes | None = None  # None until the bytes were POSTed to the upload URL
    user: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    channels: list[str] = field(default_factory=list)
    thread_ts: str | None = None
    completed: bool = False

    def to_api(self, base_url: str = "") -> dict:
        """Shape of a file object (the subset a bot reads)."""
        return {
            "id": self.id, "name": self.name, "title": self.title or self.name,
            "size": len(self.content) if self.content is not None else self.length,
            "user": self.user, "created": self.created, "channels": list(self.channels),
            "url_private": f"{base_url}/files/{self.id}",
        }


@dataclass
class Message:
    ts: str
    channel: str
    text: str = ""
    blocks: list = field(default_factory=list)
    thread_ts: str | None = None
    user: str | None = None
    bot_id: str | None = None
    subtype: str | None = None
    attachments: list = field(default_factory=list)
    files: list[File] = field(default_factory=list)
    edited: dict | None = None  # {"user", "ts"} once chat.update touched it
    history: list[dict] = field(default_factory=list)  # previous versions, oldest first
    reply_broadcast: bool = False
    metadata: dict | None = None

    @property
    def is_reply(self) -> bool:
        """True for a thread reply (its thread_ts points at another message)."""
        return self.thread_ts is not None and self.thread_ts != self.ts

    def all_text(self) -> str:
        """Text plus every human-visible string in the blocks/attachments, newline-joined."""
        parts = [self.text] if self.text else []
        parts += blocks_text(self.blocks)
        for att in self.attachments:
            parts += [att[k] for k in ("pretext", "title", "text", "fallback") if isinstance(att.get(k), str)]
            parts += blocks_text(att.get("blocks"))
        parts += [f.title or f.name for f in self.files]  # a shared file shows its title
        return "\n".join(parts)

    def snapshot(self) -> dict:
        """The editable part of the message, kept in ``history`` before each change."""
        return {"text": self.text, "blocks": copy.deepcopy(self.blocks),
                "attachments": copy.deepcopy(self.attachments), "edited": self.edited}

    def to_api(self, base_url: str = "", reply_count: int | None = None) -> dict:
        """Shape of a message in Web API answers and interactivity payloads."""
        out: dict[str, Any] = {"type": "message", "ts": self.ts, "text": self.text}
        for key in ("subtype", "user", "bot_id", "thread_ts", "edited", "metadata"):
            if getattr(self, key) is not None:
                out[key] = copy.deepcopy(getattr(self, key))
        if self.blocks:
            out["blocks"] = copy.deepcopy(self.blocks)
        if self.attachments:
            out["attachments"] = copy.deepcopy(self.attachments)
        if self.files:
            out["files"] = [f.to_api(base_url) for f in self.files]
            out["upload"] = True
        if reply_count:
            out["reply_count"] = reply_count
        return out


@dataclass
class Ephemeral:
    ts: str
    channel: str
    user: str  # the only person who sees it
    text: str = ""
    blocks: list = field(default_factory=list)
    thread_ts: str | None = None
    source: str = "chat.postEphemeral"  # or "response_url" / "ack"
    history: list[dict] = field(default_factory=list)
    bot_id: str | None = None

    def all_text(self) -> str:
        """Text plus every human-visible string in the blocks."""
        return "\n".join(([self.text] if self.text else []) + blocks_text(self.blocks))

    def to_api(self) -> dict:
        """Message-like dict (used when a button inside an ephemeral is clicked)."""
        return {"type": "message", "ts": self.ts, "text": self.text, "blocks": copy.deepcopy(self.blocks),
                **({"bot_id": self.bot_id} if self.bot_id else {})}


@dataclass
class ApiCall:
    method: str
    args: dict
    status: int  # HTTP status the fake answered
    ok: bool = True
    error: str | None = None
    at: float = field(default_factory=time.time)


@dataclass
class View:
    id: str
    view: dict
    hash: str
    user: str | None = None
    root_view_id: str | None = None
    previous_view_id: str | None = None
    history: list[dict] = field(default_factory=list)

    def to_api(self, team_id: str, app_id: str, bot_id: str) -> dict:
        """Shape of ``views.*``'s ``view``: the stored definition plus Slack's bookkeeping."""
        out = copy.deepcopy(self.view)
        out.update({"id": self.id, "team_id": team_id, "hash": self.hash, "app_id": app_id,
                    "bot_id": bot_id, "root_view_id": self.root_view_id or self.id,
                    "previous_view_id": self.previous_view_id, "state": {"values": {}}})
        for key in ("private_metadata", "callback_id", "external_id"):
            out.setdefault(key, "")
        return out


@dataclass
class RateLimit:
    """Slack's limit on ``chat.postMessage``: a token bucket per channel.

    Each channel starts with ``burst`` tokens and regains ``per_second`` of them a second;
    a post takes one, and a post finding less than one is refused (HTTP 429).
    """

    per_second: float
    burst: int
    retry_after: int  # what the refusal's ``Retry-After`` header says, in seconds
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # channel -> (tokens, at)

    def take(self, channel: str, now: float | None = None) -> bool:
        """Spend one token of ``channel``'s bucket; False when it is empty."""
        now = time.monotonic() if now is None else now
        tokens, at = self.buckets.get(channel, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.per_second)
        allowed = tokens >= 1.0
        self.buckets[channel] = (tokens - 1.0 if allowed else tokens, now)
        return allowed


@dataclass
class Panel:
    """A side panel of the local workspace page, fed by something outside the fake (see ``FakeSlack.add_panel``).

    ``provider()`` is called for every ``/ui/state`` and returns JSON-able data; ``ui_state.panel_json``
    describes the shape the page lays out (anything else is shown as JSON).
    """

    name: str
    title: str
    provider: Callable[[], Any]


@dataclass
class ResponseHook:
    """One ``response_url`` handed to the bot with a command or a click."""

    id: str
    user: str
    channel: str
    message_ts: str | None = None  # the clicked message, for replace/delete_original
    is_ephemeral: bool = False
    created: float = field(default_factory=time.time)
    uses: int = 0


@dataclass
class ResponsePost:
    """One post the bot made to a response_url, and how the fake answered it."""

    hook_id: str
    body: dict
    status: int
    error: str | None = None


class Workspace:
    """All state of the fake workspace, plus id/ts generation and change notification."""

    def __init__(self) -> None:
        self.team_id, self.team_domain, self.team_name = "T0001", "example", "Example"
        self.bot_user_id, self.bot_id, self.app_id = "U0BOT", "B0001", "A123456"
        self.base_url = ""  # set by the server once it listens
        self.users: dict[str, User] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.usergroup_handles: dict[str, str] = {}  # S… id -> handle shown by the page
        self.channels: dict[str, Channel] = {}
        self.messages: dict[str, list[Message]] = {}  # per channel, ts order, replies included
        self.deleted: list[Message] = []
        self.ephemerals: list[Ephemeral] = []
        self.files: dict[str, File] = {}
        self.views: dict[str, View] = {}
        self.calls: list[ApiCall] = []
        self.hooks: dict[str, ResponseHook] = {}
        self.response_posts: list[ResponsePost] = []
        self.triggers: dict[str, tuple[str, float]] = {}  # trigger_id -> (user, issued at)
        self.used_triggers: set[str] = set()
        self.trigger_ttl: float | None = 3.0  # Slack: trigger_id expires after ~3 s; None = never
        self.post_rate_limit: RateLimit | None = None  # off unless a test asks (FakeSlack.rate_limit)
        self.ratelimited: dict[str, int] = {}  # channel -> chat.postMessage calls refused by post_rate_limit
        self.panels: dict[str, Panel] = {}  # the page's side panels, by name, in the order added
        self.version = 0
        self.listeners: list[Callable[[], None]] = []
        self._last_us = 0
        self._ids = itertools.count(1)

    def next_ts(self) -> str:
        """A message ts like ``"1763950001.000100"``: wall-clock based, strictly increasing."""
        self._last_us = max(int(time.time() * 1_000_000), self._last_us + 1)
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def new_id(self, prefix: str) -> str:
        """A fresh Slack-looking id such as ``C0000007`` (unique across all kinds)."""
        return f"{prefix}{next(self._ids):07d}"

    def changed(self) -> None:
        """Record that state changed and wake whoever waits on it (see FakeSlack.wait_for)."""
        self.version += 1
        for listener in list(self.listeners):
            listener()

    # --- lookups shared by the Web API, response_url and the test-facing queries ---

    def channel(self, ref: str | None) -> Channel | None:
        """Resolve a channel by id, ``name`` or ``#name``."""
        if not ref:
            return None
        if ref in self.channels:
            return self.channels[ref]
        name = ref.lstrip("#")
        return next((c for c in self.channels.values() if c.name == name), None)

    def message(self, channel: str, ts: str | None) -> Message | None:
        """The message with this ts in this channel (top level or reply), or None."""
        return next((m for m in self.messages.get(channel, []) if m.ts == ts), None)

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """The replies of a thread (parent excluded), oldest first."""
        return [m for m in self.messages.get(channel, []) if m.is_reply and m.thread_ts == thread_ts]

    def add_message(self, msg: Message) -> Message:
        """Store a new message; ts order is kept because ts values only ever grow."""
        self.messages.setdefault(msg.channel, []).append(msg)
        self.messages[msg.channel].sort(key=lambda m: ts_key(m.ts))
        self.changed()
        return msg

    def message_api(self, msg: Message) -> dict:
        """``msg.to_api`` with reply_count filled in for thread parents."""
        count = len(self.thread(msg.channel, msg.ts)) if not msg.is_reply else None
        return msg.to_api(self.base_url, count)
