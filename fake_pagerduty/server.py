"""``FakePagerDuty``: PagerDuty's Events API v2 on localhost, with the incidents it would open.

Serves, on 127.0.0.1 and a free port:

``POST /v2/enqueue``
    Like https://events.pagerduty.com/v2/enqueue: checks the event with ``schema.problems`` and answers
    202 ``{"status": "success", "message": "Event processed", "dedup_key": "..."}`` or
    400 ``{"status": "invalid event", "message": "Event object is invalid", "errors": ["..."]}``.
    The body must be ``Content-Type: application/json`` and at most ``schema.MAX_BODY_BYTES``.
    Injected failures answer 429 or 5xx instead; PagerDuty documents no body and no Retry-After for
    those, so the fake's bodies are placeholders a sender must not parse, and while ``go_down()`` is in
    effect the 503 is plain text, as a load balancer in front of a dead service would answer.

``GET /v2/state``
    Not part of PagerDuty: what the fake holds, for the local workspace's "Pager & mail" panel::

        {"down": false,
         "events": [{"index": 0, "time": 1700000000.5, "routing_key": "...", "event_action": "trigger",
                     "dedup_key": "...", "body": {...the event as sent...}}],
         "incidents": [{"number": 1, "routing_key": "...", "dedup_key": "...",
                        "status": "triggered" | "acknowledged" | "resolved",
                        "severity": "critical", "summary": "...", "source": "...", "triggers": 1,
                        "opened_at": 1700000000.5, "resolved_at": null, "events": [0]}]}

    ``events`` are the accepted events in arrival order; ``incidents`` are all incidents ever opened, in
    opening order (``number`` counts from 1), each naming its events by their ``index``.

Incidents follow PagerDuty's de-duplication: per (routing_key, dedup_key), a trigger adds to the open
(triggered or acknowledged) incident or else opens a new one; acknowledge and resolve change an open
incident and are otherwise accepted and dropped. A trigger without a dedup_key gets a fresh UUID.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Self

from aiohttp import web

from .schema import MAX_BODY_BYTES, problems

log = logging.getLogger(__name__)

ENQUEUE_PATH = "/v2/enqueue"
STATE_PATH = "/v2/state"


@dataclass
class ReceivedRequest:
    """One POST to /v2/enqueue, whatever was answered. ``body`` is the decoded JSON, or the raw text
    when it was not JSON."""

    time: float
    status: int
    body: Any
    errors: list[str] = field(default_factory=list)


@dataclass
class Event:
    """An accepted event; ``dedup_key`` is the one answered (generated when a trigger had none)."""

    index: int  # position in FakePagerDuty.events
    time: float
    routing_key: str
    event_action: str
    dedup_key: str
    body: dict


@dataclass
class Incident:
    """What PagerDuty opens for a trigger; later triggers with the same key add to it while it is open."""

    number: int  # 1 for the first incident ever opened, and so on
    routing_key: str
    dedup_key: str
    status: str  # "triggered", "acknowledged" or "resolved"
    severity: str  # of the latest trigger
    summary: str  # of the latest trigger
    source: str  # of the latest trigger
    opened_at: float
    resolved_at: float | None = None
    triggers: int = 0
    events: list[Event] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.status != "resolved"

    def to_json(self) -> dict:
        return {"number": self.number, "routing_key": self.routing_key, "dedup_key": self.dedup_key,
                "status": self.status, "severity": self.severity, "summary": self.summary, "source": self.source,
                "triggers": self.triggers, "opened_at": self.opened_at, "resolved_at": self.resolved_at,
                "events": [event.index for event in self.events]}


def invalid_event(errors: list[str]) -> dict:
    return {"status": "invalid event", "message": "Event object is invalid", "errors": errors}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's json would otherwise accept NaN and Infinity


def _decode(raw: bytes) -> tuple[Any, str | None]:
    """The JSON value and None, or the raw text and why it is not JSON."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant), None
    except (ValueError, UnicodeDecodeError) as exc:
        return raw.decode("utf-8", "replace"), f"JSON parse error: {exc}"


