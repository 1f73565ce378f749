"""Keep secrets out of everything a person or a file can read.

Text that leaves the bot (Slack messages, audit rows, reports, logs of failures) passes through a
Redactor built from the secrets the bot knows (DSN passwords, Slack tokens, the signing secret)
plus patterns for secrets it does not know (a password inside any DSN, any Slack token).
"""

from __future__ import annotations

import re
from typing import Iterable

from psycopg.conninfo import conninfo_to_dict

MASK = "•••"
_PATTERNS = (
    (re.compile(r"(\w+://[^\s:/@]*:)[^\s@]+@"), r"\1" + MASK + "@"),  # scheme://user:password@
    (re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE), r"\1" + MASK),
    (re.compile(r"xox[abposr]-[A-Za-z0-9-]+"), "xox" + MASK),
    (re.compile(r"xapp-[A-Za-z0-9-]+"), "xapp-" + MASK),
)


class Redactor:
    """Callable: `redact(text) -> text` with every known secret and secret-looking value masked."""

    def __init__(self, secrets: Iterable[str] = ()):
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        return Redactor([*self._secrets, *secrets])


def dsn_secrets(dsn: str) -> list[str]:
    """The parts of a DSN that must never be shown: its password (and the whole DSN if it has one)."""
    try:
        password = conninfo_to_dict(dsn).get("password")
    except Exception:
        return [dsn]
    return [password, dsn] if password else []
