"""The engine's figures for Prometheus: runs by plan and outcome, step durations, approvals
waiting, restore throughput. Names start `rollback_` (docs/OPERATIONS.md lists them all).

Each service has its own registry, served by the bot at `/metrics`; prometheus-client's global
registry is not used, so two services in one process (the tests, the bench) never mix figures.
What only the store knows (approvals waiting) and what is under way (a restore's rate) is read
when Prometheus scrapes (`refresh`), so the figures are true after a restart too.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Steps last from milliseconds (declare) to hours (restoring a large backup).
STEP_BUCKETS = (0.05, 0.25, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)


@dataclass(frozen=True)
class RestoreRate:
    """A restore's rate, under way or just finished."""

    environment: str
    items_per_second: float
    bytes_per_second: float  # the backup's size over the restore's time so far, pro rata to items done
    fraction: float


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.runs = Counter(
            "rollback_runs", "Runs that ended, by plan, environment and outcome "
            "(succeeded, failed, denied, interrupted).", ["plan", "environment", "outcome"], registry=self.registry)
        self.runs_active = Gauge("rollback_runs_active", "Runs under way in this process.", registry=self.registry)
        self.steps = Histogram(
            "rollback_step_duration_seconds", "How long each step ran, by plan, step and how it ended.",
            ["plan", "step", "state"], buckets=STEP_BUCKETS, registry=self.registry)
        self.approvals_waiting = Gauge(
            "rollback_approvals_waiting", "Approval requests waiting for a decision.", registry=self.registry)
        self.restore_items = Gauge(
            "rollback_restore_items_per_second", "Backup items restored per second: the restore under way, "
            "else the environment's last one.", ["environment"], registry=self.registry)
        self.restore_bytes = Gauge(
            "rollback_restore_bytes_per_second", "Bytes of backup restored per second (the backup's size, pro rata "
            "to items done): the restore under way, else the environment's last one.", ["environment"],
            registry=self.registry)
        self.restore_progress = Gauge(
            "rollback_restore_progress_ratio", "Share of the backup's items restored (1 once it finished).",
            ["environment"], registry=self.registry)

    def run_ended(self, plan: str, environment: str, outcome: str) -> None:
        self.runs.labels(plan, environment, outcome).inc()

    def step_ended(self, plan: str, step: str, state: str, seconds: float | None) -> None:
        if seconds is not None:
            self.steps.labels(plan, step, state).observe(max(0.0, seconds))

    def restore_rate(self, rate: RestoreRate) -> None:
        self.restore_items.labels(rate.environment).set(rate.items_per_second)
        self.restore_bytes.labels(rate.environment).set(rate.bytes_per_second)
        self.restore_progress.labels(rate.environment).set(rate.fraction)
