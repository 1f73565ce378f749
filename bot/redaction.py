"""Secrets are masked where the bot's words leave for Slack, whoever wrote them.

Builders and steps mask the texts they know may quote a DSN or an error, but a check at the
boundary does not depend on every caller remembering: every Web API call's body (messages,
blocks, updates, views, file contents) and every `respond()` to a response_url passes through
the redactor. What the SDK itself sends to authenticate is never touched: the bot token travels
in a header, and the app-level token that Socket Mode's `apps.connections.open` sends as a
`token` parameter must reach Slack as it is (masked, Slack answers `invalid_auth`).
"""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from actions.redact import Redactor

# Credentials the SDK sends in a request body or query: what the bot writes is redacted, these are not.
CREDENTIALS = frozenset({"token", "client_id", "client_secret", "refresh_token", "code"})


def redact_payload(redact: Redactor, value: Any) -> Any:
    """`value` with every string in it (keys and credentials excepted) passed through `redact`."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: item if key in CREDENTIALS else redact_payload(redact, item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_payload(redact, item) for item in value]
    return value


class RedactingWebClient(AsyncWebClient):
    """An AsyncWebClient whose request bodies are redacted before they are sent."""

    def __init__(self, *args: Any, redact: Redactor, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.redact = redact

    async def api_call(self, api_method: str, *, json: dict | None = None, data: Any = None,
                       params: dict | None = None, **kwargs: Any):
        return await super().api_call(
            api_method, json=redact_payload(self.redact, json) if json else json,
            data=redact_payload(self.redact, data) if isinstance(data, dict) else data,
            params=redact_payload(self.redact, params) if params else params, **kwargs)


def redact_responses(app: AsyncApp, redact: Redactor) -> None:
    """Wrap each request's `respond()` so what goes to its response_url is redacted too."""

    @app.middleware
    async def redacting_respond(context, next):
        if context.response_url:
            original = context.respond

            async def respond(text: str | dict = "", **kwargs: Any):
                return await original(redact_payload(redact, text), **redact_payload(redact, kwargs))

            context["respond"] = respond
        return await next()
