"""Building the Bolt app and everything it needs; nothing here runs at import time."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from actions.config import Settings
from actions.redact import Redactor, dsn_secrets
from actions.service import RollbackService
from bot import approvals, commands, lifecycle, recovery
from bot.access import Access
from bot.credentials import SlackCredentials
from bot.deps import Deps
from bot.notifier import Notifier
from bot.poster import Poster
from bot.redaction import RedactingWebClient, redact_responses
from bot.schedule import Schedule
from bot.watching import WatchPoster


def web_client(credentials: SlackCredentials, redact: Redactor) -> AsyncWebClient:
    """A Web API client for `SLACK_API_URL` that retries connection errors, 429 (after Retry-After) and 5xx,
    and masks secrets in every request body it sends."""
    return RedactingWebClient(
        redact=redact,
        token=credentials.bot_token.get_secret_value(),
        base_url=credentials.api_url,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            AsyncServerErrorRetryHandler(max_retry_count=3),
        ],
    )


def redactor_for(settings: Settings, credentials: SlackCredentials) -> Redactor:
    secrets = list(credentials.secrets())
    for env in settings.environments.values():
        secrets += dsn_secrets(env.resolved_dsn.get_secret_value())
    return Redactor(secrets)


def create_app(settings: Settings, credentials: SlackCredentials, *, socket_mode: bool = False) -> tuple[AsyncApp, Deps]:
    """The Bolt app with every listener registered, and its dependencies (start the notifier yourself)."""
    redact = redactor_for(settings, credentials)
    client = web_client(credentials, redact)
    access = Access(settings, client)
    # The service emits into the notifier and the watch poster, which read through the service:
    # the lambdas let those be built second.
    service = RollbackService(settings, lambda event: notifier.emit(event), redact,
                              lambda event: watch_posts.emit(event))
    poster = Poster(client, service, redact)
    notifier = Notifier(poster, settings, service, access)
    watch_posts = WatchPoster(service, poster, redact)
    schedule = Schedule(settings, service, poster, notifier)
    notifier.schedule = schedule
    deps = Deps(settings, service, access, notifier, schedule, redact, watch_posts)
    app = AsyncApp(
        client=client,
        signing_secret=credentials.signing_secret.get_secret_value() if credentials.signing_secret else None,
        request_verification_enabled=not socket_mode,
    )
    redact_responses(app, redact)
    commands.register(app, deps)
    approvals.register(app, deps)
    lifecycle.register(app, deps)
    recovery.register(app, deps)
    return app, deps
