"""An in-process stand-in application, stopped and started by real commands on a flag file.

The tests and the bench use it (the demo runs `demo.standin` as a process of its own). Stop and
start are `rm -f <flag>` and `touch <flag>`, run as child processes by the bot from its config
(and by the bench's runbook baseline), so the bot drives it exactly as it would a real service.
`/api/health` answers 200 only while the flag exists and the live database answers a query;
`/api/sales` runs `sales_query`, the smoke check.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp.web
import psycopg

# What the application read before Phase 4: it fails while the migration is in place.
READS_DROPPED_COLUMN = "SELECT id, customer_name FROM sales ORDER BY id LIMIT 5"


class FlagFileApp:
    def __init__(self, root: Path, dsn: str, sales_query: str = "SELECT count(*) FROM sales"):
        self.flag = root / "app-running"
        self.flag.touch()
        self.dsn = dsn
        self.sales_query = sales_query
        self.port = 0
        self._runner: aiohttp.web.AppRunner | None = None

    @property
    def running(self) -> bool:
        return self.flag.exists()

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/health"

    @property
    def sales_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/sales"

    @property
    def stop_argv(self) -> list[str]:
        return ["rm", "-f", str(self.flag)]

    @property
    def start_argv(self) -> list[str]:
        return ["touch", str(self.flag)]

    async def start(self) -> None:
        app = aiohttp.web.Application()
        app.router.add_get("/api/health", self._health)
        app.router.add_get("/api/sales", self._sales)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, _request: aiohttp.web.Request) -> aiohttp.web.Response:
        return await self._query("SELECT 1")

    async def _sales(self, _request: aiohttp.web.Request) -> aiohttp.web.Response:
        return await self._query(self.sales_query)

    async def _query(self, query: str) -> aiohttp.web.Response:
        if not self.running:
            return aiohttp.web.Response(status=503, text="stopped")
        try:
            async with await psycopg.AsyncConnection.connect(self.dsn, connect_timeout=2) as conn:
                await conn.execute(query)
            return aiohttp.web.Response(text="ok")
        except psycopg.Error as exc:
            return aiohttp.web.Response(status=500, text=str(exc))
