"""The `rollback-bot` command run as a user runs it: as a child process, with a minimal config."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

BIN = str(Path(sys.executable).with_name("rollback-bot"))
MINIMAL = """\
[bot]
incident_channel = "C0INCIDENTS"
operators = ["U0OPS1"]
approvers = ["U0DBA1"]

[environments.staging]
dsn = "postgresql://app:s3cret-pw@127.0.0.1:5432/crm_staging"
backup_dir = "_backups/staging"
"""


async def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        BIN, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None})
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


def config(tmp_path: Path, text: str = MINIMAL) -> Path:
    path = tmp_path / "bot.toml"
    path.write_text(text)
    return path


def no_slack_env() -> dict:
    return {"SLACK_BOT_TOKEN": None, "SLACK_SIGNING_SECRET": None, "SLACK_APP_TOKEN": None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


class BotProcess:
    """`rollback-bot serve` as a child process, as a process manager runs it; its log goes to a file."""

    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path):
        self.proc, self.log_path = proc, log_path

    @classmethod
    async def start(cls, *args: str, env: dict[str, str | None], log_path: Path) -> BotProcess:
        log = open(log_path, "ab")  # the child keeps its own copy of the descriptor
        try:
            proc = await asyncio.create_subprocess_exec(
                BIN, "serve", *args, stdout=log, stderr=log,
                env={k: v for k, v in {**os.environ, **env}.items() if v is not None})
        finally:
            log.close()
        return cls(proc, log_path)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, float]:
        """Send `sig`; the exit status and how many seconds the process took to exit."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"the bot did not exit within {timeout} s of signal {sig}:\n{self.log()[-3000:]}")
        return code, time.monotonic() - started

    async def exited(self, timeout: float) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
