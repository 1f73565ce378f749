"""`/rollback watch`: the watcher that polls (`watcher.py`, `poll.py`), the rules that decide what is
an alert (`rules.py`), and the desk that runs one watch per environment (`desk.py`).
"""
