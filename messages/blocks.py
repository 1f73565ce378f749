"""Small Block Kit constructors, with Slack's length limits applied where text is built.

Limits (Slack's Block Kit reference): section text 3,000 characters, a section field 2,000,
header 150, button text 75, button value 2,000, confirm dialog text 300, 10 fields a section,
50 blocks a message. A message's fallback `text` is refused past 40,000 characters and Slack
advises at most 4,000; every message keeps it within TEXT_LIMIT, whatever its builder joined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Block = dict[str, Any]

TEXT_LIMIT = 3000  # a message's fallback text (notifications, old clients, screen readers)
BLOCKS_LIMIT = 50  # blocks in one message
ACTIONS_LIMIT = 25  # elements in one actions block


@dataclass(frozen=True)
class SlackMessage:
    """Blocks for Slack plus the plain-text fallback shown in notifications and by old clients.

    Built here, the message is within Slack's limits whatever its builder put in: the fallback
    is clipped to TEXT_LIMIT, and blocks past the 50th are replaced by one line saying how many
    were left out (the full detail is in the report and the audit trail)."""

    text: str
    blocks: list[Block]

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", clip(self.text, TEXT_LIMIT))
        if len(self.blocks) > BLOCKS_LIMIT:
            left_out = len(self.blocks) - (BLOCKS_LIMIT - 1)
            kept = self.blocks[: BLOCKS_LIMIT - 1] + [context(f"…and {left_out} more blocks not shown here.")]
            object.__setattr__(self, "blocks", kept)


def combined(messages: list[SlackMessage]) -> SlackMessage:
    """Several messages as one (progress lines that piled up behind Slack's rate), in order.
    The caller keeps the blocks within BLOCKS_LIMIT; past it the last ones are summarised."""
    if len(messages) == 1:
        return messages[0]
    return SlackMessage("\n".join(message.text for message in messages),
                        [block for message in messages for block in message.blocks])


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain(text: str, limit: int = 3000) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def mrkdwn(text: str, limit: int = 3000) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": clip(text, limit)}


def header(text: str) -> Block:
    return {"type": "header", "text": plain(text, 150)}


def section(text: str, *, block_id: str | None = None) -> Block:
    block: Block = {"type": "section", "text": mrkdwn(text)}
    if block_id:
        block["block_id"] = block_id
    return block


def fields(pairs: list[tuple[str, str]]) -> Block:
    return {"type": "section", "fields": [mrkdwn(f"*{label}*\n{value}", 2000) for label, value in pairs[:10]]}


def context(*texts: str) -> Block:
    return {"type": "context", "elements": [mrkdwn(t) for t in texts[:10]]}


def divider() -> Block:
    return {"type": "divider"}


def confirm_dialog(title: str, text: str, confirm: str, deny: str = "Cancel", *, danger: bool = False) -> dict[str, Any]:
    dialog = {"title": plain(title, 100), "text": mrkdwn(text, 300), "confirm": plain(confirm, 30), "deny": plain(deny, 30)}
    if danger:
        dialog["style"] = "danger"
    return dialog


def button(text: str, action_id: str, value: str, *, style: str | None = None,
           confirm: dict[str, Any] | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "button", "text": plain(text, 75), "action_id": action_id, "value": value}
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def actions(block_id: str, *elements: dict[str, Any]) -> Block:
    return {"type": "actions", "block_id": block_id, "elements": list(elements)}


def mention(user_or_group: str) -> str:
    """A Slack mention for a user id (U…/W…) or a usergroup id (S…)."""
    return f"<!subteam^{user_or_group}>" if user_or_group.startswith("S") else f"<@{user_or_group}>"


MENTION = re.compile(r"(<@[UW][A-Z0-9]+>|<!subteam\^S[A-Z0-9]+>)")


def escape(text: str, *, keep_mentions: bool = False) -> str:
    """Slack's three control characters escaped in mrkdwn text; with `keep_mentions`, user and
    usergroup mentions stay live (a stop reason may name who stopped a watch; SQL never pings)."""
    parts = MENTION.split(text) if keep_mentions else [text]
    return "".join(part if keep_mentions and MENTION.fullmatch(part) else
                   part.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for part in parts)
