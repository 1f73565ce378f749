"""The replay cache on its own: what it records, when it forgets, and its size bound."""

from __future__ import annotations

from bot.replay import WINDOW_SECONDS, ReplayGuard
from fake_slack.signing import sign

SECRET = "replay-test-secret"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def headers(body: bytes, ts: float, secret: str = SECRET) -> dict[str, str]:
    return {"X-Slack-Request-Timestamp": str(int(ts)), "X-Slack-Signature": sign(secret, int(ts), body)}


def test_a_second_delivery_of_the_same_signed_request_is_a_replay():
    clock = Clock()
    guard = ReplayGuard(SECRET, clock=clock)
    body = b"command=%2Frollback&text=full+staging"
    assert guard.refusal(body, headers(body, clock.now)) is None
    assert guard.refusal(body, headers(body, clock.now)) == "replayed request"
    # Slack signs a retry afresh: a new timestamp is a new request, not a replay.
    assert guard.refusal(body, headers(body, clock.now + 1)) is None


def test_forged_or_stale_requests_are_left_to_bolt_and_never_recorded():
    clock = Clock()
    guard = ReplayGuard(SECRET, clock=clock)
    body = b"text=full+staging"
    forged = headers(body, clock.now, secret="not-the-secret")
    stale = headers(body, clock.now - WINDOW_SECONDS - 10)
    for h in (forged, forged, stale, stale, {}, {"X-Slack-Signature": "v0=1"}):
        assert guard.refusal(body, h) is None
    assert len(guard) == 0
    assert guard.refusal(body, headers(body, clock.now)) is None  # the real one still goes through once


def test_headers_bolt_would_crash_on_are_refused():
    guard = ReplayGuard(SECRET)
    body = b"text=x"
    for h in ({"X-Slack-Request-Timestamp": "yesterday", "X-Slack-Signature": "v0=1"},
              {"X-Slack-Request-Timestamp": "12", "X-Slack-Signature": "v0=\u00e9t\u00e9"}):
        assert guard.refusal(body, h) == "invalid request"
    assert len(guard) == 0


def test_entries_expire_with_the_signature_window_and_the_size_is_capped():
    clock = Clock()
    guard = ReplayGuard(SECRET, max_entries=3, clock=clock)
    bodies = [f"text=n{i}".encode() for i in range(5)]
    for body in bodies:
        assert guard.refusal(body, headers(body, clock.now)) is None
    assert len(guard) == 3
    assert guard.refusal(bodies[-1], headers(bodies[-1], clock.now)) == "replayed request"
    clock.now += WINDOW_SECONDS + 2  # every signature is now refused as stale, so nothing is kept
    fresh = b"text=fresh"
    assert guard.refusal(fresh, headers(fresh, clock.now)) is None
    assert len(guard) == 1
