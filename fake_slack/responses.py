"""``POST /response/<id>``: the ``response_url`` handed out with every command and click.

Rules, as Slack documents them:
- JSON body with ``text``/``blocks``; ``response_type`` "ephemeral" (default) -> an ephemeral
  for the user who triggered it, in that channel; "in_channel" -> a normal channel message.
- ``replace_original: true`` (clicks) rewrites the clicked message in place;
  ``delete_original: true`` removes it. A command's url has no original: a replace is
  posted as a new response instead.
- At most 5 posts within 30 minutes. Beyond that Slack answers HTTP 404 with the body
  ``used_url`` (or ``expired_url``); the fake answers HTTP 404 with JSON
  ``{"ok": false, "error": "used_url" | "expired_url" | "no_such_url"}``.
- A body Slack would not show (``invalid_blocks``, ``no_text``, ``msg_too_long``) gets HTTP 400
  with that error code, and for blocks ``response_metadata.messages`` saying what is wrong.
"""

from __future__ import annotations

import json
import secrets
import time

from aiohttp import web

from .apiutil import ApiError, as_bool, normalize_blocks

MAX_TEXT = 40_000  # as for chat.postMessage
from .state import Ephemeral, Message, ResponseHook, ResponsePost, Workspace

MAX_USES = 5
LIFETIME_S = 30 * 60


def new_hook(ws: Workspace, user: str, channel: str, message_ts: str | None = None,
             is_ephemeral: bool = False) -> str:
    """Register a fresh response_url and return its full URL."""
    hook = ResponseHook(id=secrets.token_hex(12), user=user, channel=channel,
                        message_ts=message_ts, is_ephemeral=is_ephemeral)
    ws.hooks[hook.id] = hook
    return f"{ws.base_url}/response/{hook.id}"


def _json(status: int, body: dict) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


async def _read_body(request: web.Request) -> dict:
    """JSON body (what Bolt's ``respond`` sends), or a form field ``payload=<json>``."""
    if request.content_type == "application/x-www-form-urlencoded":
        raw = (await request.post()).get("payload", "{}")
    else:
        raw = await request.text()
    body = json.loads(raw or "{}")
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    return body


def _original(ws: Workspace, hook: ResponseHook) -> Message | Ephemeral | None:
    if hook.message_ts is None:
        return None
    if hook.is_ephemeral:
        return next((e for e in ws.ephemerals if e.ts == hook.message_ts and e.user == hook.user), None)
    return ws.message(hook.channel, hook.message_ts)


def apply(ws: Workspace, hook: ResponseHook, body: dict) -> None:
    """Carry out one response_url post against the workspace (raises ApiError on bad input)."""
    original = _original(ws, hook)
    if as_bool(body.get("delete_original")):
        if isinstance(original, Message):
            ws.messages[original.channel].remove(original)
            ws.deleted.append(original)
        elif isinstance(original, Ephemeral):
            ws.ephemerals.remove(original)
        return
    text = body.get("text") or ""
    blocks = normalize_blocks(ws, body.get("blocks"))  # invalid_blocks, as for chat.postMessage
    if not text and not blocks and not body.get("attachments"):
        raise ApiError("no_text")
    if len(text) > MAX_TEXT:
        raise ApiError("msg_too_long")
    if as_bool(body.get("replace_original")) and original is not None:
        original.history.append({"text": original.text, "blocks": original.blocks})
        original.text, original.blocks = text, blocks
        return
    if body.get("response_type") == "in_channel":
        ws.add_message(Message(ts=ws.next_ts(), channel=hook.channel, text=text, blocks=blocks,
                               attachments=body.get("attachments") or [],
                               thread_ts=body.get("thread_ts") or None, user=ws.bot_user_id,
                               bot_id=ws.bot_id, subtype="bot_message"))
    else:
        ws.ephemerals.append(Ephemeral(ts=ws.next_ts(), channel=hook.channel, user=hook.user, text=text,
                                       blocks=blocks, thread_ts=body.get("thread_ts") or None,
                                       source="response_url", bot_id=ws.bot_id))


async def handle(ws: Workspace, request: web.Request) -> web.Response:
    """Answer a post to a response_url and record it in ``ws.response_posts``."""
    hook_id = request.match_info["hook_id"]
    hook = ws.hooks.get(hook_id)
    detail: str | None = None  # Slack's "[ERROR] …" explanation, for invalid_blocks
    try:
        body = await _read_body(request)
    except ValueError:
        body, error, status = {}, "invalid_payload", 400
    else:
        error, status = None, 200
        if hook is None:
            error, status = "no_such_url", 404
        elif hook.uses >= MAX_USES:
            error, status = "used_url", 404
        elif time.time() - hook.created > LIFETIME_S:
            error, status = "expired_url", 404
        else:
            try:
                apply(ws, hook, body)
                hook.uses += 1
            except ApiError as exc:
                error, status, detail = exc.code, 400, exc.extra.get("detail")
    ws.response_posts.append(ResponsePost(hook_id=hook_id, body=body, status=status, error=error))
    ws.changed()
    answer: dict = {"ok": False, "error": error} if error else {"ok": True}
    if detail:
        answer["response_metadata"] = {"messages": [f"[ERROR] {detail}"]}
    return _json(status, answer)
