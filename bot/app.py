"""Building the Bolt app and everything it needs; nothing here runs at import time."""

from __future__ import annotations

from dataclasses import dataclass

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
from actions.store.sqlite import AsyncStore, Store
from actions.verbs import PLANS
from bot import approvals, commands, lifecycle, recovery
from bot.access import Access
from bot.credentials import SlackCredentials
from bot.notifier import Notifier
from bot.poster import Poster
from bot.redaction import RedactingWebClient, redact_responses
from bot.schedule import Schedule
from bot.watching import Watches


@dataclass
class Deps:
    """What the listeners use. One instance per app."""

    settings: Settings
    store: AsyncStore
    service: RollbackService
    access: Access
    notifier: Notifier
    schedule: Schedule
    redact: Redactor
    watches: Watches  # `/rollback watch`: at most one per environment


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
    store = AsyncStore(Store(settings.bot.audit_db))
    titles = {name: spec.title for name, spec in PLANS.items()}
    access = Access(settings, client)
    poster = Poster(client, store, redact)
    # The service emits into the notifier, and the notifier reads snapshots from the service:
    # the lambda lets the notifier be built second.
    service = RollbackService(settings, store, lambda event: notifier.emit(event), redact)
    notifier = Notifier(poster, settings, store, access, titles, service.snapshot)
    schedule = Schedule(settings, service, poster, notifier)
    notifier.schedule = schedule
    deps = Deps(settings, store, service, access, notifier, schedule, redact, Watches(settings, store, poster, redact))
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
