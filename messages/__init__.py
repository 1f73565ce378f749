"""messages/: pure builders from small view models to Block Kit blocks and a plain-text fallback —
the runbook's communication templates, approval requests, progress, replies. No I/O, no clock.
"""
