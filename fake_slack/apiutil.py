"""Small helpers shared by the Web API method modules (kept apart to avoid import cycles)."""

from __future__ import annotations

import json
from typing import Any, Callable

from aiohttp import web

from .state import Channel, Message, Workspace

# A Web API method implementation: (workspace, args) -> the answer's extra fields.
Handler = Callable[[Workspace, dict], dict]

# Form-encoded callers (and slack_sdk's own form methods) send these as JSON strings.
JSON_FIELDS = ("blocks", "attachments", "view", "files", "metadata")


class ApiError(Exception):
    """Raised by a method to answer HTTP 200 ``{"ok": false, "error": code}`` like Slack."""

    def __init__(self, code: str, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra


async def read_args(request: web.Request) -> dict:
    """Merge query string, form and JSON body into one dict of arguments.

    slack_sdk sends chat.*/views.* as JSON, many other methods as form fields or even
    query parameters (``params=``), so all three places must be read, like Slack does.
    """
    args: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        ctype = request.content_type
        if ctype == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                args.update(body)
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
    for key in JSON_FIELDS:
        if isinstance(args.get(key), str) and args[key].strip()[:1] in ("[", "{"):
            try:
                args[key] = json.loads(args[key])
            except ValueError:
                raise ApiError(f"invalid_{key}") from None
    return args


def as_bool(value: Any) -> bool:
    """Slack accepts true/false, 1/0 and real booleans."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def require(args: dict, key: str, error: str | None = None) -> Any:
    """The argument's value, or Slack's ``invalid_arguments`` (or ``error``) when missing."""
    value = args.get(key)
    if value in (None, ""):
        raise ApiError(error or "invalid_arguments", detail=f"missing required field: {key}")
    return value


def as_list(value: Any) -> list[str]:
    """Comma-separated string or list -> list of stripped, non-empty strings."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(i).strip() for i in items if str(i).strip()]


def resolve_channel(ws: Workspace, ref: Any, *, allow_dm: bool = True):
    """Channel by id/name; a user id opens (creates) the DM with the bot, as Slack does."""
    chan = ws.channel(ref)
    if chan is None and allow_dm and isinstance(ref, str) and ref in ws.users:
        chan = Channel(id="D" + ref[1:], name=ref, members=[ref, ws.bot_user_id], is_im=True)
        ws.channels[chan.id] = chan
    if chan is None:
        raise ApiError("channel_not_found")
    return chan


def existing_message(ws: Workspace, channel: str, ts: Any) -> Message:
    """The stored message or ``message_not_found``."""
    msg = ws.message(channel, ts)
    if msg is None:
        raise ApiError("message_not_found")
    return msg


def normalize_blocks(ws: Workspace, blocks: Any) -> list:
    """Validate ``blocks`` and give each a ``block_id`` when missing, as Slack stores them."""
    if blocks in (None, ""):
        return []
    if not isinstance(blocks, list) or not all(isinstance(b, dict) and b.get("type") for b in blocks):
        raise ApiError("invalid_blocks")
    if len(blocks) > 50:
        raise ApiError("invalid_blocks")
    out = []
    for block in blocks:
        block = dict(block)
        # Slack invents a short random id; a counter keeps runs reproducible.
        block.setdefault("block_id", f"b{next(ws._ids):04d}")
        out.append(block)
    return out
