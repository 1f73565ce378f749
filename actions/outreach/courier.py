"""Sends the incident's pages and mails beside the rollback, never in its way.

Each delivery is first a row of the store (`actions/store/deliveries.py`), then sent by its
transport's lane: one task for PagerDuty, one for mail, each in the order things were queued (a
page's `resolve` never overtakes its `trigger`). An attempt that meets a busy or unreachable peer
is tried again after `retry_seconds`, doubling, up to `tries` attempts; a refusal (PagerDuty's
`400`, an SMTP `5xx`) is final at once. Every outcome is audited and announced (`DeliveryEnded`),
which `bot/` shows in the incident's thread. Nothing here is awaited by a step: a pager or a mail
server that is down costs the rollback nothing.

Rows still pending when the bot stops are sent after the next start. A row is marked sent as soon
as the peer took it; only a crash in that instant could send it again, and then PagerDuty folds
it into the same incident (same `dedup_key`) and a mail client into the same message (same
Message-ID).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from email.utils import format_datetime

import aiohttp
from prometheus_client import CollectorRegistry

from actions.config import Settings
from actions.engine.events import DeliveryEnded, Emit
from actions.outreach import mail, pagerduty
from actions.outreach.attempt import Attempt
from actions.outreach.metrics import OutreachMetrics
from actions.outreach.policy import Due, Occasion, Transport, due
from actions.redact import Redactor
from actions.store.records import Delivery, DeliveryState
from actions.store.sqlite import AsyncStore

log = logging.getLogger(__name__)

LONGEST_PAUSE = 300.0


class Courier:
    def __init__(self, settings: Settings, store: AsyncStore, emit: Emit, redact: Redactor,
                 registry: CollectorRegistry):
        self.settings = settings
        self.store = store
        self.emit = emit
        self.redact = redact
        self.transports = [t for t, config in ((Transport.PAGERDUTY, settings.paging), (Transport.EMAIL, settings.email))
                           if config is not None]
        self._wake = {t: asyncio.Event() for t in self.transports}
        self._idle = {t: asyncio.Event() for t in self.transports}
        self._tasks: list[asyncio.Task] = []
        self._session: aiohttp.ClientSession | None = None
        self.metrics = OutreachMetrics(registry)

    # -- what is due, and queueing it ------------------------------------------------------------

    async def due(self, incident_id: str, occasion: Occasion) -> list[Due]:
        incident = await self.store.incident(incident_id)
        if incident is None or not self.transports:
            return []
        queued = {d.key for d in await self.store.deliveries(incident_id=incident_id)}
        return due(incident, queued, occasion, self.settings.paging, self.settings.email)

    async def queue(self, incident_id: str, item: Due, content: dict) -> Delivery | None:
        """Keep `content` (a PagerDuty event without its routing key, or a mail's subject, body and
        attachments) as a row, then wake its lane. None if this key was queued before."""
        if item.transport is Transport.EMAIL:
            content = await self._mail_fields(incident_id, item, content)
        delivery = await self.store.add_delivery(item.key, incident_id, item.transport.value, item.kind, content)
        if delivery is not None and item.transport in self._wake:
            self._idle[item.transport].clear()
            self._wake[item.transport].set()
        return delivery

    async def _mail_fields(self, incident_id: str, item: Due, content: dict) -> dict:
        """Addresses, date and the headers that thread one incident's mail together."""
        config = self.settings.email
        domain = config.sender.rsplit("@", 1)[1]
        earlier = [d.payload["message_id"] for d in await self.store.deliveries(incident_id=incident_id,
                                                                                transport=Transport.EMAIL.value)]
        subject = content["subject"]
        return {
            **content, "to": list(config.recipients), "date": format_datetime(datetime.now(UTC)),
            "subject": f"Re: {subject}" if earlier else subject,
            "message_id": f"<{item.key.replace(':', '.')}@{domain}>",
            "in_reply_to": earlier[-1] if earlier else None,
            "references": list(dict.fromkeys(earlier[:1] + earlier[-1:])),
        }

    # -- the lanes -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start one lane per configured transport; each first sends what an earlier run left pending."""
        if not self.transports:
            return
        self._session = aiohttp.ClientSession()
        self._tasks = [asyncio.create_task(self._lane(t), name=f"outreach {t}") for t in self.transports]

    async def stop(self) -> None:
        """Stop trying: what is pending stays in the store and is sent after the next start."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def refresh_metrics(self) -> None:
        pending = await self.store.deliveries(state=DeliveryState.PENDING)
        for transport in self.transports:
            self.metrics.pending.labels(transport.value).set(sum(d.transport == transport for d in pending))

    async def drain(self) -> None:
        """Wait until every lane has nothing pending (delivered or given up)."""
        for transport in self.transports:
            if self._tasks:
                await self._idle[transport].wait()

    async def _lane(self, transport: Transport) -> None:
        while True:
            pending = await self.store.deliveries(state=DeliveryState.PENDING, transport=transport.value)
            if not pending:
                self._wake[transport].clear()
                self._idle[transport].set()
                await self._wake[transport].wait()
                continue
            for delivery in pending:
                try:
                    await self._deliver(delivery)
                except Exception:  # a bug here must not stop the lane: the row is given up, loudly
                    log.exception("delivering %s failed unexpectedly", delivery.key)
                    await self._ended(delivery, DeliveryState.FAILED, "the bot failed while sending (see its log)")

    async def _deliver(self, delivery: Delivery) -> None:
        config = self.settings.paging if delivery.transport == Transport.PAGERDUTY else self.settings.email
        while True:
            attempts = await self.store.delivery_attempted(delivery.seq)
            attempt = await self._send(delivery)
            self.metrics.attempts.labels(delivery.transport, "taken" if attempt.taken else "retry" if attempt.retry
                                         else "refused").inc()
            reason = self.redact(attempt.reason)
            if attempt.taken:
                await self._ended(delivery, DeliveryState.SENT, None, attempt)
                return
            if not attempt.retry:
                await self._ended(delivery, DeliveryState.FAILED, f"refused: {reason}")
                return
            if attempts >= config.tries:
                await self._ended(delivery, DeliveryState.FAILED,
                                  f"not reached after {attempts} {'try' if attempts == 1 else 'tries'} ({reason})")
                return
            await self.store.delivery_error(delivery.seq, reason)
            pause = min(config.retry_seconds * 2 ** (attempts - 1), LONGEST_PAUSE)
            log.warning("%s: %s; trying again in %.1f s", delivery.key, reason, pause)
            await asyncio.sleep(pause)

    async def _send(self, delivery: Delivery) -> Attempt:
        if delivery.transport == Transport.PAGERDUTY:
            paging = self.settings.paging
            return await pagerduty.send_event(self._session, paging.pagerduty_url, paging.routing_key,
                                              delivery.payload, paging.timeout_seconds)
        return await mail.send_mail(mail.compose(delivery.payload, self.settings.email.sender), self.settings.email)

    async def _ended(self, delivery: Delivery, state: DeliveryState, error: str | None,
                     attempt: Attempt | None = None) -> None:
        ended = await self.store.delivery_ended(delivery.seq, state, error)
        self.metrics.deliveries.labels(delivery.transport, delivery.kind, state.value).inc()
        incident = await self.store.incident(delivery.incident_id)
        page = delivery.transport == Transport.PAGERDUTY
        sent = state is DeliveryState.SENT
        action = ("page." + ("triggered" if delivery.kind == "trigger" else "resolved") if page else "mail.sent") \
            if sent else ("page.failed" if page else "mail.failed")
        detail = {"kind": delivery.kind, "attempts": ended.attempts}
        if page:
            detail["dedup_key"] = delivery.payload.get("dedup_key")
            detail["severity"] = delivery.payload.get("payload", {}).get("severity")
        else:
            detail |= {"to": ", ".join(delivery.payload["to"]), "message_id": delivery.payload["message_id"]}
        if attempt is not None and attempt.detail.get("refused"):
            detail["refused_recipients"] = ", ".join(attempt.detail["refused"])
        if error:
            detail["reason"] = error
        await self.store.audit("bot", action, outcome="ok" if sent else "failed", incident_id=delivery.incident_id,
                               environment=incident and incident.environment, **detail)
        (log.info if sent else log.warning)("%s %s%s", delivery.key, state.value, f": {error}" if error else "")
        if incident is not None:
            self.emit(DeliveryEnded(incident, ended))
