"""The application around the database: stop and start commands, health, smoke checks.

Commands are argv lists run without a shell (nothing in the config is ever interpreted by one).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

import aiohttp

import readable
from actions.config import Environment, SmokeCheck
from actions.engine.plan import StepFailed
from actions.engine.processes import ProcessTimeout, run_process


async def run_commands(env: Environment, which: str) -> str:
    """Run the environment's `stop` or `start` commands in order; fail on the first that fails."""
    commands = env.stop if which == "stop" else env.start
    if not commands:
        return f"no `{which}` commands configured for {env.name}: nothing to run"
    lines = []
    for argv in commands:
        try:
            result = await run_process(argv, timeout=env.command_timeout_seconds)
        except FileNotFoundError:
            raise StepFailed(f"`{argv[0]}` was not found: check `{which}` for {env.name} in the config") from None
        except ProcessTimeout as exc:
            raise StepFailed(str(exc)) from None
        if not result.ok:
            raise StepFailed(f"`{' '.join(argv)}` exited with {result.returncode}: {result.last_line()}")
        lines.append(f"`{' '.join(argv)}` ({readable.duration(result.seconds)})")
    return "ran " + ", ".join(lines)


@dataclass(frozen=True)
class HttpAnswer:
    status: int | None
    error: str | None = None

    def describe(self) -> str:
        return f"HTTP {self.status}" if self.status is not None else self.error or "no answer"


async def probe(session: aiohttp.ClientSession, url: str, *, method: str = "GET", timeout: float = 5.0,
                headers: dict[str, str] | None = None) -> HttpAnswer:
    try:
        async with session.request(method, url, headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            await response.read()
            return HttpAnswer(response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return HttpAnswer(None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


async def wait_healthy(env: Environment, *, interval: float = 0.5) -> str:
    """Poll `health_url` until it answers 200 or `health_timeout_seconds` pass."""
    if not env.health_url:
        return "no `health_url` configured: health not checked"
    started = time.monotonic()
    deadline = started + env.health_timeout_seconds
    async with aiohttp.ClientSession() as session:
        while True:
            answer = await probe(session, env.health_url)
            if answer.status == 200:
                return f"{env.health_url} answered 200 after {readable.duration(time.monotonic() - started)}"
            if time.monotonic() >= deadline:
                raise StepFailed(f"{env.health_url} did not answer 200 within {env.health_timeout_seconds:g} s "
                                 f"(last: {answer.describe()}). Check the application's logs.")
            await asyncio.sleep(interval)


async def run_smoke_checks(env: Environment) -> str:
    """The runbook's Step 9: each configured URL must answer with its expected status."""
    if not env.smoke:
        return "no `smoke` checks configured"
    failures, passed = [], []
    async with aiohttp.ClientSession() as session:
        for check in env.smoke:
            answer = await probe(session, check.url, method=check.method, timeout=check.timeout_seconds,
                                 headers=_headers(check))
            (passed if answer.status == check.status else failures).append(
                f"{check.method} {check.url} → {answer.describe()} (expected {check.status})")
    if failures:
        raise StepFailed(f"{len(failures)} of {len(env.smoke)} smoke checks failed: " + "; ".join(failures))
    return f"{len(passed)} of {len(env.smoke)} smoke checks passed"


def _headers(check: SmokeCheck) -> dict[str, str] | None:
    if not check.bearer_env:
        return None
    token = os.environ.get(check.bearer_env)
    if not token:
        raise StepFailed(f"smoke check {check.url}: environment variable {check.bearer_env} (bearer token) is not set")
    return {"Authorization": f"Bearer {token}"}
