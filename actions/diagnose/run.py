"""`/rollback diagnose <env>`: every check of runbook Part 8 at once, each within its time limit.

The checks (actions/diagnose_*.py) run concurrently, each on its own read-only connection, so a
check stuck behind a lock or a slow server costs only its own section: when its time limit
(`check_timeout_seconds`) runs out, or it fails, it reports ERROR with the reason and the others
still report. Nothing here writes to the database; the fixes are the gated `remedy` plan.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from datetime import UTC, datetime

import psycopg

from actions.config import Environment
from actions.diagnose import foreign_keys as diagnose_foreign_keys
from actions.diagnose import performance as diagnose_performance
from actions.diagnose import server as diagnose_server
from actions.diagnose import sessions as diagnose_sessions
from actions.diagnose.base import RUN_TAG_PREFIX, Check, CheckOutcome, Context, check_connection, error_line
from actions.diagnose.model import CheckResult, Diagnosis, Finding, Status
from actions.redact import Redactor, dsn_secrets

log = logging.getLogger(__name__)

# In the order the report shows them: what is happening now first, then the server, then the data.
CHECKS: tuple[Check, ...] = (*diagnose_sessions.CHECKS, *diagnose_server.CHECKS,
                             *diagnose_foreign_keys.CHECKS, *diagnose_performance.CHECKS)
CLOSE_SECONDS = 2.0  # closing a connection whose query was cut short must not hold the report up


async def diagnose(env: Environment, checks: tuple[Check, ...] = CHECKS) -> Diagnosis:
    """Run `checks` concurrently against the environment's live database; never raises for a check."""
    tag = f"{RUN_TAG_PREFIX} {secrets.token_hex(3)}"  # lets the session checks leave our own backends out
    redact = Redactor(dsn_secrets(env.resolved_dsn.get_secret_value()))
    results = await asyncio.gather(*(_run(check, env, tag, redact) for check in checks))
    return Diagnosis(env.name, env.database, datetime.now(UTC), tuple(results))


async def _run(check: Check, env: Environment, tag: str, redact: Redactor) -> CheckResult:
    timeout = env.check_timeout_seconds
    started = time.monotonic()
    deadline = started + timeout
    conn: psycopg.AsyncConnection | None = None
    try:
        async with asyncio.timeout(timeout):
            if not check.own_connection:
                conn = await check_connection(env, tag, deadline)
            outcome = await check.run(Context(env, conn, tag, timeout, deadline))
    except (TimeoutError, psycopg.errors.QueryCanceled):  # ours, or the server's statement_timeout
        outcome = CheckOutcome(Status.ERROR, f"Did not finish within its {timeout:g} s limit (check_timeout_seconds)")
    except psycopg.Error as exc:
        outcome = CheckOutcome(Status.ERROR, f"Could not run: {error_line(exc)}")
    except Exception as exc:  # a bug in one check must not take the whole report down
        log.exception("diagnose check %s failed", check.key)
        outcome = CheckOutcome(Status.ERROR, f"Could not run: {type(exc).__name__}: {error_line(exc)}")
    finally:
        if conn is not None:
            await _close(conn)
    hint = outcome.hint or (check.hint if outcome.status is not Status.OK else None)
    if outcome.status is Status.ERROR and outcome.hint is None:
        hint = "Run the diagnosis again; if this check keeps failing, look at the server directly (psql)."
    return CheckResult(check.key, check.title, outcome.status, redact(outcome.summary),
                       tuple(Finding(redact(f.text), f.remedy) for f in outcome.findings),
                       redact(hint) if hint else None, time.monotonic() - started)


async def _close(conn: psycopg.AsyncConnection) -> None:
    try:
        await asyncio.wait_for(conn.close(), CLOSE_SECONDS)
    except (TimeoutError, psycopg.Error, OSError):
        log.warning("a diagnose connection did not close cleanly")
