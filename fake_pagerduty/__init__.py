"""A local stand-in for PagerDuty's Events API v2 (https://events.pagerduty.com/v2/enqueue).

The tests and the local demo workspace point the bot's pager at it instead of PagerDuty. It refuses
what PagerDuty refuses (``schema``), keeps the incidents PagerDuty would open, and can be told to
throttle, fail or go down (``server``)::

    async with FakePagerDuty() as pd:
        pd.fail_next(429, times=2)
        ...  # the sender posts to pd.url and retries
        incident = await pd.wait_for(lambda: pd.incident("rollback-42"))
"""

from .schema import problems
from .server import Event, FakePagerDuty, Incident, ReceivedRequest

__all__ = ["Event", "FakePagerDuty", "Incident", "ReceivedRequest", "problems"]
