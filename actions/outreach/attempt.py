"""How one attempt to page or to mail went, in words a person can act on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Attempt:
    taken: bool  # the pager or the mail server accepted it
    retry: bool = False  # not taken, but worth trying again later (429, 5xx, 4xx SMTP, unreachable)
    reason: str = ""  # why not taken: "HTTP 503", "connection refused", "invalid event: …"
    detail: dict[str, Any] = field(default_factory=dict)  # what the receiver answered (dedup_key, refused recipients)


def refused(reason: str) -> Attempt:
    return Attempt(False, False, reason)


def try_again(reason: str) -> Attempt:
    return Attempt(False, True, reason)
