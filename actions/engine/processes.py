"""Child processes (pg_restore, the app's stop/start commands) run without blocking the loop.

Each child gets its own process group, so cancelling a step also stops the workers that
`pg_restore -j` forks. Output is read line by line while the child runs: the last lines are kept
for messages, every line can go to a log file and to a callback (restore progress).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence


@dataclass(frozen=True)
class ProcessResult:
    argv: tuple[str, ...]
    returncode: int
    seconds: float
    output_tail: tuple[str, ...]  # last lines of stdout and stderr, interleaved as they came

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def last_line(self) -> str:
        return self.output_tail[-1] if self.output_tail else "(no output)"

    def how_it_ended(self) -> str:
        """"exit 1", or "killed by signal 9 (SIGKILL)" for a negative return code."""
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = "unknown signal"
            return f"killed by signal {-self.returncode} ({name})"
        return f"exit {self.returncode}"

    def cause(self) -> str | None:
        """The line that says why it failed: the server's first ERROR, else the first line that
        mentions an error and is not a parallel worker's echo of someone else's ("a worker process
        died unexpectedly"), else None — a progress line is never presented as the reason."""
        lines = [line for line in self.output_tail if line.strip()]
        server = [line for line in lines if "ERROR:" in line]
        if server:
            return server[0]
        return next((line for line in lines if "error" in line.lower() and "worker process died" not in line), None)


class ProcessTimeout(Exception):
    def __init__(self, argv: Sequence[str], seconds: float):
        super().__init__(f"`{argv[0]}` did not finish within {seconds:g} s and was stopped")


async def run_process(
    argv: Sequence[str],
    *,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    log_path: Path | None = None,
    keep_lines: int = 20,
) -> ProcessResult:
    """Run `argv` (no shell), streaming its output; kill its whole process group on timeout or cancel."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    tail: deque[str] = deque(maxlen=keep_lines)
    log = log_path.open("a", encoding="utf-8") if log_path else None

    async def pump(stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            tail.append(line)
            if log:
                log.write(line + "\n")
            if on_line:
                on_line(line)

    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(pump(proc.stdout), pump(proc.stderr))
            returncode = await proc.wait()
    except TimeoutError:
        await _kill(proc)
        raise ProcessTimeout(argv, timeout or 0) from None
    except BaseException:
        await _kill(proc)
        raise
    finally:
        if log:
            log.close()
    return ProcessResult(tuple(argv), returncode, time.monotonic() - started, tuple(tail))


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    await proc.wait()


async def capture_process(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
                          ) -> tuple[int, str, str]:
    """Run a short command and return (returncode, stdout, stderr) in full."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await proc.communicate()
    except TimeoutError:
        await _kill(proc)
        raise ProcessTimeout(argv, timeout) from None
    except BaseException:
        await _kill(proc)
        raise
    return proc.returncode, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
