"""What one person sees of the fake workspace, as the JSON behind the browser page (``/ui/state``).

Scoping follows Slack: public channels for everyone, private channels for their members, the
person's own DM with the bot, and only their own ephemerals and modals.
"""

from __future__ import annotations

import copy
import json
import logging
import mimetypes
from typing import Any

from .state import Channel, Ephemeral, File, Message, Panel, User, View, Workspace, ts_key

log = logging.getLogger(__name__)

MAX_MESSAGES = 500  # per channel (newest kept); a demo workspace never gets near it


class UiError(Exception):
    """Bad input from the page: answered as HTTP 400 ``{"ok": false, "error": message}``."""


def dm_id(user_id: str) -> str:
    """The id of a user's DM with the bot, as ``apiutil.resolve_channel`` creates it."""
    return "D" + user_id[1:]


def humans(ws: Workspace) -> list[User]:
    """People one can act as (bots excluded), in the order they were added."""
    return [u for u in ws.users.values() if not u.is_bot]


def pick_user(ws: Workspace, user_id: str | None) -> User | None:
    """The named user (UiError when unknown); no id = the first human user (None if there is none)."""
    if not user_id:
        people = humans(ws)
        return people[0] if people else None
    user = ws.users.get(user_id)
    if user is None:
        raise UiError(f"unknown user {user_id!r}; known users: {', '.join(u.id for u in humans(ws))}")
    return user


def can_see(ws: Workspace, chan: Channel, user_id: str | None) -> bool:
    """Public channels, private channels the user is in, and the user's own DM with the bot."""
    if chan.is_im:
        return user_id is not None and chan.id == dm_id(user_id)
    return not chan.is_private or user_id in chan.members


def display_name(ws: Workspace, user_id: str | None) -> str:
    user = ws.users.get(user_id or "")
    return (user.real_name or user.name) if user else (user_id or "unknown")


def _file(f: File) -> dict:
    mime = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
    size = len(f.content) if f.content is not None else f.length
    return {"id": f.id, "name": f.name, "title": f.title or f.name, "size": size, "mimetype": mime,
            "url": f"/files/{f.id}"}


def message_json(ws: Workspace, m: Message) -> dict:
    """One stored message as the page renders it."""
    user = ws.users.get(m.user or "")
    return {
        "ts": m.ts, "user": m.user, "user_name": display_name(ws, m.user),
        "is_bot": bool(m.bot_id) or bool(user and user.is_bot), "subtype": m.subtype,
        "text": m.text, "blocks": copy.deepcopy(m.blocks), "attachments": copy.deepcopy(m.attachments),
        "thread_ts": m.thread_ts, "reply_count": 0 if m.is_reply else len(ws.thread(m.channel, m.ts)),
        "reply_broadcast": m.reply_broadcast, "edited": m.edited is not None,
        "edited_ts": (m.edited or {}).get("ts"), "files": [_file(f) for f in m.files],
    }


def ephemeral_json(ws: Workspace, e: Ephemeral) -> dict:
    return {"ts": e.ts, "channel": e.channel, "user": ws.bot_user_id, "user_name": display_name(ws, ws.bot_user_id),
            "is_bot": True, "text": e.text, "blocks": copy.deepcopy(e.blocks), "thread_ts": e.thread_ts,
            "source": e.source, "edited": False, "files": [], "attachments": []}


def view_json(v: View) -> dict:
    out = copy.deepcopy(v.view)
    out.update({"id": v.id, "hash": v.hash, "previous_view_id": v.previous_view_id})
    return out


def channel_json(ws: Workspace, chan: Channel, user_id: str | None) -> dict:
    msgs = ws.messages.get(chan.id, [])
    top = [m for m in msgs if not m.is_reply or m.reply_broadcast][-MAX_MESSAGES:]
    threads: dict[str, list[dict]] = {}
    for m in msgs:
        if m.is_reply:
            threads.setdefault(m.thread_ts, []).append(message_json(ws, m))
    name = display_name(ws, ws.bot_user_id) if chan.is_im else chan.name
    return {"id": chan.id, "name": name, "is_im": chan.is_im, "is_private": chan.is_private,
            "is_member": user_id in chan.members, "latest_ts": msgs[-1].ts if msgs else None,
            "messages": [message_json(ws, m) for m in top], "threads": threads}


def panel_json(panel: Panel) -> dict[str, Any]:
    """One side panel for the page: ``{"name", "title", "data"}``, or ``"error"`` (and no data) when its
    provider failed or gave something that is not JSON; a broken panel never breaks the page.

    The page lays out data of this shape, and shows anything else as JSON::

        {"note": "a line under the title",                        # optional
         "sections": [{"title": "Paged", "empty": "Nothing paged yet.",
                       "items": [{"key": "page-0",                 # stable per item
                                  "time": 1700000000.5,            # epoch seconds, or null
                                  "title": "the item's headline",
                                  "badges": [{"text": "trigger", "tone": "bad"}],  # tone: bad, warn, good, info
                                  "fields": [["Severity", "critical"], ["dedup_key", "INC-1"]]}]}]}

    Every string is shown as text, never as HTML.
    """
    try:
        data = panel.provider()
        json.dumps(data, allow_nan=False)
    except Exception as exc:  # the provider is someone else's code
        log.warning("workspace panel %r failed: %s", panel.name, exc, exc_info=True)
        return {"name": panel.name, "title": panel.title, "data": None,
                "error": f"this panel could not be read: {type(exc).__name__}: {exc}"}
    return {"name": panel.name, "title": panel.title, "data": data}


def user_state(ws: Workspace, user_id: str | None) -> dict[str, Any]:
    """Everything ``user_id`` (None/"" = the first human user) can see, for ``GET /ui/state``."""
    version = ws.version
    me = pick_user(ws, user_id)
    uid = me.id if me else None
    visible = [c for c in ws.channels.values() if can_see(ws, c, uid)]
    channels = [channel_json(ws, c, uid) for c in visible if not c.is_im]
    channels.sort(key=lambda c: c["is_private"])  # public first, otherwise as created
    dms = [channel_json(ws, c, uid) for c in visible if c.is_im]
    if uid and not me.is_bot and not dms:  # the DM with the bot exists as soon as one writes in it
        bot = display_name(ws, ws.bot_user_id)
        dms = [{"id": dm_id(uid), "name": bot, "is_im": True, "is_private": True, "is_member": True,
                "latest_ts": None, "messages": [], "threads": {}}]
    seen = {c["id"] for c in channels + dms}
    ephemerals = sorted((e for e in ws.ephemerals if e.user == uid and e.channel in seen), key=lambda e: ts_key(e.ts))
    return {
        "version": version,
        "team": {"id": ws.team_id, "name": ws.team_name, "domain": ws.team_domain},
        "me": {"id": me.id, "name": me.name, "real_name": me.real_name or me.name} if me else None,
        "bot_user_id": ws.bot_user_id,
        "users": [{"id": u.id, "name": u.name, "real_name": u.real_name or u.name, "is_bot": u.is_bot}
                  for u in ws.users.values()],
        "usergroups": [{"id": gid, "handle": ws.usergroup_handles.get(gid) or gid, "users": list(members)}
                       for gid, members in ws.usergroups.items()],
        "channels": channels + dms,
        "ephemerals": [ephemeral_json(ws, e) for e in ephemerals],
        "views": [view_json(v) for v in ws.views.values() if v.user == uid and v.view.get("type") == "modal"],
        "panels": [panel_json(p) for p in ws.panels.values()],  # the same for everyone
    }
