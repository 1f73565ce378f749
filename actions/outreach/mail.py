"""The incident's mail over SMTP (aiosmtplib): STARTTLS, implicit TLS, or a plain local relay.

A mail is stored as plain fields (`compose` turns them into the message) so that a restarted bot
sends exactly what was due, with the same Message-ID, and mail clients thread one incident's mail
together (`In-Reply-To`, `References`). The login is added when sending and is never stored.
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.policy import default

import aiosmtplib

from actions.config import EmailConfig
from actions.outreach.attempt import Attempt, refused, try_again

# Headers stay on one line up to RFC 5322's 998 characters: Python folds a long Subject right after
# "Subject:", which its own parser (and some clients) then read back with a leading space. The message
# is flattened here with this policy, because aiosmtplib would flatten it with email.policy.SMTP's 78.
WIRE = default.clone(max_line_length=998, linesep="\r\n")


def compose(fields: dict, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"rollback-bot <{sender}>"
    message["To"] = ", ".join(fields["to"])
    message["Subject"] = fields["subject"]
    message["Date"] = fields["date"]
    message["Message-ID"] = fields["message_id"]
    if fields.get("in_reply_to"):
        message["In-Reply-To"] = fields["in_reply_to"]
        message["References"] = " ".join(fields["references"])
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the bot
    message.set_content(fields["body"])
    for attachment in fields.get("attachments", []):  # text files (the incident report, Markdown)
        subtype = attachment.get("content_type", "text/markdown").split("/", 1)[1]
        message.add_attachment(attachment["content"], subtype=subtype, filename=attachment["filename"])
    return message


def tls_context(config: EmailConfig) -> ssl.SSLContext:
    """The system's trusted CAs, plus `ca_file` (a company's own CA) when given."""
    context = ssl.create_default_context()
    if config.ca_file is not None:
        context.load_verify_locations(cafile=str(config.ca_file))
    return context


async def send_mail(message: EmailMessage, config: EmailConfig) -> Attempt:
    password = config.password
    recipients = [address.strip() for address in message["To"].split(",")]
    try:
        errors, _ = await aiosmtplib.send(
            message.as_bytes(policy=WIRE), sender=config.sender, recipients=recipients, hostname=config.smtp_host, port=config.port, use_tls=config.ssl, start_tls=config.starttls,
            tls_context=tls_context(config) if (config.ssl or config.starttls) else None,
            username=config.username, password=password.get_secret_value() if password else None,
            timeout=config.timeout_seconds)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        reason = "every recipient refused: " + ", ".join(f"{r.recipient} ({r.code})" for r in exc.recipients)
        return try_again(reason) if all(400 <= c < 500 for c in codes) else refused(reason)
    except aiosmtplib.SMTPAuthenticationError as exc:
        return refused(f"the server refused the login ({exc.code}): check {config.username_env} and {config.password_env}")
    except aiosmtplib.SMTPNotSupported as exc:
        return refused(f"the server does not support what [email] asks ({exc.message}): check starttls / ssl")
    except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as exc:
        return try_again(_connection(exc, config))
    except aiosmtplib.SMTPResponseException as exc:
        said = f"the server answered {exc.code} {exc.message}".strip()
        return try_again(said) if 400 <= exc.code < 500 else refused(said)
    except ssl.SSLCertVerificationError as exc:
        return refused(f"the server's TLS certificate is not trusted ({exc.verify_message}): set [email] ca_file")
    except (OSError, aiosmtplib.SMTPException) as exc:
        return try_again(_connection(exc, config))
    if errors:
        return Attempt(True, detail={"refused": {address: code for address, (code, _) in errors.items()}})
    return Attempt(True)


def _connection(exc: BaseException, config: EmailConfig) -> str:
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return f"{config.smtp_host}:{config.port} did not answer within {config.timeout_seconds:g} s"
    if isinstance(exc, (ConnectionRefusedError, aiosmtplib.SMTPConnectError)):
        return f"cannot connect to {config.smtp_host}:{config.port}"
    return f"{config.smtp_host}:{config.port}: {type(exc).__name__}"
