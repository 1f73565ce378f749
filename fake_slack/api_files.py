"""File uploads (Slack's external-upload flow) and ``views.*`` Web API methods.

``files_upload_v2`` in slack_sdk does: ``files.getUploadURLExternal`` -> POST the raw bytes
to ``upload_url`` (``data=bytes``, no multipart) -> ``files.completeUploadExternal``.
"""

from __future__ import annotations

import secrets
import time

from aiohttp import web

from .api_chat import thread_root
from .apiutil import ApiError, Handler, as_list, require, resolve_channel
from .state import File, Message, View, Workspace


def get_upload_url(ws: Workspace, args: dict) -> dict:
    """files.getUploadURLExternal: reserve a file id and hand out an upload URL on this server."""
    name = require(args, "filename")
    try:
        length = int(require(args, "length"))
    except ValueError:
        raise ApiError("invalid_arguments") from None
    f = File(id=ws.new_id("F"), name=name, length=length, user=ws.bot_user_id)
    ws.files[f.id] = f
    return {"upload_url": f"{ws.base_url}/upload/{f.id}", "file_id": f.id}


async def upload(ws: Workspace, request: web.Request) -> web.Response:
    """``POST /upload/<file_id>``: store the bytes (raw body, or the first multipart file).

    Answers ``text/plain`` "OK - <size>" like files.slack.com; slack_sdk only checks the 200.
    """
    f = ws.files.get(request.match_info["file_id"])
    if f is None:
        return web.Response(status=404, text="file not found", content_type="text/plain")
    if request.content_type == "multipart/form-data":
        form = await request.post()
        parts = [v for v in form.values() if isinstance(v, web.FileField)]
        data = parts[0].file.read() if parts else b""
    else:
        data = await request.read()
    f.content = data
    ws.changed()
    return web.Response(text=f"OK - {len(data)}", content_type="text/plain")


async def download(ws: Workspace, request: web.Request) -> web.Response:
    """``GET /files/<file_id>``: the uploaded bytes (what ``url_private`` points at)."""
    f = ws.files.get(request.match_info["file_id"])
    if f is None or f.content is None:
        return web.Response(status=404, text="file not found", content_type="text/plain")
    return web.Response(body=f.content, content_type="application/octet-stream")


def complete_upload(ws: Workspace, args: dict) -> dict:
    """files.completeUploadExternal: title the files and share them as one message per channel."""
    entries = args.get("files")
    if not isinstance(entries, list) or not entries:
        raise ApiError("invalid_arguments")
    files = []
    for entry in entries:
        f = ws.files.get(entry.get("id")) if isinstance(entry, dict) else None
        if f is None or f.content is None:  # unknown, or bytes never uploaded
            raise ApiError("file_not_found")
        files.append((f, entry))
    channels = as_list(args.get("channel_id")) or as_list(args.get("channels"))
    if args.get("thread_ts") and not channels:
        raise ApiError("invalid_arguments")
    targets = [resolve_channel(ws, ref) for ref in channels]
    roots = [thread_root(ws, chan.id, args.get("thread_ts")) for chan in targets]
    for f, entry in files:
        f.title = entry.get("title") or f.title or f.name
        f.completed = True
    for chan, root in zip(targets, roots):
        for f, _ in files:
            f.channels.append(chan.id)
            f.thread_ts = root
        ws.add_message(Message(ts=ws.next_ts(), channel=chan.id, text=args.get("initial_comment") or "",
                               files=[f for f, _ in files], thread_ts=root, user=ws.bot_user_id,
                               bot_id=ws.bot_id, subtype="file_share"))
    ws.changed()
    return {"files": [{"id": f.id, "title": f.title} for f, _ in files]}


def files_info(ws: Workspace, args: dict) -> dict:
    """files.info."""
    f = ws.files.get(require(args, "file", "file_not_found"))
    if f is None:
        raise ApiError("file_not_found")
    return {"file": f.to_api(ws.base_url)}


# --- views ---------------------------------------------------------------------------


def _take_trigger(ws: Workspace, args: dict) -> str:
    """Check a trigger_id like Slack: issued by us, used once, within ``trigger_ttl`` seconds."""
    trigger = require(args, "trigger_id", "invalid_trigger_id")
    if trigger not in ws.triggers:
        raise ApiError("invalid_trigger_id")
    user, issued = ws.triggers[trigger]
    if trigger in ws.used_triggers:
        raise ApiError("trigger_exchanged")
    if ws.trigger_ttl is not None and time.time() - issued > ws.trigger_ttl:
        raise ApiError("expired_trigger_id")
    ws.used_triggers.add(trigger)
    return user


def _view_def(args: dict) -> dict:
    view = args.get("view")
    if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
        raise ApiError("invalid_arguments", detail="view must be an object with type modal or home")
    if not isinstance(view.get("blocks", []), list):
        raise ApiError("invalid_blocks")
    return view


def _answer(ws: Workspace, view: View) -> dict:
    ws.changed()
    return {"view": view.to_api(ws.team_id, ws.app_id, ws.bot_id)}


def _new_hash() -> str:
    return f"{time.time():.6f}.{secrets.token_hex(4)}"


def views_open(ws: Workspace, args: dict) -> dict:
    """views.open: a new modal for the user who triggered it."""
    definition = _view_def(args)
    user = _take_trigger(ws, args)
    view = View(id=ws.new_id("V"), view=definition, hash=_new_hash(), user=user)
    ws.views[view.id] = view
    return _answer(ws, view)


def views_push(ws: Workspace, args: dict) -> dict:
    """views.push: a new view on top of the user's latest one."""
    definition = _view_def(args)
    user = _take_trigger(ws, args)
    below = next((v for v in reversed(ws.views.values()) if v.user == user), None)
    view = View(id=ws.new_id("V"), view=definition, hash=_new_hash(), user=user,
                previous_view_id=below.id if below else None,
                root_view_id=(below.root_view_id or below.id) if below else None)
    ws.views[view.id] = view
    return _answer(ws, view)


def views_update(ws: Workspace, args: dict) -> dict:
    """views.update by view_id or external_id; a stale ``hash`` gives ``hash_conflict``."""
    definition = _view_def(args)
    view = ws.views.get(args.get("view_id") or "")
    if view is None and args.get("external_id"):
        view = next((v for v in ws.views.values() if v.view.get("external_id") == args["external_id"]), None)
    if view is None:
        raise ApiError("not_found")
    if args.get("hash") and args["hash"] != view.hash:
        raise ApiError("hash_conflict")
    view.history.append(view.view)
    view.view, view.hash = definition, _new_hash()
    return _answer(ws, view)


METHODS: dict[str, Handler] = {
    "files.getUploadURLExternal": get_upload_url,
    "files.completeUploadExternal": complete_upload,
    "files.info": files_info,
    "views.open": views_open,
    "views.push": views_push,
    "views.update": views_update,
}
