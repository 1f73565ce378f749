"""PagerDuty's Events API v2: one JSON event per POST to the enqueue URL.

As documented: `202` the event was taken; `400` it is invalid and will never be taken (logged, not
retried); `429` too many events, and `5xx` PagerDuty's trouble: try again later, backing off. The
routing key is added here, when sending, and is never stored, logged or shown.
"""

from __future__ import annotations

import aiohttp
from pydantic import SecretStr

from actions.outreach.attempt import Attempt, refused, try_again


async def send_event(session: aiohttp.ClientSession, url: str, routing_key: SecretStr, event: dict,
                     timeout: float) -> Attempt:
    body = {"routing_key": routing_key.get_secret_value(), **event}
    try:
        async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)) as answer:
            status = answer.status
            try:
                said = await answer.json(content_type=None)
            except ValueError:
                said = None
    except TimeoutError:
        return try_again(f"no answer within {timeout:g} s")
    except (aiohttp.ClientError, OSError) as exc:
        return try_again(f"unreachable ({_why(exc)})")
    said = said if isinstance(said, dict) else {}
    if status == 202:
        return Attempt(True, detail={"dedup_key": said.get("dedup_key")})
    if status == 400:
        errors = "; ".join(str(e) for e in said.get("errors", []) or [])
        return refused(f"HTTP 400 {said.get('message') or 'invalid event'}" + (f": {errors}" if errors else ""))
    if status in (408, 429) or status >= 500:
        return try_again(f"HTTP {status}")
    return refused(f"HTTP {status} (check [paging] pagerduty_url: PagerDuty's is https://events.pagerduty.com/v2/enqueue)")


def _why(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}"
    return type(exc).__name__
