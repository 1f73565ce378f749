"""What the mail catcher keeps of each accepted message: the parsed mail, its envelope, and how the session
that delivered it was secured."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any


@dataclass(frozen=True)
class Received:
    """One accepted message with its envelope and how the session that delivered it was secured."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    tls: bool
    login: str | None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def subject(self) -> str | None:
        subject = self.message["Subject"]
        return None if subject is None else str(subject)

    @property
    def body_text(self) -> str | None:
        """The content of the text/plain body part, or None when the message has none."""
        body = self.message.get_body(preferencelist=("plain",))
        return None if body is None else body.get_content()

    @property
    def attachments(self) -> list[tuple[str | None, str, bytes | str]]:
        """(filename, content type, content) of every attachment; text comes back as str, the rest as bytes."""
        body = self.message.get_body(preferencelist=("plain", "html"))
        found = []
        for part in self.message.walk():
            if part.is_multipart() or part is body:
                continue
            if part.is_attachment() or part.get_filename():
                found.append((part.get_filename(), part.get_content_type(), part.get_content()))
        return found

    def summary(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "from": self.mail_from,
            "to": list(self.rcpt_tos),
            "subject": self.subject,
            "message_id": _header(self.message, "Message-ID"),
            "in_reply_to": _header(self.message, "In-Reply-To"),
            "attachments": [name for name, _, _ in self.attachments],
            "tls": self.tls,
            "login": self.login,
        }


def parse_message(wire: bytes) -> EmailMessage:
    # SMTP carries CRLF line ends; the email package keeps them inside text parts, so body_text would read
    # "line\r\n". Back to "\n" first, as a mail client shows it. Binary parts are base64 on the wire, so unharmed.
    return email.message_from_bytes(wire.replace(b"\r\n", b"\n"), policy=email.policy.default)


def _header(message: EmailMessage, name: str) -> str | None:
    value = message[name]
    return None if value is None else str(value)
