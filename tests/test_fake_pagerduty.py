"""The fake PagerDuty is as strict as the Events API v2: documented answers, refused events naming the
field, PagerDuty's de-duplication, and the failures the bot's sender must survive (throttling, 5xx,
an outage, a slow answer). aiohttp's client against a started FakePagerDuty; no database."""

from __future__ import annotations

import asyncio
import copy
import json
import time

import aiohttp
import pytest

from fake_pagerduty import FakePagerDuty, problems

ROUTING_KEY = "0123456789abcdef0123456789abcdef"
OTHER_ROUTING_KEY = "R123456789abcdef0123456789abcdef"


def trigger(dedup_key: str | None = "rollback-42", **payload: object) -> dict:
    event = {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "payload": {"summary": "Rollback of crm failed", "source": "rollback-bot", "severity": "critical",
                    **payload},
    }
    if dedup_key is not None:
        event["dedup_key"] = dedup_key
    return event


def follow_up(action: str, dedup_key: str = "rollback-42", routing_key: str = ROUTING_KEY) -> dict:
    return {"routing_key": routing_key, "event_action": action, "dedup_key": dedup_key}


@pytest.fixture
async def pd():
    async with FakePagerDuty() as fake:
        yield fake


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http: aiohttp.ClientSession, pd: FakePagerDuty, event: object) -> tuple[int, dict]:
    async with http.post(pd.url, json=event) as resp:
        return resp.status, await resp.json()


# --- accepted events and incidents ---------------------------------------------------------------


async def test_a_valid_trigger_is_accepted_with_its_dedup_key(pd, http):
    assert pd.url == f"http://127.0.0.1:{pd.port}/v2/enqueue"
    status, body = await post(http, pd, trigger(timestamp="2015-07-17T08:42:58.315+0000", component="postgres",
                                                 group="crm", custom_details={"step": "swap"}))
    assert (status, body) == (202, {"status": "success", "message": "Event processed", "dedup_key": "rollback-42"})
    assert [e.event_action for e in pd.events] == ["trigger"]
    incident = pd.incident("rollback-42")
    assert incident is not None
    assert (incident.status, incident.severity, incident.summary, incident.triggers) == (
        "triggered", "critical", "Rollback of crm failed", 1)
    assert [(r.status, r.body["dedup_key"]) for r in pd.requests] == [(202, "rollback-42")]


async def test_a_trigger_without_dedup_key_gets_a_fresh_one_each_time(pd, http):
    _, first = await post(http, pd, trigger(dedup_key=None))
    _, second = await post(http, pd, trigger(dedup_key=None))
    assert len(first["dedup_key"]) == 32 and first["dedup_key"] != second["dedup_key"]
    assert [e.dedup_key for e in pd.events] == [first["dedup_key"], second["dedup_key"]]
    assert len(pd.all_incidents) == 2


async def test_trigger_then_resolve_makes_one_incident_ending_resolved(pd, http):
    assert (await post(http, pd, trigger()))[0] == 202
    status, body = await post(http, pd, follow_up("resolve"))
    assert (status, body["dedup_key"]) == (202, "rollback-42")
    assert len(pd.all_incidents) == 1
    incident = pd.incident("rollback-42")
    assert incident.status == "resolved" and incident.resolved_at is not None
    assert [e.event_action for e in incident.events] == ["trigger", "resolve"]


async def test_a_second_trigger_with_the_same_key_adds_to_the_open_incident(pd, http):
    await post(http, pd, trigger())
    await post(http, pd, trigger(summary="Rollback of crm failed again", severity="error"))
    assert len(pd.all_incidents) == 1
    incident = pd.incident("rollback-42")
    assert (incident.triggers, incident.status) == (2, "triggered")
    assert (incident.summary, incident.severity) == ("Rollback of crm failed again", "error")  # the latest trigger's


async def test_an_acknowledged_incident_stays_acknowledged_on_a_new_trigger(pd, http):
    await post(http, pd, trigger())
    await post(http, pd, follow_up("acknowledge"))
    await post(http, pd, trigger())
    incident = pd.incident("rollback-42")
    assert (incident.status, incident.triggers, len(pd.all_incidents)) == ("acknowledged", 2, 1)


async def test_resolving_an_unknown_or_resolved_key_is_accepted_and_changes_nothing(pd, http):
    status, body = await post(http, pd, follow_up("resolve", "never-triggered"))
    assert (status, body["status"]) == (202, "success")
    assert pd.incidents == {} and len(pd.events) == 1
    await post(http, pd, trigger())
    await post(http, pd, follow_up("resolve"))
    resolved_at = pd.incident("rollback-42").resolved_at
    assert (await post(http, pd, follow_up("resolve")))[0] == 202
    assert (await post(http, pd, follow_up("acknowledge")))[0] == 202
    incident = pd.incident("rollback-42")
    assert (incident.status, incident.resolved_at, len(incident.events)) == ("resolved", resolved_at, 2)


