"""``chat.*`` Web API methods."""

from __future__ import annotations

from typing import Any

from .apiutil import ApiError, Handler, as_bool, existing_message, normalize_blocks, require, resolve_channel
from .state import Ephemeral, Message, Workspace

MAX_TEXT = 40_000  # Slack refuses a longer ``text`` with msg_too_long


def _check_text(text: str) -> str:
    """``text`` itself, or ``msg_too_long`` like Slack past 40,000 characters."""
    if len(text) > MAX_TEXT:
        raise ApiError("msg_too_long")
    return text


def _metadata(value: Any) -> dict | None:
    """``metadata`` as Slack takes it: ``{"event_type": str, "event_payload": {...}}`` or absent."""
    if value in (None, ""):
        return None
    if (not isinstance(value, dict) or not isinstance(value.get("event_type"), str) or not value["event_type"]
            or not isinstance(value.get("event_payload"), dict)):
        raise ApiError("invalid_metadata_format",
                       detail="metadata needs a string event_type and an object event_payload")
    return value


def _content(ws: Workspace, args: dict) -> tuple[str, list, list]:
    """text, blocks, attachments of a post; Slack refuses a post without any of them."""
    text = args.get("text") or ""
    blocks = normalize_blocks(ws, args.get("blocks"))
    attachments = args.get("attachments") or []
    if not text and not blocks and not attachments:
        raise ApiError("no_text")
    return _check_text(text), blocks, attachments


def thread_root(ws: Workspace, channel: str, thread_ts: str | None) -> str | None:
    """The ts of the thread a post goes to; a reply's ts means that reply's thread."""
    if not thread_ts:
        return None
    parent = ws.message(channel, thread_ts)
    if parent is None:
        # Real Slack may accept a dangling thread_ts; refusing catches bot bugs early.
        raise ApiError("thread_not_found")
    root = parent.thread_ts or parent.ts
    root_msg = ws.message(channel, root)
    if root_msg is not None and root_msg.thread_ts is None:
        root_msg.thread_ts = root_msg.ts  # Slack marks a parent with thread_ts == ts
    return root


def post_message(ws: Workspace, args: dict) -> dict:
    """chat.postMessage: a bot message, top level or in a thread."""
    chan = resolve_channel(ws, require(args, "channel", "channel_not_found"))
    text, blocks, attachments = _content(ws, args)
    metadata = _metadata(args.get("metadata"))
    root = thread_root(ws, chan.id, args.get("thread_ts"))
    msg = Message(
        ts=ws.next_ts(), channel=chan.id, text=text, blocks=blocks, attachments=attachments,
        thread_ts=root, user=ws.bot_user_id, bot_id=ws.bot_id, subtype="bot_message",
        reply_broadcast=bool(root) and as_bool(args.get("reply_broadcast")),
        metadata=metadata,
    )
    ws.add_message(msg)
    return {"channel": chan.id, "ts": msg.ts, "message": ws.message_api(msg)}


def update(ws: Workspace, args: dict) -> dict:
    """chat.update: replace text/blocks in place, keeping the old version in ``history``.

    Like Slack, omitted ``blocks``/``attachments`` are kept and an empty list clears them.
    """
    chan = resolve_channel(ws, require(args, "channel", "channel_not_found"), allow_dm=False)
    msg = existing_message(ws, chan.id, require(args, "ts", "message_not_found"))
    if msg.user != ws.bot_user_id:
        raise ApiError("cant_update_message")  # a bot may only edit its own messages
    if not any(k in args for k in ("text", "blocks", "attachments")):
        raise ApiError("no_text")
    # Check everything before touching the message: a refused update changes nothing.
    text = _check_text(args.get("text") or "") if "text" in args else msg.text
    blocks = normalize_blocks(ws, args.get("blocks")) if "blocks" in args else msg.blocks
    metadata = _metadata(args.get("metadata")) if "metadata" in args else msg.metadata
    msg.history.append(msg.snapshot())
    msg.text, msg.blocks, msg.metadata = text, blocks, metadata
    if "attachments" in args:
        msg.attachments = args.get("attachments") or []
    msg.edited = {"user": ws.bot_user_id, "ts": ws.next_ts()}
    ws.changed()
    return {"channel": chan.id, "ts": msg.ts, "text": msg.text, "message": ws.message_api(msg)}


def delete(ws: Workspace, args: dict) -> dict:
    """chat.delete: the message disappears from the channel (kept in ``ws.deleted``)."""
    chan = resolve_channel(ws, require(args, "channel", "channel_not_found"), allow_dm=False)
    msg = existing_message(ws, chan.id, require(args, "ts", "message_not_found"))
    if msg.user != ws.bot_user_id:
        raise ApiError("cant_delete_message")
    ws.messages[chan.id].remove(msg)
    ws.deleted.append(msg)
    ws.changed()
    return {"channel": chan.id, "ts": msg.ts}


def post_ephemeral(ws: Workspace, args: dict) -> dict:
    """chat.postEphemeral: visible to one user only; answers ``message_ts``.

    Approximation: Slack also requires the user to be a member of the channel
    (``user_not_in_channel``); the fake does not track that strictly.
    """
    chan = resolve_channel(ws, require(args, "channel", "channel_not_found"))
    user = require(args, "user", "user_not_found")
    if user not in ws.users:
        raise ApiError("user_not_found")
    text, blocks, _ = _content(ws, args)
    eph = Ephemeral(ts=ws.next_ts(), channel=chan.id, user=user, text=text, blocks=blocks,
                    thread_ts=args.get("thread_ts") or None, bot_id=ws.bot_id)
    ws.ephemerals.append(eph)
    ws.changed()
    return {"message_ts": eph.ts}


def get_permalink(ws: Workspace, args: dict) -> dict:
    """chat.getPermalink: a link into this fake (``/archives/<channel>/p<ts>``)."""
    chan = resolve_channel(ws, require(args, "channel", "channel_not_found"), allow_dm=False)
    msg = existing_message(ws, chan.id, require(args, "message_ts", "message_not_found"))
    link = f"{ws.base_url}/archives/{chan.id}/p{msg.ts.replace('.', '')}"
    if msg.is_reply:
        link += f"?thread_ts={msg.thread_ts}&cid={chan.id}"
    return {"channel": chan.id, "permalink": link}


METHODS: dict[str, Handler] = {
    "chat.postMessage": post_message,
    "chat.update": update,
    "chat.delete": delete,
    "chat.postEphemeral": post_ephemeral,
    "chat.getPermalink": get_permalink,
}
