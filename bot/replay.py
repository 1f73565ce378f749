"""Refusing replayed requests: Slack's signature alone accepts a byte-identical copy for 5 minutes.

A signature is an HMAC over `v0:<timestamp>:<body>`, so within the replay window anyone who saw a
request (a proxy log, a captured packet) can send it again and Bolt would run it again. Every
delivery Slack makes is signed afresh with a new timestamp (an Events API retry too, marked by
`X-Slack-Retry-Num`), so a (timestamp, signature) pair seen twice is never a legitimate retry.

Only correctly signed requests are recorded: a forger cannot fill the cache or get a real request
refused in advance, because without the secret they cannot produce the pair Slack will send.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Mapping

from slack_sdk.signature import Clock, SignatureVerifier

log = logging.getLogger(__name__)

WINDOW_SECONDS = 5 * 60  # SignatureVerifier refuses timestamps further than this from now
MAX_ENTRIES = 50_000  # far above what a rollback bot receives in 5 minutes; bounds memory all the same


class _CallableClock(Clock):
    def __init__(self, clock: Callable[[], float]):
        self._clock = clock

    def now(self) -> float:
        return self._clock()


class ReplayGuard:
    """Remembers the (timestamp, signature) of every correctly signed request for as long as
    its signature would be accepted, and recognises a second delivery of it."""

    def __init__(self, signing_secret: str, *, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.time):
        self._verifier = SignatureVerifier(signing_secret, clock=_CallableClock(clock))
        self._max_entries = max_entries
        self._clock = clock
        self._seen: set[tuple[str, str]] = set()
        self._expiry: list[tuple[int, tuple[str, str]]] = []  # a heap: soonest expiry first

    def __len__(self) -> int:
        return len(self._seen)

    def refusal(self, body: str | bytes, headers: Mapping[str, str]) -> str | None:
        """Why the request must be answered 401 before Bolt sees it, or None to let Bolt decide.

        A replay of a correctly signed request is refused; a first sighting is recorded. So is a
        timestamp that is not a number: Bolt's verifier raises on it and would answer 500 with a
        traceback in the log. Any other bad signature is neither recorded nor refused here:
        Bolt's own check answers it.
        """
        timestamp = headers.get("X-Slack-Request-Timestamp") or ""
        signature = headers.get("X-Slack-Signature") or ""
        if not timestamp:
            return None  # Bolt answers 401 to an unsigned request
        try:
            int(timestamp)
        except ValueError:
            log.warning("refused a request whose timestamp is not a number")
            return "invalid request"
        if not signature.isascii():  # hmac.compare_digest raises TypeError on non-ASCII text
            log.warning("refused a request whose signature is not ASCII")
            return "invalid request"
        if not self._verifier.is_valid(body, timestamp, signature):
            return None
        return "replayed request" if self._seen_before(timestamp, signature) else None

    def _seen_before(self, timestamp: str, signature: str) -> bool:
        now = self._clock()
        self._expire(now)
        key = (timestamp, signature)
        if key in self._seen:
            log.warning("refused a replayed request (timestamp %s, signed %.0f s ago)",
                        timestamp, max(0.0, now - int(timestamp)))
            return True
        if len(self._seen) >= self._max_entries:
            # Dropping the entry nearest to expiry keeps memory bounded; it is the one whose
            # replay window is almost over anyway.
            _, oldest = heapq.heappop(self._expiry)
            self._seen.discard(oldest)
            log.warning("replay cache full (%d entries): forgot the entry closest to expiry", self._max_entries)
        self._seen.add(key)
        # A timestamp up to 5 minutes in the future is accepted too, so its entry lives until then + 5 min.
        heapq.heappush(self._expiry, (int(timestamp) + WINDOW_SECONDS + 1, key))
        return False

    def _expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            _, key = heapq.heappop(self._expiry)
            self._seen.discard(key)