async def test_a_trigger_after_resolve_opens_a_new_incident(pd, http):
    await post(http, pd, trigger())
    await post(http, pd, follow_up("resolve"))
    await post(http, pd, trigger())
    assert [i.status for i in pd.history] == ["resolved"]
    assert [(i.number, i.status) for i in pd.all_incidents] == [(1, "resolved"), (2, "triggered")]
    assert pd.incident("rollback-42").number == 2


async def test_dedup_keys_are_scoped_to_the_routing_key(pd, http):
    await post(http, pd, trigger())
    other = trigger()
    other["routing_key"] = OTHER_ROUTING_KEY
    await post(http, pd, other)
    await post(http, pd, follow_up("resolve", routing_key=OTHER_ROUTING_KEY))
    assert pd.incident("rollback-42", ROUTING_KEY).status == "triggered"
    assert pd.incident("rollback-42", OTHER_ROUTING_KEY).status == "resolved"
    assert len(pd.all_incidents) == 2


async def test_state_endpoint_lists_events_and_incidents(pd, http):
    await post(http, pd, trigger())
    await post(http, pd, follow_up("resolve"))
    async with http.get(pd.state_url) as resp:
        assert resp.status == 200
        state = await resp.json()
    assert state["down"] is False
    assert [(e["index"], e["event_action"], e["dedup_key"]) for e in state["events"]] == [
        (0, "trigger", "rollback-42"), (1, "resolve", "rollback-42")]
    assert state["events"][0]["body"] == trigger()
    [incident] = state["incidents"]
    assert {k: incident[k] for k in ("number", "dedup_key", "status", "severity", "triggers", "events")} == {
        "number": 1, "dedup_key": "rollback-42", "status": "resolved", "severity": "critical", "triggers": 1,
        "events": [0, 1]}


# --- refused events -------------------------------------------------------------------------------


def without(path: str):
    def change(event: dict) -> None:
        *parents, last = path.split(".")
        target = event
        for key in parents:
            target = target[key]
        del target[last]
    return change


def setting(path: str, value: object):
    def change(event: dict) -> None:
        *parents, last = path.split(".")
        target = event
        for key in parents:
            target = target[key]
        target[last] = value
    return change


INVALID = [
    (without("routing_key"), "'routing_key' is missing"),
    (setting("routing_key", 12345), "'routing_key' must be a string"),
    (setting("routing_key", "0123456789abcdef-0123456789abcde"), "'routing_key' cannot contain non-alphanumeric"),
    (without("event_action"), "'event_action' is missing"),
    (setting("event_action", "page"), "'event_action' must be one of"),
    (setting("event_action", "Trigger"), "'event_action' must be one of"),
    (setting("dedup_key", "k" * 256), "'dedup_key' is too long"),
    (setting("dedup_key", ""), "'dedup_key' is missing or blank"),
    (setting("dedup_key", 42), "'dedup_key' must be a string"),
    (without("payload"), "'payload' is missing"),
    (setting("payload", "Rollback failed"), "'payload' must be an object"),
    (without("payload.summary"), "'payload.summary' is missing or blank"),
    (setting("payload.summary", "  "), "'payload.summary' is missing or blank"),
    (setting("payload.summary", "s" * 1025), "'payload.summary' is too long"),
    (setting("payload.summary", ["a"]), "'payload.summary' must be a string"),
    (without("payload.source"), "'payload.source' is missing or blank"),
    (setting("payload.source", ""), "'payload.source' is missing or blank"),
    (without("payload.severity"), "'payload.severity' is missing or blank"),
    (setting("payload.severity", "high"), "'payload.severity' must be one of"),
    (setting("payload.severity", "CRITICAL"), "'payload.severity' must be one of"),
    (setting("payload.timestamp", "yesterday"), "'payload.timestamp' is not a valid ISO 8601"),
    (setting("payload.timestamp", "2015-13-17T08:42:58Z"), "'payload.timestamp' is not a valid ISO 8601"),
    (setting("payload.timestamp", "2015-07-17T08:42:58"), "'payload.timestamp' must be a date-time with a UTC"),
    (setting("payload.timestamp", 1437122578), "'payload.timestamp' must be an ISO 8601 string"),
    (setting("payload.component", 5), "'payload.component' must be a string"),
    (setting("payload.group", ["crm"]), "'payload.group' must be a string"),
    (setting("payload.class", None), "'payload.class' must be a string"),
    (setting("payload.custom_details", "step=swap"), "'payload.custom_details' must be an object"),
    (setting("payload.details", {"step": "swap"}), "'payload.details' is not a property"),
    (setting("client", 1), "'client' must be a string"),
    (setting("client_url", "not a url"), "'client_url' must be an absolute http(s) URL"),
    (setting("links", {"href": "https://x.example"}), "'links' must be an array"),
    (setting("links", ["https://x.example"]), "'links[0]' must be an object"),
    (setting("links", [{"text": "runbook"}]), "'links[0].href' is missing or blank"),
    (setting("links", [{"href": "/relative"}]), "'links[0].href' must be an absolute http(s) URL"),
    (setting("links", [{"href": "https://x.example", "text": 3}]), "'links[0].text' must be a string"),
    (setting("images", [{"alt": "graph"}]), "'images[0].src' is missing or blank"),
    (setting("images", [{"src": "http://x.example/a.png"}]), "'images[0].src' must be an https URL"),
    (setting("service_key", ROUTING_KEY), "'service_key' is not a property"),
    (setting("incident_key", "rollback-42"), "'incident_key' is not a property"),
]


