"""The `rollback-bot` command run as a user runs it: as a child process, with a minimal config."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
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
