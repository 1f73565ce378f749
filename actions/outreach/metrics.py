"""Paging and mail for Prometheus: a pager or a mail server that keeps refusing shows here before
anybody reads the thread. Same registry as the engine's figures (`actions/engine/metrics.py`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class OutreachMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.deliveries = Counter(
            "rollback_deliveries", "Pages and mails that ended, by transport (pagerduty, email), kind and outcome "
            "(sent, failed).", ["transport", "kind", "outcome"], registry=registry)
        self.attempts = Counter(
            "rollback_delivery_attempts", "Attempts to page or mail, by transport and result (taken, retry, "
            "refused).", ["transport", "result"], registry=registry)
        self.pending = Gauge(
            "rollback_deliveries_pending", "Pages and mails queued or being tried again.", ["transport"],
            registry=registry)
