"""Talking to PostgreSQL: connections and database operations (`server.py`), the one catalog reader
(`catalog.py`), the schema diff, foreign keys, dependencies (drop order) and writing rows without
the user's triggers (`quiet_writes.py`).
"""
