"""bot/: the Slack side. It builds the Bolt app (`app.py`), acks within three seconds, resolves who holds
which role (`access.py`), hands every command and click to the service of `actions/` and renders its
typed answers (`answers.py`); the notifier turns the events of `actions/` into messages, in order,
without ever holding a rollback up, and the outbox sends them at Slack's pace (`outbox.py`,
`poster.py`); `outreach.py` writes the pages and mails the same events make due. `server.py` runs Socket Mode or HTTP, with health and metrics (`health.py`,
`metrics.py`). The only package that imports Slack libraries.
"""
