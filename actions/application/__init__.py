"""The application around the database: its stop, start, health and smoke checks, and deploys, run as
commands without a shell.
"""
