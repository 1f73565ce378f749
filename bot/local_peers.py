"""The local workspace's pager and mail server: stand-ins on 127.0.0.1, so nothing leaves the machine.

`rollback-bot local` and `rollback-bot demo` run the bot with its `[paging]` and `[email]` pointed at a
`FakePagerDuty` (PagerDuty's Events API v2, as strict as the real one) and a plain `MailCatcher` (an SMTP
server that keeps what it receives). The config's own levels, recipients, sender, tries and retries are kept;
the addresses, TLS and logins are the stand-ins'. The integration key is made up for the run and put in the
process environment under the name the config uses, where the bot reads it; the one from the config's
environment, if any, is set aside and put back when the peers stop.

`pager_mail_panel` is what the workspace page's "Pager & mail" panel shows: what was paged and mailed,
newest first, in the layout `fake_slack.ui_state.panel_json` describes.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from actions.config import EmailConfig, PagingConfig, Settings
from fake_pagerduty import FakePagerDuty
from fake_smtp import MailCatcher

HOST = "127.0.0.1"
PANEL_NAME = "pager-mail"
PANEL_TITLE = "Pager & mail"
SHOWN = 50  # newest pages and mails the panel lists, each

# Without `[paging]` / `[email]` in the config: the runbook's levels and a made-up team address.
DEFAULT_RECIPIENTS = ["dba-team@example.com"]
DEFAULT_SENDER = "rollback-bot@localhost"

_ACTION_TONE = {"trigger": "bad", "acknowledge": "warn", "resolve": "good"}
_SEVERITY_TONE = {"critical": "bad", "error": "bad", "warning": "warn", "info": "info"}
_STATUS_TONE = {"triggered": "bad", "acknowledged": "warn", "resolved": "good"}


def routing_key() -> str:
    """A made-up Events API v2 integration key: 32 letters and digits, as PagerDuty's are."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(32))


