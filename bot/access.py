"""Who holds which role: config lists of user ids and usergroup ids, resolved through Slack.

Membership of a usergroup (S…) comes from `usergroups.users.list` and is cached briefly. When
Slack cannot answer, the user is treated as not a member: access fails closed.
"""

from __future__ import annotations

import logging
import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from actions.config import SIGNOFF_ROLES, Settings
from actions.store.records import Actor, Role

log = logging.getLogger(__name__)


class Access:
    def __init__(self, settings: Settings, client: AsyncWebClient, cache_seconds: float = 60.0):
        self.members = {Role.OPERATOR: settings.bot.operators, Role.APPROVER: settings.bot.approvers,
                        **{Role(role): settings.bot.signers(role) for role in SIGNOFF_ROLES}}
        self.client = client
        self.cache_seconds = cache_seconds
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._names: dict[str, str] = {}

    async def actor(self, user_id: str) -> Actor:
        """The user with every role they hold directly or through a usergroup."""
        roles = set()
        for role, entries in self.members.items():
            for entry in entries:
                if entry == user_id or (entry.startswith("S") and user_id in await self._group(entry)):
                    roles.add(role)
                    break
        return Actor(user_id, frozenset(roles))

    async def users(self, entries: list[str] | tuple[str, ...]) -> list[str]:
        """User ids for a list of user and usergroup ids, in order, without repeats."""
        users: dict[str, None] = {}
        for entry in entries:
            for user in (sorted(await self._group(entry)) if entry.startswith("S") else [entry]):
                users.setdefault(user)
        return list(users)

    async def name(self, user_id: str) -> str:
        """How a person is called outside Slack (pages, mail): their real name from users.info, or the
        id when Slack cannot say."""
        if user_id not in self._names:
            try:
                user = (await self.client.users_info(user=user_id))["user"]
                self._names[user_id] = user.get("real_name") or user.get("name") or user_id
            except SlackApiError as exc:
                log.warning("users.info %s failed (%s); showing the id", user_id, exc.response.get("error"))
                return user_id
        return self._names[user_id]

    async def _group(self, group_id: str) -> frozenset[str]:
        cached = self._groups.get(group_id)
        if cached and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        try:
            answer = await self.client.usergroups_users_list(usergroup=group_id)
            users = frozenset(answer.get("users", []))
        except SlackApiError as exc:
            log.warning("usergroup %s: usergroups.users.list failed (%s); treating it as empty",
                        group_id, exc.response.get("error"))
            return frozenset()
        self._groups[group_id] = (time.monotonic(), users)
        return users
