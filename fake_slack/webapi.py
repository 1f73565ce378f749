"""``/api/<method>``: dispatch, bearer-token check, call log, fault injection and Slack's rate limit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from . import api_chat, api_conversations, api_files
from .apiutil import ApiError, Handler, read_args, strict_views
from .state import ApiCall, RateLimit, Workspace

METHODS: dict[str, Handler] = {**api_conversations.METHODS, **api_chat.METHODS, **api_files.METHODS}
# The views live in api_files; their Block Kit is checked here, before the handler stores anything.
METHODS.update({name: strict_views(handler) for name, handler in METHODS.items() if name.startswith("views.")})
CONNECTIONS_OPEN = "apps.connections.open"  # the one method that takes the app-level token


@dataclass
class Fault:
    """A pending injected failure for one method (or ``"*"`` for any method)."""

    status: int | None  # None: no failing answer (only a delay)
    retry_after: int | None
    error: str | None
    remaining: int
    apply: bool = False  # carry the call out for real before failing
    delay: float | None = None  # seconds to sleep before answering

    @property
    def fails(self) -> bool:
        """Whether the answer is a failure (else the real answer, only late)."""
        return self.error is not None or self.status is not None


class WebApi:
    """The Web API half of the fake: answers the bot's slack_sdk calls."""

    def __init__(self, ws: Workspace, bot_token: str, app_token: str | None = None,
                 socket_url: Callable[[], str] | None = None) -> None:
        """``app_token`` and ``socket_url`` (issues a websocket URL) enable ``apps.connections.open``."""
        self.ws = ws
        self.bot_token = bot_token
        self.app_token = app_token
        self.socket_url = socket_url
        self.faults: dict[str, list[Fault]] = {}

    def inject_failure(self, method: str, status: int | None = None, retry_after: int | None = 1,
                       times: int = 1, error: str | None = None, *, apply: bool = False,
                       delay: float | None = None) -> None:
        """Make the next ``times`` calls of ``method`` fail.

        - ``error="<code>"``: HTTP 200 with ``{"ok": false, "error": code}`` (an API error);
        - ``status=429`` (the default): HTTP 429, header ``Retry-After: retry_after``, error ``ratelimited``;
        - ``status=5xx``: that status with ``{"ok": false, "error": "internal_error"}`` (500),
          ``"service_unavailable"`` (503) or ``"fatal_error"``;
        - ``apply=True``: the call is carried out for real first (the message IS posted) and then
          answered with the failure: what makes a client's retry post a duplicate;
        - ``delay=<seconds>``: sleep before answering. Without a ``status``/``error`` the answer is
          the real one, only late, so a client with a shorter timeout gives up; with
          ``apply=True`` the call is carried out before the sleep, otherwise after it.
        ``method="*"`` matches every method. Failures queue up in the order injected.
        """
        if status is None and error is None and delay is None:
            status = 429  # the historical default: a rate limit
        self.faults.setdefault(method, []).append(
            Fault(status=200 if error else status, retry_after=retry_after, error=error, remaining=times,
                  apply=apply, delay=delay))

    def clear_failures(self) -> None:
        """Drop every pending injected failure."""
        self.faults.clear()

    def rate_limit(self, per_second: float | None = 1.0, burst: int = 3, retry_after: int = 1) -> None:
        """Limit ``chat.postMessage`` per channel like Slack (token bucket); ``per_second=None`` lifts it.

        A refused post answers HTTP 429 ``ratelimited`` with ``Retry-After: retry_after``, posts
        nothing and counts in ``ws.ratelimited``. Every call restarts the buckets full.
        """
        if per_second is None:
            self.ws.post_rate_limit = None
            return
        if per_second <= 0 or burst < 1:
            raise ValueError("rate_limit needs per_second > 0 and burst >= 1")
        self.ws.post_rate_limit = RateLimit(per_second=per_second, burst=burst, retry_after=retry_after)

    def _rate_limited(self, method: str, args: dict) -> web.Response | None:
        """The 429 answer when this post finds its channel's bucket empty, else None."""
        limit = self.ws.post_rate_limit
        if limit is None or method != "chat.postMessage":
            return None
        ref = str(args.get("channel") or "")
        chan = self.ws.channel(ref)
        # A user id posts to the DM with the bot (see resolve_channel): same bucket as its D… id.
        key = chan.id if chan else ("D" + ref[1:] if ref in self.ws.users else ref)
        if limit.take(key):
            return None
        self.ws.ratelimited[key] = self.ws.ratelimited.get(key, 0) + 1
        return self._finish(method, args, 429, {"ok": False, "error": "ratelimited"},
                            {"Retry-After": str(limit.retry_after)})

    def _fault_answer(self, method: str, args: dict, fault: Fault) -> web.Response:
        """The failing answer an injected fault asks for."""
        if fault.error:
            return self._finish(method, args, 200, {"ok": False, "error": fault.error})
        status = fault.status or 500
        headers = {}
        if status == 429:
            headers["Retry-After"] = str(fault.retry_after if fault.retry_after is not None else 1)
            error = "ratelimited"
        else:
            error = {500: "internal_error", 503: "service_unavailable"}.get(status, "fatal_error")
        return self._finish(method, args, status, {"ok": False, "error": error}, headers)

    def _take_fault(self, method: str) -> Fault | None:
        for key in (method, "*"):
            queue = self.faults.get(key)
            if queue:
                fault = queue[0]
                fault.remaining -= 1
                if fault.remaining <= 0:
                    queue.pop(0)
                return fault
        return None

    def _token(self, request: web.Request, args: dict) -> str | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer "):].strip()
        return args.get("token")  # Slack still accepts a token form field

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one Web API call and append it to the call log."""
        method = request.match_info["method"]
        try:
            args = await read_args(request)
        except ApiError as exc:
            return self._finish(method, {}, 200, {"ok": False, "error": exc.code})
        except ValueError:  # malformed JSON body
            return self._finish(method, {}, 200, {"ok": False, "error": "invalid_json"})
        token = self._token(request, args)
        args.pop("token", None)  # never keep secrets in the call log

        limited = self._rate_limited(method, args)  # Slack's front door: before anything else
        if limited is not None:
            return limited
        fault = self._take_fault(method)
        if fault is not None and not fault.apply:
            if fault.delay:
                await asyncio.sleep(fault.delay)  # a slow Slack: late before doing anything
            if fault.fails:
                return self._fault_answer(method, args, fault)

        if method == CONNECTIONS_OPEN and self.app_token and self.socket_url is not None:
            return self._finish(method, args, 200, self._connections_open(token))
        handler = METHODS.get(method)
        if handler is None:
            return self._finish(method, args, 200, {"ok": False, "error": "unknown_method"})
        if not token:
            # Slack says not_authed for a missing token and invalid_auth for a wrong one.
            return self._finish(method, args, 200, {"ok": False, "error": "not_authed"})
        if self.app_token and token == self.app_token:
            # An app-level token is only good for apps.connections.open; Slack names the mistake.
            return self._finish(method, args, 200, {"ok": False, "error": "not_allowed_token_type"})
        if token != self.bot_token:
            return self._finish(method, args, 200, {"ok": False, "error": "invalid_auth"})
        try:
            answer = {"ok": True, **handler(self.ws, args)}
        except ApiError as exc:
            answer = {"ok": False, "error": exc.code}
            if "detail" in exc.extra:
                answer["response_metadata"] = {"messages": [f"[ERROR] {exc.extra['detail']}"]}
        except (ValueError, TypeError, AttributeError) as exc:
            # Malformed arguments (e.g. a non-numeric ts): answer like Slack, not with a 500.
            answer = {"ok": False, "error": "invalid_arguments",
                      "response_metadata": {"messages": [f"[ERROR] {exc}"]}}
        if fault is not None and fault.apply:
            # Applied, then failed: the state above has changed whatever the client hears now.
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.fails:
                return self._fault_answer(method, args, fault)
        return self._finish(method, args, 200, answer)

    def _connections_open(self, token: str | None) -> dict:
        """``apps.connections.open``: a fresh Socket Mode URL, for the app-level token only."""
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token == self.bot_token:
            return {"ok": False, "error": "not_allowed_token_type"}
        if token != self.app_token:
            return {"ok": False, "error": "invalid_auth"}
        assert self.socket_url is not None
        return {"ok": True, "url": self.socket_url()}

    def _finish(self, method: str, args: dict, status: int, answer: dict,
                headers: dict | None = None) -> web.Response:
        self.ws.calls.append(ApiCall(method=method, args=args, status=status,
                                     ok=bool(answer.get("ok")), error=answer.get("error")))
        self.ws.changed()
        return web.Response(status=status, text=json.dumps(answer), content_type="application/json",
                            headers=headers)
