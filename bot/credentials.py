"""Slack credentials and endpoints from the environment, checked before anything starts."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import SecretStr

SLACK_API_DEFAULT = "https://slack.com/api/"


class CredentialsError(Exception):
    """A required variable is missing or malformed; the message is one line saying which and what to do."""


@dataclass(frozen=True)
class SlackCredentials:
    bot_token: SecretStr
    signing_secret: SecretStr | None
    app_token: SecretStr | None
    api_url: str

    def secrets(self) -> list[str]:
        return [s.get_secret_value() for s in (self.bot_token, self.signing_secret, self.app_token) if s]


def _required(name: str, hint: str, prefix: str | None = None) -> SecretStr:
    value = os.environ.get(name, "").strip()
    if not value:
        raise CredentialsError(f"{name} is not set: {hint}")
    if prefix and not value.startswith(prefix):
        raise CredentialsError(f"{name} does not look right: expected a token starting with {prefix!r}. {hint}")
    return SecretStr(value)


def load_credentials(*, http: bool) -> SlackCredentials:
    """HTTP mode needs the bot token and signing secret; Socket Mode the bot token and an app token."""
    bot_token = _required("SLACK_BOT_TOKEN", "export the Bot User OAuth Token (xoxb-…) from your Slack app's "
                          "'OAuth & Permissions' page", "xoxb-")
    if http:
        signing = _required("SLACK_SIGNING_SECRET", "export the Signing Secret from your Slack app's 'Basic Information' page")
        app_token = None
    else:
        signing = SecretStr(os.environ["SLACK_SIGNING_SECRET"]) if os.environ.get("SLACK_SIGNING_SECRET") else None
        app_token = _required("SLACK_APP_TOKEN", "Socket Mode needs an app-level token (xapp-…) with the "
                              "connections:write scope, or run with --http", "xapp-")
    api_url = os.environ.get("SLACK_API_URL", "").strip() or SLACK_API_DEFAULT
    if not api_url.startswith(("http://", "https://")):
        raise CredentialsError(f"SLACK_API_URL must be an http(s) URL, got {api_url!r}")
    return SlackCredentials(bot_token, signing, app_token, api_url if api_url.endswith("/") else api_url + "/")