@dataclass
class LocalPeers:
    """The started pager and mail server, and the settings that point the bot at them."""

    pager: FakePagerDuty
    mail: MailCatcher
    key_env: str  # the environment variable holding the made-up routing key
    _saved_key: str | None = field(default=None, repr=False)  # what key_env held before, if anything
    _stopped: bool = field(default=False, repr=False)

    def settings_for(self, settings: Settings) -> Settings:
        """`settings` with `[paging]` and `[email]` pointed here: no TLS, no login, nothing leaves the machine."""
        paging = (settings.paging or PagingConfig()).model_copy(update={"pagerduty_url": self.pager.url})
        email = settings.email or EmailConfig(smtp_host=HOST, sender=DEFAULT_SENDER, recipients=list(DEFAULT_RECIPIENTS),
                                              email_at_level=2)
        email = email.model_copy(update={"smtp_host": self.mail.host, "smtp_port": self.mail.port, "starttls": False,
                                         "ssl": False, "ca_file": None, "username_env": None, "password_env": None})
        return settings.model_copy(update={"paging": paging, "email": email})

    def describe(self) -> str:
        """One line for the terminal (the key is never in it)."""
        return (f"Pager and mail stay local: pages go to a stand-in PagerDuty at {self.pager.url}, mail to a "
                f"mail catcher at {self.mail.host}:{self.mail.port}; nothing leaves this machine.")

    async def stop(self) -> None:
        """Stop both (what they received is kept in memory) and put the environment back. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            await self.pager.close()
        finally:
            await asyncio.to_thread(self.mail.stop)  # joins aiosmtpd's thread
            if self._saved_key is None:
                os.environ.pop(self.key_env, None)
            else:
                os.environ[self.key_env] = self._saved_key


async def start_peers(settings: Settings, on_change: Callable[[], None] | None = None) -> LocalPeers:
    """Start the stand-in PagerDuty and a plain mail catcher on 127.0.0.1, and set the made-up routing key.

    `on_change` is called whenever either received something; from the mail server's thread too, so it must be
    thread-safe (`FakeSlack.notify_change` is).
    """
    key_env = (settings.paging or PagingConfig()).pagerduty_routing_key_env
    key = routing_key()
    pager = FakePagerDuty(routing_keys={key}, on_change=on_change)  # like PagerDuty: no other key exists
    await pager.start(HOST)
    mail = MailCatcher(mode="plain", on_change=on_change)
    try:
        await asyncio.to_thread(mail.start)
    except BaseException:
        await pager.close()
        raise
    peers = LocalPeers(pager, mail, key_env, _saved_key=os.environ.get(key_env))
    os.environ[key_env] = key  # where PagingConfig.routing_key reads it
    return peers


def pager_mail_panel(pager: FakePagerDuty, mail: MailCatcher, *, page_at_level: int | None = None,
                     email_at_level: int | None = None) -> dict[str, Any]:
    """The "Pager & mail" panel's data: pages and mails, newest first, with a note on where they went.
    The levels, when given, say in the empty lists when something will come."""
    state = pager.state()
    incidents = {index: incident for incident in state["incidents"] for index in incident["events"]}
    pages = [_page(event, incidents.get(event["index"])) for event in reversed(state["events"][-SHOWN:])]
    caught = mail.state()
    mails = [_mail(number, message) for number, message in reversed(list(enumerate(caught["messages"]))[-SHOWN:])]
    note = (f"Stand-ins on this machine: PagerDuty at {pager.base_url}, a mail catcher at "
            f"{caught['host']}:{caught['port']}. Nothing is sent anywhere else.")
    if state["down"] or not caught["up"]:
        note += " " + " ".join(f"The {what} is down." for what, down in
                               (("pager", state["down"]), ("mail catcher", not caught["up"])) if down)
    paged_when = f" An incident at level {page_at_level} or more is paged." if page_at_level else ""
    mailed_when = f" An incident at level {email_at_level} or more is mailed." if email_at_level else ""
    return {"note": note, "sections": [
        {"title": "Paged", "empty": "Nothing paged yet." + paged_when, "items": pages},
        {"title": "Mailed", "empty": "Nothing mailed yet." + mailed_when, "items": mails},
    ]}


def _page(event: dict, incident: dict | None) -> dict[str, Any]:
    body = event["body"]
    payload = body.get("payload") if isinstance(body.get("payload"), dict) else {}
    action = event["event_action"]
    severity = payload.get("severity")
    summary = payload.get("summary") or (incident or {}).get("summary") or f"{action} {event['dedup_key']}"
    badges = [{"text": action, "tone": _ACTION_TONE.get(action)}]
    if severity:
        badges.append({"text": str(severity), "tone": _SEVERITY_TONE.get(severity)})
    if incident is None:
        status = "no open incident: dropped, as PagerDuty drops it"
    else:
        status = f"#{incident['number']} {incident['status']}"
        badges.append({"text": incident["status"], "tone": _STATUS_TONE.get(incident["status"])})
    fields = [["Action", action]]
    if severity:
        fields.append(["Severity", str(severity)])
    fields += [["dedup_key", event["dedup_key"]], ["PagerDuty incident", status]]
    return {"key": f"page-{event['index']}", "time": event["time"], "title": str(summary), "badges": badges,
            "fields": fields}


def _mail(number: int, message: dict) -> dict[str, Any]:
    reply = message.get("in_reply_to")
    badges = [{"text": "reply", "tone": "info"}] if reply else []
    attachments = [name or "(unnamed)" for name in message.get("attachments") or []]
    if attachments:
        badges.append({"text": f"{len(attachments)} attachment{'s' if len(attachments) > 1 else ''}", "tone": None})
    fields = [["To", ", ".join(message["to"])], ["From", message["from"]],
              ["Attachments", ", ".join(attachments) or "none"]]
    if reply:
        fields.append(["In-Reply-To", reply])
    return {"key": f"mail-{number}", "time": datetime.fromisoformat(message["at"]).timestamp(),
            "title": message["subject"] or "(no subject)", "badges": badges, "fields": fields}
