"""`/rollback tables`: the arguments, preflight and shadow copy (`plan.py`), the checks before any
approval (`check.py`), the swap transaction (`swap.py`), partitioned tables as one unit
(`partitions.py`) and the SQL they share (`sql.py`).
"""
