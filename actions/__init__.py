"""actions/: everything the bot does, with nothing of Slack in it. `service.py` is the front door
`bot/` uses; `verbs.py` declares every verb; `config.py`, `redact.py`, `results.py` (typed answers)
and `status.py` (typed states) are what every part shares. The rooms below hold the rest.
"""
