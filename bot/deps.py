"""What the listeners use, one instance per app (built by `bot/app.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from actions.config import Settings
from actions.redact import Redactor
from actions.service import RollbackService
from bot.access import Access
from bot.metrics import SlackMetrics
from bot.notifier import Notifier
from bot.outreach import Outreach
from bot.schedule import Schedule
from bot.watching import WatchPoster


@dataclass
class Deps:
    settings: Settings
    service: RollbackService  # the front door to actions/
    access: Access  # who holds which role (usergroups resolved through Slack)
    notifier: Notifier  # events -> Slack messages, in order, never holding a rollback up
    schedule: Schedule  # status updates and reminders, on a clock
    redact: Redactor
    watch_posts: WatchPoster  # `/rollback watch` events -> the channel
    slack_metrics: SlackMetrics  # Web API calls and the outbox, beside the service's own figures
    outreach: Outreach  # events -> pages and mails, on their own queue
