"""The bot's figures for Prometheus, beside the engine's (`actions/engine/metrics.py`): every Web
API call by method and result (429s and 5xx included, each attempt counted), and the outbox's
depth and the age of its oldest queued message.

Calls are counted by a retry handler placed first in each client's `retry_handlers`: slack-sdk
asks it about every HTTP answer and every connection error, before any retry, so a 429 that the
SDK waits out and tries again is counted too. It never asks for a retry itself.
"""

from __future__ import annotations

from typing import Callable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

CONTENT_TYPE = CONTENT_TYPE_LATEST


class SlackMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.calls = Counter(
            "rollback_slack_calls", "Slack Web API calls (each attempt), by method and result: ok, the error "
            "Slack named, ratelimited (429), http_5xx, or connection_error.", ["method", "result"], registry=registry)

    def queue(self, depth: Callable[[], float], oldest_seconds: Callable[[], float]) -> None:
        """Report the outbox's figures, read when Prometheus scrapes."""
        Gauge("rollback_slack_queue_depth", "Messages queued for Slack, not yet sent.",
              registry=self.registry).set_function(depth)
        Gauge("rollback_slack_queue_oldest_seconds", "Age of the oldest message queued for Slack (0 when none).",
              registry=self.registry).set_function(oldest_seconds)

    def counter(self) -> CallCounter:
        return CallCounter(self)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def method_of(url: str) -> str:
    """`chat.postMessage` from `https://slack.com/api/chat.postMessage` (the upload URL: `file.upload`)."""
    tail = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return tail if "." in tail else "file.upload"


def result_of(response: Optional[HttpResponse], error: Optional[Exception]) -> str:
    if response is None:
        return "connection_error" if error is not None else "unknown"
    if response.status_code == 429:
        return "ratelimited"
    if response.status_code >= 500:
        return "http_5xx"
    body = response.body if isinstance(response.body, dict) else {}
    if body.get("ok") is False:
        return str(body.get("error") or "error")[:60]
    return "ok"


class CallCounter(AsyncRetryHandler):
    def __init__(self, metrics: SlackMetrics):
        super().__init__(max_retry_count=0)
        self.metrics = metrics

    async def can_retry_async(self, *, state: RetryState, request: HttpRequest,
                              response: Optional[HttpResponse] = None, error: Optional[Exception] = None) -> bool:
        self.metrics.calls.labels(method_of(request.url), result_of(response, error)).inc()
        return False  # counting only: the handlers after this one decide about retries
