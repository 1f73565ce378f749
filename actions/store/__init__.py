"""The state: incidents, runs, steps, approvals and the append-only, hash-chained audit trail, in
SQLite (`sqlite.py`, `audit_chain.py`, `postincident.py`), read back as plain records
(`records.py`).
"""
