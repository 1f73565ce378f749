"""Running the bot: HTTP mode (aiohttp, `POST /slack/events`) or Socket Mode.

`BotRuntime` owns the app's lifecycle: it starts the notifier, reports runs a previous process
left unfinished, and on shutdown lets queued messages go out.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request

from actions.config import Settings
from bot import recovery
from bot.app import create_app
from bot.credentials import SlackCredentials
from bot.replay import ReplayGuard

log = logging.getLogger(__name__)


class BotRuntime:
    """The Bolt app plus its background work, started and stopped together."""

    def __init__(self, settings: Settings, credentials: SlackCredentials, *, socket_mode: bool = False):
        self.settings = settings
        self.credentials = credentials
        self.app, self.deps = create_app(settings, credentials, socket_mode=socket_mode)
        secret = credentials.signing_secret
        self.replays = ReplayGuard(secret.get_secret_value()) if secret and not socket_mode else None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def service(self):
        return self.deps.service

    async def start(self) -> None:
        self.deps.notifier.start()
        await self.deps.service.report_interrupted()
        await self.deps.notifier.drain()  # the interrupted runs' messages first, then what they left behind
        await recovery.offer_cleanup(self.deps)
        await self.deps.schedule.resume()

    async def serve_http(self, host: str = "127.0.0.1", port: int = 3000) -> int:
        """Serve Bolt at POST /slack/events (and GET /healthz); returns the bound port (0 picks one)."""
        await self.start()
        web_app = web.Application()
        web_app.router.add_post("/slack/events", self._handle)
        web_app.router.add_get("/healthz", _healthz)
        self._runner = web.AppRunner(web_app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the real port when 0 was asked
        log.info("listening on http://%s:%d/slack/events", host, self.port)
        return self.port

    async def _handle(self, request: web.Request) -> web.Response:
        # A correctly signed request seen before is a replay: refused before Bolt could run it again.
        if self.replays is not None and (refusal := self.replays.refusal(await request.text(), request.headers)):
            return web.json_response({"error": refusal}, status=401)
        bolt_response = await self.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    async def serve_socket_mode(self) -> None:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        await self.start()
        handler = AsyncSocketModeHandler(self.app, self.credentials.app_token.get_secret_value())
        await handler.connect_async()
        log.info("connected to Slack in Socket Mode")

    async def stop(self) -> None:
        """Stop taking requests and watches, stop running steps (reported at the next start), flush messages."""
        if self._runner:
            await self._runner.cleanup()
        await self.deps.service.watches.stop_all()
        await self.deps.watch_posts.stop()  # their end messages go out and are audited before the store closes
        self.deps.schedule.stop()
        await self.deps.service.stop_runs()
        await self.deps.notifier.stop()
        self.deps.service.close()


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def run_until_stopped(runtime: BotRuntime, *, http: bool, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if http:
        await runtime.serve_http(host, port)
    else:
        await runtime.serve_socket_mode()
    await stop.wait()
    log.info("stopping")
    await runtime.stop()
