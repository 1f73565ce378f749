"""``auth.test``, ``conversations.*``, ``users.*`` and ``usergroups.*`` Web API methods."""

from __future__ import annotations

import re

from .apiutil import ApiError, Handler, as_bool, as_list, require, resolve_channel
from .state import Channel, Message, Workspace, ts_key

# Slack: "lowercase letters, numbers, hyphens, and underscores, 80 characters or less".
# (Slack also accepts non-Latin letters; the fake keeps to ASCII.)
_NAME_OK = re.compile(r"^[a-z0-9_-]+$")


def auth_test(ws: Workspace, args: dict) -> dict:
    """auth.test: who the bot token belongs to."""
    bot = ws.users.get(ws.bot_user_id)
    return {"url": f"{ws.base_url}/", "team": ws.team_name, "user": bot.name if bot else "bot",
            "team_id": ws.team_id, "user_id": ws.bot_user_id, "bot_id": ws.bot_id,
            "is_enterprise_install": False}


def create(ws: Workspace, args: dict) -> dict:
    """conversations.create with Slack's name rules; the bot becomes creator and member."""
    name = args.get("name") or ""
    if not name:
        raise ApiError("invalid_name_required")
    if len(name) > 80:
        raise ApiError("invalid_name_maxlength")
    if not _NAME_OK.match(name):
        raise ApiError("invalid_name_specials")
    if not name.strip("-_"):
        raise ApiError("invalid_name_punctuation")
    if any(c.name == name and not c.is_im for c in ws.channels.values()):
        raise ApiError("name_taken")
    chan = Channel(id=ws.new_id("C"), name=name, members=[ws.bot_user_id], creator=ws.bot_user_id,
                   is_private=as_bool(args.get("is_private")))
    ws.channels[chan.id] = chan
    ws.messages[chan.id] = []
    ws.changed()
    return {"channel": chan.to_api(ws.bot_user_id)}


def invite(ws: Workspace, args: dict) -> dict:
    """conversations.invite: ``users`` is comma-separated.

    Approximation: Slack reports per-user failures in an ``errors`` list when several users
    are invited; the fake fails the whole call on the first bad user instead.
    """
    chan = resolve_channel(ws, require(args, "channel", "channel_not_found"), allow_dm=False)
    users = as_list(args.get("users"))
    if not users:
        raise ApiError("no_user")
    if ws.bot_user_id not in chan.members:
        raise ApiError("not_in_channel")
    for user in users:
        if user == ws.bot_user_id:
            raise ApiError("cant_invite_self")
        if user not in ws.users:
            raise ApiError("user_not_found")
    new = [u for u in users if u not in chan.members]
    if not new:
        raise ApiError("already_in_channel")
    chan.members.extend(new)
    ws.changed()
    return {"channel": chan.to_api(ws.bot_user_id)}


def open_dm(ws: Workspace, args: dict) -> dict:
    """conversations.open with one user: the DM between that user and the bot (opened if new)."""
    users = as_list(require(args, "users", "users_list_not_supplied"))
    if len(users) != 1:
        raise ApiError("not_supported")  # a group DM: the bot never opens one
    if users[0] not in ws.users:
        raise ApiError("user_not_found")
    return {"channel": {"id": resolve_channel(ws, users[0]).id}}


def info(ws: Workspace, args: dict) -> dict:
    """conversations.info."""
    chan = resolve_channel(ws, require(args, "channel", "channel_not_found"), allow_dm=False)
    return {"channel": chan.to_api(ws.bot_user_id)}


def members(ws: Workspace, args: dict) -> dict:
    """conversations.members."""
    chan = resolve_channel(ws, require(args, "channel", "channel_not_found"), allow_dm=False)
    return {"members": list(chan.members), "response_metadata": {"next_cursor": ""}}


def _page(ws: Workspace, items: list[Message], args: dict, default_limit: int) -> dict:
    """Cursor pagination: the cursor is simply the offset of the next item.

    A message's ``metadata`` comes back only with ``include_all_metadata=true``, as in Slack:
    an app that forgets the flag does not find its own messages by their metadata.
    """
    try:
        limit = max(1, min(int(args.get("limit") or default_limit), 1000))
        start = int(str(args.get("cursor") or "0").removeprefix("offset:"))
    except ValueError:
        raise ApiError("invalid_cursor") from None
    page = [ws.message_api(m) for m in items[start:start + limit]]
    if not as_bool(args.get("include_all_metadata")):
        for message in page:
            message.pop("metadata", None)
    more = start + limit < len(items)
    return {"messages": page, "has_more": more,
            "response_metadata": {"next_cursor": f"offset:{start + limit}" if more else ""}}


def _in_range(msg: Message, args: dict) -> bool:
    """oldest/latest/inclusive filtering as conversations.history/replies do it."""
    ts, incl = ts_key(msg.ts), as_bool(args.get("inclusive"))
    oldest, latest = args.get("oldest"), args.get("latest")
    if oldest and (ts < ts_key(oldest) or (ts == ts_key(oldest) and not incl)):
        return False
    return not (latest and (ts > ts_key(latest) or (ts == ts_key(latest) and not incl)))


def history(ws: Workspace, args: dict) -> dict:
    """conversations.history: top-level messages (and broadcast replies), newest first."""
    chan = resolve_channel(ws, require(args, "channel", "channel_not_found"), allow_dm=False)
    msgs = [m for m in ws.messages.get(chan.id, []) if (not m.is_reply or m.reply_broadcast) and _in_range(m, args)]
    return _page(ws, list(reversed(msgs)), args, 100)


def replies(ws: Workspace, args: dict) -> dict:
    """conversations.replies: the parent first, then its replies oldest first."""
    chan = resolve_channel(ws, require(args, "channel", "channel_not_found"), allow_dm=False)
    msg = ws.message(chan.id, require(args, "ts", "thread_not_found"))
    if msg is None:
        raise ApiError("thread_not_found")
    root = ws.message(chan.id, msg.thread_ts or msg.ts) or msg
    items = [root] + [m for m in ws.thread(chan.id, root.ts) if _in_range(m, args)]
    return _page(ws, items, args, 1000)


def users_info(ws: Workspace, args: dict) -> dict:
    """users.info."""
    user = ws.users.get(require(args, "user", "user_not_found"))
    if user is None:
        raise ApiError("user_not_found")
    return {"user": user.to_api(ws.team_id)}


def users_lookup_by_email(ws: Workspace, args: dict) -> dict:
    """users.lookupByEmail."""
    email = require(args, "email", "users_not_found")
    for user in ws.users.values():
        if user.to_api(ws.team_id)["profile"]["email"] == email:
            return {"user": user.to_api(ws.team_id)}
    raise ApiError("users_not_found")


def usergroup_users(ws: Workspace, args: dict) -> dict:
    """usergroups.users.list: the user ids of a user group (``S…`` id)."""
    group = require(args, "usergroup", "no_such_subteam")
    if group not in ws.usergroups:
        raise ApiError("no_such_subteam")
    return {"users": list(ws.usergroups[group])}


METHODS: dict[str, Handler] = {
    "auth.test": auth_test,
    "conversations.create": create,
    "conversations.invite": invite,
    "conversations.info": info,
    "conversations.open": open_dm,
    "conversations.members": members,
    "conversations.history": history,
    "conversations.replies": replies,
    "users.info": users_info,
    "users.lookupByEmail": users_lookup_by_email,
    "usergroups.users.list": usergroup_users,
}
