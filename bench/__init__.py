"""The benchmark of issue 9: recovery time, app-visible downtime and responsiveness of the bot
against the runbook's Scenario 1 and a raw parallel restore, all in one run on one dump.

Run it with ``python -m bench --help``; docs/PERFORMANCE.md has the method and the latest figures.
"""
