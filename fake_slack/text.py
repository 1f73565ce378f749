"""What a human sees of a Block Kit message, as plain strings (for assertions)."""

from __future__ import annotations

from typing import Any


def blocks_text(blocks: Any) -> list[str]:
    """Return every human-visible string inside Block Kit ``blocks``, in document order.

    Walks the whole tree and keeps each text object (``plain_text``/``mrkdwn``) and each
    rich-text ``text`` element: that covers section text and fields, headers, context
    elements, button labels and confirm dialogs, without knowing every block type.
    Button ``value``s are not text objects, so they are (rightly) not included.
    """
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("plain_text", "mrkdwn", "text") and isinstance(node.get("text"), str):
                out.append(node["text"])
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(blocks or [])
    return out
