"""`/rollback diagnose` (runbook Part 8): the checks (`sessions.py`, `server.py`, `foreign_keys.py`,
`performance.py`), run at once with time limits by `run.py`, on the context and helpers of
`base.py`; the report's model in `model.py`.
"""
