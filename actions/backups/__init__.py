"""Backups in the runbook's layout: finding and reading them (`files.py`, `toc.py`), taking one with
its manifest (`take.py`, `manifest.py`), restoring into scratch databases (`scratch.py`), verifying
a restored copy (`verify.py`), and the read-only `diff` and `backup` verbs (`inspection.py`).
"""