@pytest.mark.parametrize("change, error", INVALID, ids=[error for _, error in INVALID])
async def test_a_schema_violation_is_refused_naming_the_field(pd, http, change, error):
    event = copy.deepcopy(trigger())
    change(event)
    status, body = await post(http, pd, event)
    assert status == 400
    assert (body["status"], body["message"]) == ("invalid event", "Event object is invalid")
    assert any(error in e for e in body["errors"]), body["errors"]
    assert pd.events == [] and pd.incidents == {}
    assert [(r.status, r.errors) for r in pd.requests] == [(400, body["errors"])]


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
async def test_acknowledge_and_resolve_need_a_dedup_key(pd, http, action):
    status, body = await post(http, pd, {"routing_key": ROUTING_KEY, "event_action": action})
    assert status == 400
    assert any("'dedup_key' is missing" in e for e in body["errors"])


@pytest.mark.parametrize("length", [20, 31, 33])
async def test_a_routing_key_of_the_wrong_length_is_refused(pd, http, length):
    event = trigger()
    event["routing_key"] = "a" * length
    status, body = await post(http, pd, event)
    assert status == 400
    assert body["errors"] == ["Length of 'routing_key' is incorrect (should be 32 characters)"]


async def test_every_problem_is_reported_at_once(pd, http):
    status, body = await post(http, pd, {"routing_key": "short", "event_action": "trigger", "payload": {}})
    assert status == 400
    assert len(body["errors"]) == 4, body["errors"]  # routing_key, summary, source, severity


async def test_an_unknown_routing_key_is_refused_when_keys_are_configured(http):
    async with FakePagerDuty(routing_keys=[ROUTING_KEY]) as pd:
        assert (await post(http, pd, trigger()))[0] == 202
        event = trigger()
        event["routing_key"] = OTHER_ROUTING_KEY
        status, body = await post(http, pd, event)
        assert (status, body["errors"]) == (400, ["Invalid routing key"])
        assert len(pd.events) == 1


