"""`/healthz`, `/readyz` and `/metrics`: what a process manager and Prometheus ask the bot.

- `/healthz`: the process is alive and its event loop answers (restart it if not).
- `/readyz`: 200 only when the bot can do its job: the state database takes a write, Slack
  answered `auth.test`, and in Socket Mode the socket is connected. Otherwise 503, with a JSON
  body naming each check and what is wrong, so the page that wakes someone says why.
- `/metrics`: Prometheus text (prometheus-client) of the service's and the bot's figures, every
  name starting `rollback_`.

In HTTP mode they share the port of `/slack/events`; in Socket Mode they are on `--health-port`.
"""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol

from aiohttp import web

from bot.metrics import CONTENT_TYPE

OK = "ok"


class Runtime(Protocol):
    """What the routes read of `bot.server.BotRuntime` (which serves them)."""

    service: Any
    deps: Any
    socket_mode: bool
    slack_checked: str | None
    stopping: bool

    async def socket_connected(self) -> bool: ...


def package_version() -> str:
    try:
        return version("rollback-bot")
    except PackageNotFoundError:  # running from a checkout that was not installed
        return "unknown"


def add_health_routes(web_app: web.Application, runtime: Runtime) -> None:
    started = time.monotonic()

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "version": package_version(),
                                  "uptime_seconds": round(time.monotonic() - started, 1)})

    async def readyz(_: web.Request) -> web.Response:
        checks = await readiness(runtime)
        ready = all(result == OK for result in checks.values())
        return web.json_response({"status": "ready" if ready else "not ready", "checks": checks},
                                 status=200 if ready else 503)

    async def metrics(_: web.Request) -> web.Response:
        await runtime.service.refresh_metrics()
        body = runtime.deps.slack_metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_get("/readyz", readyz)
    web_app.router.add_get("/metrics", metrics)


async def readiness(runtime: Runtime) -> dict[str, str]:
    """Each check's result: "ok", or what is wrong in words."""
    checks = {
        "store": await runtime.service.store_writable() or OK,
        "slack": runtime.slack_checked or OK,
    }
    if runtime.socket_mode:
        checks["socket"] = OK if await runtime.socket_connected() else "not connected to Slack's Socket Mode edge"
    if runtime.stopping:
        checks["process"] = "shutting down"
    return checks
