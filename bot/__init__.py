"""bot/: the Slack side. It builds the Bolt app (`app.py`), acks within three seconds, resolves who holds
which role (`access.py`), hands every command and click to the service of `actions/` and renders its
typed answers (`answers.py`); the notifier turns the events of `actions/` into messages, in order,
without ever holding a rollback up. The only package that imports Slack libraries.
"""
