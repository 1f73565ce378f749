"""The runbook engine: a plan is an ordered tuple of steps (`plan.py`); the runner (`runner.py`)
executes it durably, behind the approval gates (`approvals.py`) and the binding of each approval to
its exact plan (`binding.py`), and announces what happened as events (`events.py`). Child processes,
concurrency, restore progress, the Prometheus figures (`metrics.py`) and snapshots for the status
updates live here too.
"""
