"""Small helpers shared by the Web API method modules (kept apart to avoid import cycles)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any, NoReturn

from aiohttp import web
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.basic_objects import JsonObject
from slack_sdk.models.blocks import Block, BlockElement
from slack_sdk.models.blocks.block_elements import RichTextElement
from slack_sdk.models.views import View

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
    """Validate ``blocks`` like Slack and give each a ``block_id`` when missing, as Slack stores them."""
    if blocks in (None, ""):
        return []
    validate_blocks(blocks)
    out = []
    for block in blocks:
        block = dict(block)
        # Slack invents a short random id; a counter keeps runs reproducible.
        block.setdefault("block_id", f"b{next(ws._ids):04d}")
        out.append(block)
    return out


# --- Block Kit validation ----------------------------------------------------------------
#
# Slack refuses a bad payload with ``invalid_blocks`` and messages such as
# ``[ERROR] must be more than 0 characters [json-pointer:/blocks/0/text/text]``.
# slack_sdk's models carry most of the documented limits, but used alone they are laxer
# than Slack: an unknown block or element type is dropped with a log line, a block's
# ``validate_json`` does not look at the objects inside it, a bare string is accepted
# where Slack wants a text object, and empty texts pass. The walk below closes those
# gaps so the fake refuses what Slack refuses, then lets the models check the limits.

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_FIELD_TEXT = 2000  # each of a section's ``fields``; the model only counts them

TEXT_TYPES = frozenset({"plain_text", "mrkdwn"})
# Keys whose value must be a text object (never a bare string) in blocks, elements,
# confirmation dialogs, options and views.
TEXT_OBJECT_KEYS = frozenset({"text", "title", "submit", "close", "label", "placeholder", "hint",
                              "description", "confirm", "deny"})
# Of those, the ones Slack only accepts as plain_text (a confirm dialog's text may be mrkdwn).
PLAIN_ONLY_KEYS = frozenset({"title", "submit", "close", "label", "placeholder", "hint", "confirm", "deny"})
PLAIN_TEXT_OWNERS = frozenset({"header", "button"})  # their ``text`` must be plain_text too
CONFIRM_DIALOG_KEYS = ("title", "text", "confirm", "deny")  # an element's confirmation dialog
# Blocks whose insides follow other rules (rich-text runs carry bare strings): left to the models.
OPAQUE_TYPES = frozenset({"rich_text", "markdown", "table", "rich_text_input"})
# Every element type the models know (rich-text runs aside: they only live inside opaque
# blocks), plus the text objects and image a context block holds.
ELEMENT_TYPES = frozenset(
    {c.type for c in BlockElement._get_sub_block_elements()
     if isinstance(getattr(c, "type", None), str) and not issubclass(c, RichTextElement)}
    | TEXT_TYPES | {"image"})


def _invalid(what: str, pointer: str) -> NoReturn:
    """Raise Slack's ``invalid_blocks`` with a message in Slack's own format."""
    raise ApiError("invalid_blocks", detail=f"{what} [json-pointer:{pointer}]")


def _constructor_problem(exc: Exception) -> str:
    """A model constructor's TypeError/KeyError, said the way Slack would say it."""
    text = str(exc)
    missing = re.search(r"missing \d+ required (?:keyword-only |positional )?arguments?: (.+)$", text)
    if missing:
        return "missing required field: " + missing.group(1).replace("'", "")
    unexpected = re.search(r"unexpected keyword argument '(\w+)'", text)
    if unexpected:
        return f"unsupported property: {unexpected.group(1)}"
    if isinstance(exc, KeyError):
        return f"missing required field: {exc.args[0]}"
    return text


def _check_text_object(value: Any, pointer: str, *, plain: bool) -> None:
    if isinstance(value, str):
        _invalid("expected an object, got a string", pointer)
    if not isinstance(value, dict) or value.get("type") not in TEXT_TYPES:
        _invalid("must be a text object of type plain_text or mrkdwn", pointer)
    if plain and value["type"] != "plain_text":
        _invalid("must be of type plain_text", f"{pointer}/type")
    _walk(value, pointer)


def _check_element(value: Any, pointer: str) -> None:
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        _invalid("expected an element object with a type", pointer)
    if value["type"] not in ELEMENT_TYPES:
        _invalid(f"unsupported element type: {value['type']}", f"{pointer}/type")
    _walk(value, pointer)


