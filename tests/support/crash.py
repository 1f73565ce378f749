"""A real `rollback-bot serve --http` as a child process, killed with SIGKILL: by the test (`Bot.kill`) or by
itself at a step boundary (`crash_at`, through `support/crashing_bot.py`). Shared by the crash tests and
the crash sweep."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from actions.store.records import StepState
from actions.store.sqlite import Store
from demo.fingerprint import diff, fingerprint
from fake_slack import FakeSlack
from support.cli import BIN, free_port, listening
from support.harness import BOT_TOKEN, SIGNING_SECRET

WAIT = 120.0
CRASHING_BOT = Path(__file__).with_name("crashing_bot.py")


class Bot:
    """`rollback-bot serve --http` on a fixed port, so a restart keeps the URL; with `crash_at`, the test
    build that kills itself at that boundary ("<plan>:<step>:<started|middle|acted>")."""

    def __init__(self, config: Path, slack: FakeSlack):
        self.config, self.slack, self.port = config, slack, free_port()
        self.crash_report = config.with_name("crashed-at.txt")  # where the test build says it died
        self.process: asyncio.subprocess.Process | None = None
        slack.bot_url = f"http://127.0.0.1:{self.port}/slack/events"

    async def start(self, crash_at: str | None = None) -> None:
        argv = [sys.executable, str(CRASHING_BOT)] if crash_at else [BIN]
        env = {**os.environ, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
               "SLACK_API_URL": self.slack.api_url}
        env.pop("CRASH_AT", None)
        if crash_at:
            env["CRASH_AT"], env["CRASH_REPORT"] = crash_at, str(self.crash_report)
        self.process = await asyncio.create_subprocess_exec(
            *argv, "serve", "--config", str(self.config), "--http", "--port", str(self.port),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env)
        for _ in range(400):
            if await listening(self.port):
                return
            if self.process.returncode is not None:
                raise RuntimeError(f"the bot exited with {self.process.returncode} before listening")
            await asyncio.sleep(0.05)
        raise TimeoutError("the bot did not start listening")

    @property
    def dead(self) -> bool:
        return self.process is not None and self.process.returncode is not None

    async def kill(self) -> None:
        """SIGKILL: no clean-up, no last message, exactly as a crash."""
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 60)


def audit_rows(path: Path) -> list[tuple]:
    """Every audit row, whole, as the file holds them now."""
    store = Store(path)
    try:
        return [(e.seq, str(e.at), e.actor, e.action, e.outcome, e.run_id, json.dumps(e.detail, sort_keys=True, default=str))
                for e in store.audit_events()]
    finally:
        store.close()


def chain_problem(path: Path) -> str | None:
    store = Store(path)
    try:
        return store.verify_audit().problem
    finally:
        store.close()


async def step_state(path: Path, key: str) -> StepState | None:
    store = Store(path)
    try:
        runs = store.runs()
        steps = {s.key: s.state for s in store.steps(runs[-1].id)} if runs else {}
    finally:
        store.close()
    return steps.get(key)


async def until_step(path: Path, key: str, state: StepState = StepState.RUNNING) -> None:
    for _ in range(int(WAIT * 50)):
        if await step_state(path, key) is state:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"step {key} never became {state}")


async def live_is(crm, states: dict[str, object], ignore: tuple[str, ...] = ()) -> str:
    """Which of the named whole-database states (fingerprints) live holds now; fails if none. Differences
    naming one of `ignore` (the bot's own scratch schemas, before the clean-up) are left out."""
    now = await fingerprint(crm.dsn)

    def differences(expected) -> list[str]:
        return [line for line in diff(expected, now) if not any(i in line for i in ignore)]
    for name, expected in states.items():
        if differences(expected) == []:
            return name
    closest = min(states, key=lambda name: len(differences(states[name])))
    raise AssertionError(f"live is none of {', '.join(states)}; against {closest}: {differences(states[closest])[:8]}")
