"""Paging and mail (runbook Step 1: "Slack, Email: dba-team@…, PagerDuty: Trigger incident").

`policy.py` decides what is due when an incident changes; `courier.py` keeps each page and mail as
a row of the store and sends it beside the rollback, never in its way; `pagerduty.py` and `mail.py`
speak the two protocols. What the messages say is built in `messages/` (by `bot/outreach.py`).
"""
