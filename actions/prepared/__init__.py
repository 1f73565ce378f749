"""Prepared rollbacks (`/rollback prepare`): before a migration, a fresh backup restored aside and verified,
then closed, so that a full rollback is an approval and a swap.

`desk.py` prepares (backup, restore, verify, close, prove) one environment at a time and replaces the
previous copy only once the new one is verified; `proof.py` closes a copy and proves, later, that nothing
could have written to it since.
"""