@pytest.mark.parametrize("data", [b"{not json", b'{"routing_key": NaN}', b"", b"\xff\xfe{"])
async def test_a_body_that_is_not_json_is_refused(pd, http, data):
    async with http.post(pd.url, data=data, headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["status"] == "invalid event"
    assert body["errors"][0].startswith("JSON parse error")
    assert pd.events == [] and pd.requests[0].status == 400


@pytest.mark.parametrize("value", [[trigger()], "trigger", 42, None])
async def test_json_that_is_not_an_object_is_refused(pd, http, value):
    headers = {"Content-Type": "application/json"}
    async with http.post(pd.url, data=json.dumps(value).encode(), headers=headers) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["errors"] == ["Event object must be a JSON object"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_that_is_not_declared_json_is_refused(pd, http, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    async with http.post(pd.url, data=json.dumps(trigger()).encode(), headers=headers) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert "Content-Type must be application/json" in body["errors"][0]
    assert pd.events == []


async def test_json_with_a_charset_is_accepted(pd, http):
    headers = {"Content-Type": "application/json; charset=utf-8"}
    async with http.post(pd.url, data=json.dumps(trigger()).encode(), headers=headers) as resp:
        assert resp.status == 202


async def test_an_event_over_512_kb_is_refused(pd, http):
    event = trigger(custom_details={"log": "x" * 520_000})
    status, body = await post(http, pd, event)
    assert status == 400
    assert "too large" in body["errors"][0]
    assert pd.events == []


# --- failures on demand ---------------------------------------------------------------------------


async def test_fail_next_throttles_then_accepts(pd, http):
    pd.fail_next(429, 2)
    for _ in range(2):
        async with http.post(pd.url, json=trigger()) as resp:
            assert resp.status == 429
            assert "Retry-After" not in resp.headers  # not part of the Events API
    status, body = await post(http, pd, trigger())
    assert (status, body["dedup_key"]) == (202, "rollback-42")
    assert [r.status for r in pd.requests] == [429, 429, 202]
    assert len(pd.events) == 1 and pd.incident("rollback-42").triggers == 1


async def test_fail_next_queues_failures_in_order_and_ignores_validity(pd, http):
    pd.fail_next(500, 1)
    pd.fail_next(502, 1)
    async with http.post(pd.url, data=b"garbage") as resp:
        assert resp.status == 500
    assert (await post(http, pd, trigger()))[0] == 502
    assert (await post(http, pd, trigger()))[0] == 202
    with pytest.raises(ValueError):
        pd.fail_next(202, 1)


async def test_go_down_answers_503_until_come_back(pd, http):
    pd.go_down()
    for event in (trigger(), follow_up("resolve"), {"not": "an event"}):
        async with http.post(pd.url, json=event) as resp:
            assert resp.status == 503
            assert resp.content_type == "text/plain"  # an outage answers no JSON
    assert pd.events == [] and [r.status for r in pd.requests] == [503, 503, 503]
    pd.come_back()
    assert (await post(http, pd, trigger()))[0] == 202
    assert len(pd.events) == 1


async def test_a_slow_answer_still_applies_the_event(pd, http):
    pd.delay(0.5)
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(pd.url, json=trigger(), timeout=aiohttp.ClientTimeout(total=0.1)):
            pass
    # The client gave up, yet PagerDuty had the event: a retry must reuse the dedup_key.
    assert await pd.wait_for(lambda: len(pd.events) == 1, timeout=2)
    pd.delay(0)
    await post(http, pd, trigger())
    assert (len(pd.all_incidents), pd.incident("rollback-42").triggers) == (1, 2)


# --- waiting --------------------------------------------------------------------------------------


async def test_wait_for_wakes_on_a_request(pd, http):
    async def later() -> None:
        await asyncio.sleep(0.05)
        await post(http, pd, trigger())

    sender = asyncio.create_task(later())
    started = time.monotonic()
    incident = await pd.wait_for(lambda: pd.incident("rollback-42"), timeout=5)
    await sender
    assert incident.triggers == 1
    assert time.monotonic() - started < 2


async def test_wait_for_times_out_with_an_assertion_error(pd, http):
    await post(http, pd, follow_up("resolve", "nothing-open"))
    started = time.monotonic()
    with pytest.raises(AssertionError) as failure:
        await pd.wait_for(lambda: pd.incident("rollback-42"), timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 2
    message = str(failure.value)
    assert "timed out after 0.2s" in message
    assert "rollback-42" in message  # the predicate's source
    assert "202 resolve dedup_key='nothing-open'" in message  # what was received


# --- the schema on its own ------------------------------------------------------------------------


def test_problems_accepts_the_documented_examples():
    documented = {
        "payload": {"summary": "DISK at 99% on machine prod-datapipe03.example.com",
                    "timestamp": "2015-07-17T08:42:58.315+0000", "severity": "critical",
                    "source": "prod-datapipe03.example.com", "component": "mysql", "group": "prod-datapipe",
                    "class": "disk", "custom_details": {"free space": "1%", "ping time": "1500ms", "load avg": 0.75}},
        "routing_key": "e93facc04764012d7bfb002500d5d1a6",
        "dedup_key": "srv01/mysql",
        "event_action": "trigger",
        "client": "Sample Monitoring Service",
        "client_url": "https://monitoring.service.com",
        "links": [{"href": "http://pagerduty.example.com", "text": "An example link."}],
        "images": [{"src": "https://chart.googleapis.com/chart?chs=600x400", "href": "https://google.com",
                    "alt": "An example link with an image"}],
    }
    assert problems(documented) == []
    assert problems({"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "srv01/mysql"}) == []
    assert problems(trigger(timestamp="2015-07-17T08:42:58Z")) == []
    assert problems(trigger(dedup_key="k" * 255, summary="s" * 1024)) == []


def test_problems_refuses_a_non_object():
    assert problems([]) == ["Event object must be a JSON object"]
