"""``/api/<method>``: dispatch, bearer-token check, call log and fault injection."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web

from . import api_chat, api_conversations, api_files
from .apiutil import ApiError, Handler, read_args
from .state import ApiCall, Workspace

METHODS: dict[str, Handler] = {**api_conversations.METHODS, **api_chat.METHODS, **api_files.METHODS}


@dataclass
class Fault:
    """A pending injected failure for one method (or ``"*"`` for any method)."""

    status: int
    retry_after: int | None
    error: str | None
    remaining: int


class WebApi:
    """The Web API half of the fake: answers the bot's slack_sdk calls."""

    def __init__(self, ws: Workspace, bot_token: str) -> None:
        self.ws = ws
        self.bot_token = bot_token
        self.faults: dict[str, list[Fault]] = {}

    def inject_failure(self, method: str, status: int = 429, retry_after: int | None = 1,
                       times: int = 1, error: str | None = None) -> None:
        """Make the next ``times`` calls of ``method`` fail.

        - ``error="<code>"``: HTTP 200 with ``{"ok": false, "error": code}`` (an API error);
        - ``status=429``: HTTP 429, header ``Retry-After: retry_after``, error ``ratelimited``;
        - ``status=5xx``: that status with a JSON ``{"ok": false}`` body.
        ``method="*"`` matches every method. Failures queue up in the order injected.
        """
        self.faults.setdefault(method, []).append(
            Fault(status=200 if error else status, retry_after=retry_after, error=error, remaining=times))

    def clear_failures(self) -> None:
        """Drop every pending injected failure."""
        self.faults.clear()

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

        fault = self._take_fault(method)
        if fault is not None:
            if fault.error:
                return self._finish(method, args, 200, {"ok": False, "error": fault.error})
            headers = {}
            if fault.status == 429:
                headers["Retry-After"] = str(fault.retry_after if fault.retry_after is not None else 1)
                error = "ratelimited"
            else:
                error = {500: "internal_error", 503: "service_unavailable"}.get(fault.status, "fatal_error")
            return self._finish(method, args, fault.status, {"ok": False, "error": error}, headers)

        handler = METHODS.get(method)
        if handler is None:
            return self._finish(method, args, 200, {"ok": False, "error": "unknown_method"})
        if not token:
            # Slack says not_authed for a missing token and invalid_auth for a wrong one.
            return self._finish(method, args, 200, {"ok": False, "error": "not_authed"})
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
        return self._finish(method, args, 200, answer)

    def _finish(self, method: str, args: dict, status: int, answer: dict,
                headers: dict | None = None) -> web.Response:
        self.ws.calls.append(ApiCall(method=method, args=args, status=status,
                                     ok=bool(answer.get("ok")), error=answer.get("error")))
        self.ws.changed()
        return web.Response(status=status, text=json.dumps(answer), content_type="application/json",
                            headers=headers)
