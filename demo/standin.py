"""A tiny stand-in for the CRM application, which the demo's config stops and starts.

    python -m demo.standin start --state DIR   # start it in the background (returns when it listens)
    python -m demo.standin stop  --state DIR   # stop it
    python -m demo.standin serve --state DIR   # run it in the foreground

`/api/health` answers 200 when the database answers. `/api/sales` reads the denormalized column
`customer_name` like the real application did before Phase 4, so it fails while the migration is
in place and works again after the rollback: the demo's smoke check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from aiohttp import ClientSession, ClientTimeout, web

SETTINGS = "standin.json"  # {"port": …, "dsn": …}, written by the demo set-up
PIDFILE = "standin.pid"


def settings(state: Path) -> dict:
    return json.loads((state / SETTINGS).read_text())


async def _query(dsn: str, sql: str) -> web.Response:
    try:
        async with await psycopg.AsyncConnection.connect(dsn, connect_timeout=3) as conn:
            rows = await (await conn.execute(sql)).fetchall()
        return web.json_response({"status": "ok", "rows": [list(map(str, row)) for row in rows]})
    except psycopg.Error as exc:
        return web.json_response({"status": "error", "error": str(exc).splitlines()[0]}, status=500 if
                                 isinstance(exc, psycopg.errors.UndefinedColumn) else 503)


def make_app(dsn: str) -> web.Application:
    async def health(_: web.Request) -> web.Response:
        return await _query(dsn, "SELECT 1")

    async def sales(_: web.Request) -> web.Response:
        return await _query(dsn, "SELECT id, customer_name, amount FROM sales ORDER BY id LIMIT 5")

    async def home(_: web.Request) -> web.Response:
        return web.Response(text="CRM stand-in: GET /api/health, GET /api/sales\n")

    app = web.Application()
    app.router.add_get("/", home)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/sales", sales)
    return app


def serve(state: Path) -> None:
    config = settings(state)
    web.run_app(make_app(config["dsn"]), host="127.0.0.1", port=config["port"], print=None, access_log=None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def running_pid(state: Path) -> int | None:
    pidfile = state / PIDFILE
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text())
    return pid if _alive(pid) else None


def start(state: Path) -> int:
    if pid := running_pid(state):
        print(f"stand-in already running (pid {pid})")
        return 0
    log = (state / "standin.log").open("a")
    process = subprocess.Popen([sys.executable, "-m", "demo.standin", "serve", "--state", str(state)],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    (state / PIDFILE).write_text(str(process.pid))
    port = settings(state)["port"]
    if not asyncio.run(_listening(port, timeout=15)):
        print(f"stand-in did not start listening on port {port}; see {state / 'standin.log'}", file=sys.stderr)
        return 1
    print(f"stand-in started (pid {process.pid}) on http://127.0.0.1:{port}")
    return 0


async def _listening(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    async with ClientSession(timeout=ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"http://127.0.0.1:{port}/"):
                    return True
            except (OSError, asyncio.TimeoutError):  # aiohttp's connection errors are OSErrors
                await asyncio.sleep(0.1)
    return False


def stop(state: Path) -> int:
    pid = running_pid(state)
    if pid is None:
        print("stand-in not running")
        (state / PIDFILE).unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not _alive(pid):
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    (state / PIDFILE).unlink(missing_ok=True)
    print(f"stand-in stopped (pid {pid})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.standin", description="the demo's stand-in CRM application")
    parser.add_argument("action", choices=["start", "stop", "serve"])
    parser.add_argument("--state", required=True, type=Path, help="the demo's folder (holds standin.json)")
    args = parser.parse_args(argv)
    if args.action == "serve":
        serve(args.state)
        return 0
    return start(args.state) if args.action == "start" else stop(args.state)


if __name__ == "__main__":
    sys.exit(main())
