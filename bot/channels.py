"""A channel per incident (`create_channel = true`): created, people invited, linked from elsewhere."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError

from actions.config import Settings
from actions.service import RollbackService
from actions.store.records import Incident
from bot.access import Access
from bot.poster import Poster
from messages.lifecycle import channel_opened

log = logging.getLogger(__name__)


def channel_name(incident: Incident) -> str:
    """inc-<yyyymmdd>-<env>-<nnnn>: Slack's rules (lowercase, ≤ 80, letters, digits, - and _)."""
    _, day, number = incident.id.split("-")
    return f"inc-{day}-{incident.environment}-{number}".lower()[:80]


async def open_incident_channel(incident: Incident, settings: Settings, service: RollbackService, access: Access,
                                poster: Poster) -> str:
    """Create the incident's channel if configured, invite people, post links; return the channel."""
    channel = incident.channel
    if settings.bot.create_channel:
        channel = await _create(poster, channel_name(incident))
        await service.sent.incident_channel(incident.id, channel)
        await _invite(poster, channel, await access.users([incident.declared_by, *settings.bot.approvers]))
    link = channel_opened(incident.id, incident.environment, channel, incident.declared_by)
    elsewhere = [settings.bot.incident_channel] if channel != settings.bot.incident_channel else []
    for target in dict.fromkeys(elsewhere + settings.bot.notify_channels):
        poster.post(target, link)  # queued; a channel the bot is not in is logged and skipped there
    return channel


async def _create(poster: Poster, name: str) -> str:
    for attempt in range(1, 6):
        candidate = name if attempt == 1 else f"{name}-{attempt}"
        try:
            answer = await poster.api.conversations_create(name=candidate)
            return answer["channel"]["id"]
        except SlackApiError as exc:
            if exc.response.get("error") != "name_taken":
                raise
    raise RuntimeError(f"every channel name {name}, {name}-2 … {name}-5 is taken")


async def _invite(poster: Poster, channel: str, users: list[str]) -> None:
    me = (await poster.api.auth_test())["user_id"]
    users = [u for u in users if u != me]
    if not users:
        return
    try:
        await poster.api.conversations_invite(channel=channel, users=",".join(users))
    except SlackApiError:
        # One bad id fails the whole call: invite one by one, skipping those Slack refuses.
        for user in users:
            try:
                await poster.api.conversations_invite(channel=channel, users=user)
            except SlackApiError as exc:
                log.warning("could not invite %s to %s: %s", user, channel, exc.response.get("error"))
