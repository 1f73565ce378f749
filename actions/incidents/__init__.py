"""The incident around the runs: the desk (declare, assess, escalate, resolve, checklist, sign-offs,
reminders), the checklist as data, the report (built from the store, written as Markdown), and what
`bot/` may read and record of incidents (`reads.py`).
"""
