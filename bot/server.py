"""Running the bot: HTTP mode (aiohttp, `POST /slack/events`) or Socket Mode, and its health.

`BotRuntime` owns the app's lifecycle: it starts the notifier, reports runs a previous process
left unfinished, checks that Slack takes its tokens, connects the socket (and keeps trying while
Slack is unreachable), serves `/healthz`, `/readyz` and `/metrics` (`bot/health.py`), and on
shutdown lets queued messages go out within a bounded time.

Shutdown is bounded because the process manager kills what does not exit (Kubernetes after 30 s,
systemd after 90 s): each part has its own short budget, and whatever a run was doing is reported
as interrupted at the next start, as after a crash.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.errors import SlackApiError

from actions.config import Settings
from bot import recovery
from bot.app import create_app
from bot.credentials import SlackCredentials
from bot.health import add_health_routes
from bot.replay import ReplayGuard

log = logging.getLogger(__name__)

# Slack's answers that no retry will change: the token is wrong, revoked or of the wrong kind.
REFUSED = {"invalid_auth", "not_authed", "not_allowed_token_type", "token_revoked", "token_expired",
           "account_inactive", "missing_scope", "no_permission"}
FIRST_PAUSE, LONGEST_PAUSE = 1.0, 30.0  # between tries while Slack is unreachable
CONNECT_SECONDS = 15.0  # one websocket connection attempt; then a fresh URL is asked for
# Shutdown: each part has a budget (seconds), and all of it ends within SHUTDOWN_SECONDS, under the
# 10 s promised to a process manager. What the parts before did not use goes to queued messages,
# which Slack's pace may hold (a report and a checklist after RESOLVED take a few seconds).
SHUTDOWN_SECONDS = 8.5
CLOSE_SOCKET, CLOSE_HTTP, FLUSH_WATCHES, STOP_RUNS, QUEUE_OUTREACH = 1.5, 1.5, 1.5, 2.0, 1.0


class Fatal(Exception):
    """Start-up cannot succeed (Slack refused a token): the message says what to fix."""


class BotRuntime:
    """The Bolt app plus its background work, started and stopped together."""

    def __init__(self, settings: Settings, credentials: SlackCredentials, *, socket_mode: bool = False):
        self.settings = settings
        self.credentials = credentials
        self.socket_mode = socket_mode
        self.app, self.deps = create_app(settings, credentials, socket_mode=socket_mode)
        secret = credentials.signing_secret
        self.replays = ReplayGuard(secret.get_secret_value()) if secret and not socket_mode else None
        self._runners: list[web.AppRunner] = []
        self.port: int | None = None
        self.health_port: int | None = None
        self.socket: AsyncSocketModeHandler | None = None
        self.slack_checked: str | None = "Slack has not answered auth.test yet"  # None once it has
        self.fatal: asyncio.Future[str] | None = None  # set to the reason when start-up cannot succeed
        self.stopping = False
        self._background: set[asyncio.Task] = set()

    @property
    def service(self):
        return self.deps.service

    async def start(self) -> None:
        self.fatal = asyncio.get_running_loop().create_future()
        self.deps.notifier.start()
        await self.deps.service.report_interrupted()
        await self.deps.notifier.handled()  # the interrupted runs' messages queue first, then what they left behind
        await recovery.offer_cleanup(self.deps)
        await self.deps.schedule.resume()
        await self.deps.outreach.start()  # pages and mail left pending by an earlier run go first
        self._spawn(self._check_slack(), "auth.test")

    def _spawn(self, work, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _give_up(self, reason: str) -> None:
        log.error("%s", reason)
        if self.fatal is not None and not self.fatal.done():
            self.fatal.set_result(reason)

    # -- Slack's side: the tokens, the socket ---------------------------------------------------

    async def _check_slack(self) -> None:
        """auth.test until Slack answers: a refusal is fatal, an outage is waited out (and shown by /readyz)."""
        pause = FIRST_PAUSE
        while True:
            try:
                answer = await self.app.client.auth_test()
                self.slack_checked = None
                log.info("Slack knows the bot as %s in team %s", answer.get("user"), answer.get("team"))
                return
            except SlackApiError as exc:
                error = exc.response.get("error")
                if error in REFUSED:
                    self.slack_checked = f"Slack refused SLACK_BOT_TOKEN ({error})"
                    self._give_up(f"{self.slack_checked}: set it to the app's bot token (xoxb-…) from its "
                                  "OAuth & Permissions page, then start again")
                    return
                self.slack_checked = f"Slack did not answer auth.test ({error or exc.response.status_code})"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.slack_checked = f"Slack is unreachable at {self.credentials.api_url} ({type(exc).__name__})"
            log.warning("%s; trying again in %.0f s", self.slack_checked, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)

    async def serve_socket_mode(self) -> None:
        """Start, then connect to Slack's Socket Mode edge in the background (returns at once)."""
        await self.start()
        # The listeners' client (counted, redacted, retrying) asks for the socket URL; the
        # app-level token it sends there is a credential and is never masked (bot/redaction.py).
        self.socket = AsyncSocketModeHandler(self.app, self.credentials.app_token.get_secret_value(),
                                             logger=logging.getLogger("slack_sdk.socket_mode"))
        self._spawn(self._connect(), "socket mode connect")

    async def _connect(self) -> None:
        """Ask for a socket URL, then connect; a refused app token is fatal, an outage is waited out.
        After the first connection slack-sdk keeps it up: it reconnects on Slack's `disconnect`
        (refresh_requested, warning) and when the connection drops."""
        client, pause = self.socket.client, FIRST_PAUSE
        while not self.stopping:
            try:
                client.wss_uri = await client.issue_new_wss_url()
                await asyncio.wait_for(self.socket.connect_async(), CONNECT_SECONDS)
                log.info("connected to Slack in Socket Mode")
                return
            except SlackApiError as exc:
                error = exc.response.get("error")
                if error in REFUSED:
                    self._give_up(f"Slack refused SLACK_APP_TOKEN for Socket Mode ({error}): it must be the app-level "
                                  "token (xapp-…) with the connections:write scope, from the app's Basic Information "
                                  "page")
                    return
                problem = f"apps.connections.open failed ({error or exc.response.status_code})"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                problem = f"Slack's Socket Mode edge is unreachable ({type(exc).__name__})"
            client.wss_uri = None  # a socket URL is good for one connection: ask for a new one
            log.warning("%s; trying again in %.0f s", problem, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)

    async def socket_connected(self) -> bool:
        return self.socket is not None and await self.socket.client.is_connected()

    # -- HTTP ------------------------------------------------------------------------------------

    async def serve_http(self, host: str = "127.0.0.1", port: int = 3000) -> int:
        """Serve Bolt at POST /slack/events, and the health routes; returns the bound port (0 picks one)."""
        await self.start()
        web_app = web.Application()
        web_app.router.add_post("/slack/events", self._handle)
        add_health_routes(web_app, self)
        self.port = await self._listen(web_app, host, port)
        log.info("listening on http://%s:%d/slack/events", host, self.port)
        return self.port

    async def serve_health(self, host: str, port: int) -> int:
        """Socket Mode: /healthz, /readyz and /metrics on their own port."""
        web_app = web.Application()
        add_health_routes(web_app, self)
        self.health_port = await self._listen(web_app, host, port)
        log.info("health and metrics on http://%s:%d/readyz and /metrics", host, self.health_port)
        return self.health_port

    async def _listen(self, web_app: web.Application, host: str, port: int) -> int:
        runner = web.AppRunner(web_app, access_log=None, shutdown_timeout=CLOSE_HTTP)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runners.append(runner)
        return site._server.sockets[0].getsockname()[1]  # the real port when 0 was asked

    async def _handle(self, request: web.Request) -> web.Response:
        # A correctly signed request seen before is a replay: refused before Bolt could run it again.
        if self.replays is not None and (refusal := self.replays.refusal(await request.text(), request.headers)):
            return web.json_response({"error": refusal}, status=401)
        bolt_response = await self.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    # -- stopping --------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop taking requests and watches, stop running steps (reported at the next start), flush
        messages: each within its budget, so the process ends within seconds whatever Slack does."""
        self.stopping = True
        deadline = asyncio.get_running_loop().time() + SHUTDOWN_SECONDS
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.socket is not None:
            await _within(self.socket.close_async(), CLOSE_SOCKET, "closing the Socket Mode connection")
        for runner in self._runners:
            await _within(runner.cleanup(), CLOSE_HTTP + 0.5, "closing the HTTP server")
        await self.deps.service.watches.stop_all()
        await self.deps.watch_posts.stop(FLUSH_WATCHES)  # their end messages are audited before the store closes
        self.deps.schedule.stop()
        await _within(self.deps.service.stop_runs(), STOP_RUNS, "stopping the runs")
        await self.deps.outreach.stop(QUEUE_OUTREACH)  # what is due is kept in the store, sent after the next start
        await self.deps.notifier.stop(max(0.5, deadline - asyncio.get_running_loop().time()))
        self.deps.service.close()


async def _within(work, seconds: float, what: str) -> None:
    try:
        await asyncio.wait_for(work, seconds)
    except TimeoutError:
        log.warning("%s took longer than %.1f s: going on with the shutdown", what, seconds)
    except Exception:
        log.exception("%s failed: going on with the shutdown", what)


async def run_until_stopped(runtime: BotRuntime, *, http: bool, host: str, port: int,
                            health_port: int | None = None) -> int:
    """Serve until SIGINT or SIGTERM (exit status 0), or until Slack refuses a token (2)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if http:
        await runtime.serve_http(host, port)
    else:
        if health_port is not None:
            await runtime.serve_health(host, health_port)
        await runtime.serve_socket_mode()
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({stopped, runtime.fatal}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    log.info("stopping")
    await runtime.stop()
    if runtime.fatal.done():
        return 2
    log.info("stopped")
    return 0
