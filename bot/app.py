"""Building the Bolt app and everything it needs; nothing here runs at import time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
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
from bot.metrics import SlackMetrics
from bot.notifier import Notifier
from bot.outbox import Outbox
from bot.outreach import Outreach
from bot.poster import Poster
from bot.redaction import RedactingWebClient, redact_responses
from bot.schedule import Schedule
from bot.watching import WatchPoster

POST_TIMEOUT_SECONDS = 10  # a post that takes longer is checked for (it may have landed) and tried again


def web_client(credentials: SlackCredentials, redact: Redactor, metrics: SlackMetrics) -> AsyncWebClient:
    """The Web API client for `SLACK_API_URL` that Bolt and the listeners use: it retries connection
    errors, 429 (after Retry-After) and 5xx, counts every call and masks secrets in what it sends."""
    return RedactingWebClient(
        redact=redact,
        token=credentials.bot_token.get_secret_value(),
        base_url=credentials.api_url,
        retry_handlers=[
            metrics.counter(),
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            AsyncServerErrorRetryHandler(max_retry_count=3),
        ],
    )


def posting_client(credentials: SlackCredentials, redact: Redactor, metrics: SlackMetrics) -> AsyncWebClient:
    """The client the outbox posts with. It does not retry by itself: a retried post could land
    twice, and a 429 must pause only its channel's lane, so the poster does both (`bot/poster.py`)."""
    return RedactingWebClient(redact=redact, token=credentials.bot_token.get_secret_value(),
                              base_url=credentials.api_url, timeout=POST_TIMEOUT_SECONDS,
                              retry_handlers=[metrics.counter()])


def redactor_for(settings: Settings, credentials: SlackCredentials) -> Redactor:
    secrets = list(credentials.secrets())
    for env in settings.environments.values():
        secrets += dsn_secrets(env.resolved_dsn.get_secret_value())
    if settings.paging is not None:
        secrets.append(settings.paging.routing_key.get_secret_value())
    if settings.email is not None and settings.email.password is not None:
        secrets.append(settings.email.password.get_secret_value())
    return Redactor(secrets)


def create_app(settings: Settings, credentials: SlackCredentials, *, socket_mode: bool = False) -> tuple[AsyncApp, Deps]:
    """The Bolt app with every listener registered, and its dependencies (start the notifier yourself)."""
    redact = redactor_for(settings, credentials)
    registry = CollectorRegistry()  # the app's own: /metrics serves it (tests run several apps in one process)
    metrics = SlackMetrics(registry)
    client = web_client(credentials, redact, metrics)
    access = Access(settings, client)
    # The service emits into the notifier, outreach and the watch poster, which read through the
    # service: the lambdas let those be built second.
    def emit(event) -> None:
        notifier.emit(event)
        outreach.emit(event)

    service = RollbackService(settings, emit, redact, lambda event: watch_posts.emit(event), registry)
    outbox = Outbox(redact, rate=settings.bot.slack_posts_per_second, burst=settings.bot.slack_post_burst)
    metrics.queue(outbox.depth, outbox.oldest_seconds)
    poster = Poster(posting_client(credentials, redact, metrics), service, redact, outbox, api=client)
    notifier = Notifier(poster, settings, service, access)
    outreach = Outreach(settings, service, poster, access)
    watch_posts = WatchPoster(service, poster, redact)
    schedule = Schedule(settings, service, poster, emit)
    notifier.schedule = schedule
    deps = Deps(settings, service, access, notifier, schedule, redact, watch_posts, metrics, outreach)
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