class FakePagerDuty:
    """PagerDuty's Events API v2 on localhost, as strict as the real one, with failure injection::

        async with FakePagerDuty() as pd:
            ...  # point the sender at pd.url
            await pd.wait_for(lambda: pd.incident("rollback-42"))

    ``routing_keys``, when given, are the only integration keys that exist; others are refused as
    PagerDuty refuses a well-formed but unknown key (400 "Invalid routing key").

    ``on_change``, when given, is called (on the server's event loop) after every request and every
    ``go_down()`` / ``come_back()``: what ``state()`` answers may have changed. The local workspace
    refreshes its "Pager & mail" panel with it. An exception it raises is logged, never answered.
    """

    def __init__(self, *, routing_keys: Iterable[str] | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        self.routing_keys = set(routing_keys) if routing_keys is not None else None
        self.on_change = on_change
        self.requests: list[ReceivedRequest] = []
        self.events: list[Event] = []
        self.incidents: dict[tuple[str, str], Incident] = {}  # the latest incident per (routing_key, dedup_key)
        self.history: list[Incident] = []  # resolved incidents a later trigger replaced in `incidents`
        self.port: int | None = None
        self._host = "127.0.0.1"
        self._failures: deque[int] = deque()
        self._down = False
        self._delay = 0.0
        self._opened = 0
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Self:
        """Listen on ``host:port`` (0 = a free port); returns self."""
        # Above the API's limit, so oversized events get PagerDuty's 400 rather than aiohttp's 413.
        app = web.Application(client_max_size=4 * MAX_BODY_BYTES)
        app.router.add_post(ENQUEUE_PATH, self._enqueue)
        app.router.add_get(STATE_PATH, self._state)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.port = self._runner.addresses[0][1]
        self._host = host
        self._changed = asyncio.Event()  # bind to the loop we run in
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` once started."""
        if self.port is None:
            raise RuntimeError("FakePagerDuty is not started")
        return f"http://{self._host}:{self.port}"

    @property
    def url(self) -> str:
        """Where to send events: ``http://127.0.0.1:PORT/v2/enqueue``."""
        return self.base_url + ENQUEUE_PATH

    @property
    def state_url(self) -> str:
        return self.base_url + STATE_PATH

    # --- failure injection ---------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer ``status`` (e.g. 429, 500) to the next ``times`` requests, before looking at them; they
        are recorded in ``requests`` but change nothing. Calls queue up: their failures come in order."""
        if not 400 <= status <= 599:
            raise ValueError(f"fail_next needs an error status (400-599), got {status}")
        self._failures.extend([status] * times)

    def go_down(self) -> None:
        """Answer 503 to everything until ``come_back()``."""
        self._down = True
        self._wake()

    def come_back(self) -> None:
        self._down = False
        self._wake()

    @property
    def down(self) -> bool:
        return self._down

    def delay(self, seconds: float) -> None:
        """Answer every request ``seconds`` late (0 to stop). The event is applied on arrival, as a real
        client timeout loses the answer but not the event: a retry after one is a duplicate."""
        self._delay = max(0.0, seconds)

    # --- queries -------------------------------------------------------------------------

    def incident(self, dedup_key: str, routing_key: str | None = None) -> Incident | None:
        """The latest incident with this dedup_key (under ``routing_key`` if given), or None."""
        for (key_routing, key_dedup), incident in self.incidents.items():
            if key_dedup == dedup_key and routing_key in (None, key_routing):
                return incident
        return None

    @property
    def all_incidents(self) -> list[Incident]:
        """Every incident ever opened, in opening order."""
        return sorted([*self.history, *self.incidents.values()], key=lambda incident: incident.number)

    def state(self) -> dict:
        """What ``GET /v2/state`` answers (see the module docstring)."""
        return {"down": self._down,
                "events": [{"index": e.index, "time": e.time, "routing_key": e.routing_key,
                            "event_action": e.event_action, "dedup_key": e.dedup_key, "body": e.body}
                           for e in self.events],
                "incidents": [incident.to_json() for incident in self.all_incidents]}

    def describe(self, last: int = 10) -> str:
        """The recent requests and the incidents, for failure messages."""
        lines = [f"FakePagerDuty: {len(self.requests)} request(s), {len(self.events)} accepted event(s)"
                 + (", DOWN" if self._down else "")]
        for req in self.requests[-last:]:
            action = req.body.get("event_action") if isinstance(req.body, dict) else None
            dedup = req.body.get("dedup_key") if isinstance(req.body, dict) else None
            lines.append(f"  {req.status} {action or '?'} dedup_key={dedup!r}"
                         + (f" errors={req.errors}" if req.errors else ""))
        for incident in self.all_incidents:
            lines.append(f"  incident #{incident.number} {incident.dedup_key!r}: {incident.status}, "
                         f"{incident.triggers} trigger(s), {incident.severity}: {incident.summary!r}")
        return "\n".join(lines)

    # --- waiting -------------------------------------------------------------------------

    def _wake(self) -> None:
        # Swap in a fresh Event, then wake everyone waiting on the old one.
        event, self._changed = self._changed, asyncio.Event()
        event.set()
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:  # the listener's bug must not become PagerDuty's answer
                log.exception("FakePagerDuty: on_change failed")

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str | None = None) -> Any:
        """Re-check ``predicate`` after every request until it returns something truthy, and return that.
        Raises AssertionError, describing what was received, when ``timeout`` seconds pass first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or _describe(predicate)}\n"
                                     + self.describe())
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                pass

    # --- HTTP ----------------------------------------------------------------------------

    async def _enqueue(self, request: web.Request) -> web.Response:
        raw = await request.read()
        status, answer = self._receive(request.content_type.lower(), raw)
        if self._delay:
            await asyncio.sleep(self._delay)
        if isinstance(answer, str):
            return web.Response(status=status, text=answer, content_type="text/plain")
        return web.json_response(answer, status=status)

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    def _receive(self, content_type: str, raw: bytes) -> tuple[int, dict | str]:
        """Decide the answer, apply an accepted event, record the request and wake the waiters."""
        body, parse_error = _decode(raw)
        errors: list[str] = []
        if self._down:
            status, answer = 503, "Service Unavailable"
        elif self._failures:
            status = self._failures.popleft()
            answer = _injected(status)
        else:
            if content_type != "application/json":
                errors = [f"Content-Type must be application/json (got {content_type!r})"]
            elif len(raw) > MAX_BODY_BYTES:
                errors = [f"Event object is too large ({len(raw)} bytes; the limit is {MAX_BODY_BYTES})"]
            elif parse_error:
                errors = [parse_error]
            else:
                errors = problems(body)
                if not errors and self.routing_keys is not None and body["routing_key"] not in self.routing_keys:
                    errors = ["Invalid routing key"]
            if errors:
                status, answer = 400, invalid_event(errors)
            else:
                status = 202
                answer = {"status": "success", "message": "Event processed", "dedup_key": self._apply(body)}
        self.requests.append(ReceivedRequest(time=time.time(), status=status, body=body, errors=errors))
        self._wake()
        return status, answer

    def _apply(self, body: dict) -> str:
        """Record an accepted event and open, add to or change its incident; returns its dedup_key."""
        action = body["event_action"]
        routing_key = body["routing_key"]
        dedup_key = body.get("dedup_key") or uuid.uuid4().hex
        event = Event(index=len(self.events), time=time.time(), routing_key=routing_key, event_action=action,
                      dedup_key=dedup_key, body=body)
        self.events.append(event)
        key = (routing_key, dedup_key)
        incident = self.incidents.get(key)
        if action == "trigger":
            payload = body["payload"]
            if incident is None or not incident.is_open:
                if incident is not None:
                    self.history.append(incident)  # a resolved incident is never re-opened
                self._opened += 1
                incident = Incident(number=self._opened, routing_key=routing_key, dedup_key=dedup_key,
                                    status="triggered", severity=payload["severity"], summary=payload["summary"],
                                    source=payload["source"], opened_at=event.time)
                self.incidents[key] = incident
            # An acknowledged incident stays acknowledged; the alert shows the latest trigger's fields.
            incident.triggers += 1
            incident.severity, incident.summary, incident.source = (payload["severity"], payload["summary"],
                                                                    payload["source"])
            incident.events.append(event)
        elif incident is not None and incident.is_open:
            incident.events.append(event)
            if action == "acknowledge":
                incident.status = "acknowledged"
            else:
                incident.status, incident.resolved_at = "resolved", event.time
        # else: acknowledge/resolve for no open incident: accepted, and dropped as PagerDuty drops it
        return dedup_key


def _injected(status: int) -> dict:
    if status == 400:
        return invalid_event(["failure injected by FakePagerDuty.fail_next"])
    # The 5xx shape of PagerDuty's OpenAPI "Error" response; 429's body is undocumented.
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return {"status": "throttled" if status == 429 else "error", "message": phrase}


def _describe(predicate: Callable[[], Any]) -> str:
    try:
        return inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return repr(predicate)
