"""Slack request signing (v0), as Slack signs every request it sends to an app."""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, timestamp: str | int, body: bytes | str) -> str:
    """Return the ``X-Slack-Signature`` value for ``body`` sent at ``timestamp``.

    The signature is ``"v0=" + hex(HMAC-SHA256(secret, b"v0:<ts>:<raw body>"))``; the
    body must be the exact bytes sent on the wire, which is why it is accepted raw.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else body
    base = b"v0:" + str(timestamp).encode("ascii") + b":" + raw
    digest = hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return "v0=" + digest