def _walk(node: dict, pointer: str) -> None:
    """The checks the models skip, over the raw JSON of one block (or view) and its insides."""
    kind = node.get("type")
    if kind in OPAQUE_TYPES:
        return
    if kind in TEXT_TYPES:
        text = node.get("text")
        if not isinstance(text, str):
            _invalid("expected a string", f"{pointer}/text")
        if not text:
            _invalid("must be more than 0 characters", f"{pointer}/text")
        return
    if kind == "section":
        for i, item in enumerate(node.get("fields") or []):
            if isinstance(item, dict) and len(str(item.get("text") or "")) > MAX_FIELD_TEXT:
                _invalid(f"must be less than {MAX_FIELD_TEXT + 1} characters", f"{pointer}/fields/{i}/text")
    for key, value in node.items():
        where = f"{pointer}/{key}"
        # An element's ``confirm`` is a confirmation dialog (no type); inside one it is a text.
        dialog = key == "confirm" and isinstance(value, dict) and "type" not in value
        if dialog:
            # Slack requires all four; the model would fill in confirm/deny ("Yes"/"No") itself.
            for part in CONFIRM_DIALOG_KEYS:
                if part not in value:
                    _invalid(f"missing required field: {part}", where)
        if key in TEXT_OBJECT_KEYS and not dialog and value is not None:
            _check_text_object(value, where, plain=key in PLAIN_ONLY_KEYS
                               or (key == "text" and kind in PLAIN_TEXT_OWNERS))
        elif key in ("accessory", "element"):
            _check_element(value, where)
        elif key == "elements":
            if not isinstance(value, list) or not value:
                _invalid("must be a non-empty array", where)
            for i, item in enumerate(value):
                _check_element(item, f"{where}/{i}")
        elif isinstance(value, dict):
            _walk(value, where)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    _walk(item, f"{where}/{i}")


def _validate_model(obj: Any, pointer: str) -> None:
    """``validate_json`` on a model and on every model inside it (a block's own call stops at itself)."""
    if isinstance(obj, JsonObject):
        obj.validate_json()
        for value in vars(obj).values():
            _validate_model(value, pointer)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _validate_model(item, pointer)


def _check_with_models(build: Callable[[], Any], pointer: str) -> Any:
    """Build a model from raw JSON and validate it all; any complaint becomes ``invalid_blocks``."""
    try:
        model = build()
        if model is not None:
            _validate_model(model, pointer)
        return model
    except SlackObjectFormationError as exc:
        _invalid(str(exc), pointer)
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        _invalid(_constructor_problem(exc), pointer)


def validate_blocks(blocks: Any, *, limit: int = MAX_MESSAGE_BLOCKS, pointer: str = "/blocks") -> None:
    """Refuse ``blocks`` the way Slack does (``invalid_blocks``); silent when they are valid."""
    if not isinstance(blocks, list):
        _invalid("expected an array of blocks", pointer)
    if len(blocks) > limit:
        _invalid(f"no more than {limit} items allowed", pointer)
    for i, raw in enumerate(blocks):
        where = f"{pointer}/{i}"
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            _invalid("expected a block object with a type", where)
        _walk(raw, where)
        if _check_with_models(functools.partial(Block.parse, raw), where) is None:
            _invalid(f"unsupported block type: {raw['type']}", f"{where}/type")


def validate_view(view: dict) -> None:
    """Refuse a modal/Home tab definition Slack would refuse (``invalid_blocks``)."""
    validate_blocks(view.get("blocks"), limit=MAX_VIEW_BLOCKS, pointer="/view/blocks")
    if view.get("type") == "modal" and not view.get("title"):
        _invalid("missing required field: title", "/view")  # the model lets a modal go untitled
    _walk({k: v for k, v in view.items() if k != "blocks"}, "/view")
    _check_with_models(functools.partial(_view_model, view), "/view")


def _view_model(view: dict) -> View:
    """slack_sdk's View, its blocks left out (validate_blocks checked them, and the 100 limit).

    The model also wants at least one block; Slack documents only the maximum, and the fake's
    own tests open empty modals, so that one model rule is not applied.
    """
    model = View(**view)
    model.blocks = None
    return model


def strict_views(handler: Handler) -> Handler:
    """Wrap a ``views.*`` handler so an invalid view is refused before anything is stored.

    A missing or non-modal/home ``view`` is left to the handler, which answers its own error.
    """
    @functools.wraps(handler)
    def checked(ws: Workspace, args: dict) -> dict:
        view = args.get("view")
        if isinstance(view, dict) and view.get("type") in ("modal", "home"):
            validate_view(view)
        return handler(ws, args)
    return checked
