"""Diagnose checks on sessions: long-running statements and lock waits (runbook Part 2's Level 1
"Long-running query (> 2 minutes)" and Contingency 1, "Migration Hangs")."""

from __future__ import annotations

import readable
from actions.diagnose.base import Check, CheckOutcome, Context, age, terminate
from actions.diagnose.model import Finding, Status

CONTINGENCY_1 = ("Contingency 1 — Migration Hangs: see what the session runs or waits for; if it is truly stuck, "
                 "terminate it (or the session blocking it) and roll back.")

# A transaction left open ("idle in transaction") is as old as its transaction, not its last statement.
_AGE = ("CASE WHEN a.state LIKE 'idle in transaction%%' THEN coalesce(a.xact_start, a.query_start) "
        "ELSE a.query_start END")

LONG_QUERIES_SQL = f"""
SELECT a.pid, a.usename, a.state, a.backend_start, a.wait_event_type, a.wait_event, a.query,
       extract(epoch FROM now() - {_AGE})::float8 AS seconds
  FROM pg_stat_activity a
 WHERE a.datname = current_database() AND a.backend_type = 'client backend' AND a.state <> 'idle'
   AND a.pid <> pg_backend_pid() AND a.application_name IS DISTINCT FROM %(tag)s
   AND {_AGE} < now() - make_interval(secs => %(threshold)s)
 ORDER BY seconds DESC, a.pid"""

# Sessions this role may not see (no pg_read_all_stats): their query reads "<insufficient privilege>".
HIDDEN_SQL = """
SELECT count(*) FROM pg_stat_activity
 WHERE datname = current_database() AND query = '<insufficient privilege>'"""


async def long_queries(ctx: Context) -> CheckOutcome:
    threshold = ctx.env.long_query_seconds
    cursor = await ctx.db.execute(LONG_QUERIES_SQL, {"tag": ctx.tag, "threshold": threshold})
    rows = await cursor.fetchall()
    hidden = await _hidden(ctx)
    findings = []
    for pid, user, state, backend_start, wait_type, wait_event, query, seconds in rows:
        open_for = "transaction open" if (state or "").startswith("idle in transaction") else "running"
        waiting = f", waiting on {wait_type}:{wait_event}" if wait_type and wait_type not in ("Client", "Activity") else ""
        hung = f" (over {ctx.env.hung_minutes:g} min: possibly hung)" if seconds >= ctx.env.hung_minutes * 60 else ""
        findings.append(Finding(
            f"pid {pid} ({user}, {state}{waiting}) {open_for} {age(seconds)}{hung}: {readable.first_line(query) or '(no query text)'}",
            terminate(pid, backend_start)))
    limit = age(threshold)
    if not findings:
        return CheckOutcome(Status.OK, f"No statement running longer than {limit}{hidden}")
    pid, seconds = rows[0][0], rows[0][-1]
    return CheckOutcome(Status.WARN, f"{readable.count(len(findings), 'session')} running longer than {limit} "
                                f"(longest: pid {pid}, {age(seconds)}){hidden}", tuple(findings))


LOCKS_SQL = """
SELECT w.pid, w.usename, w.query, l.locktype, l.mode, n.nspname, c.relname, l.transactionid::text,
       extract(epoch FROM now() - coalesce(l.waitstart, w.state_change, w.query_start))::float8 AS waiting,
       bp.pid, b.usename, b.state, b.backend_start, b.query, b.wait_event_type = 'Lock',
       extract(epoch FROM now() - coalesce(b.xact_start, b.query_start))::float8
  FROM pg_stat_activity w
  CROSS JOIN LATERAL (SELECT DISTINCT p AS pid FROM unnest(pg_blocking_pids(w.pid)) AS p) bp
  LEFT JOIN pg_stat_activity b ON b.pid = bp.pid
  LEFT JOIN LATERAL (SELECT x.* FROM pg_locks x WHERE x.pid = w.pid AND NOT x.granted LIMIT 1) l ON true
  LEFT JOIN pg_class c ON c.oid = l.relation
  LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE w.datname = current_database() AND w.pid IN (SELECT pid FROM pg_locks WHERE NOT granted)
   AND w.pid <> pg_backend_pid() AND w.application_name IS DISTINCT FROM %(tag)s
 ORDER BY waiting DESC, w.pid, bp.pid"""


async def locks(ctx: Context) -> CheckOutcome:
    cursor = await ctx.db.execute(LOCKS_SQL, {"tag": ctx.tag})
    rows = await cursor.fetchall()
    findings = []
    for (pid, user, query, locktype, mode, schema, relation, xid, waiting,
         blocker, b_user, b_state, b_start, b_query, b_waits, b_age) in rows:
        what = (f"{mode} on {schema}.{relation}" if relation else
                f"{mode} on transaction {xid}" if locktype == "transactionid" else f"{mode} ({locktype})")
        waiter = f"pid {pid} ({user}) waits {age(waiting)} for {what}: {readable.first_line(query, 60) or '(no query text)'}"
        if blocker == 0:
            findings.append(Finding(f"{waiter} — blocked by a prepared transaction (see pg_prepared_xacts)"))
        elif b_start is None:
            findings.append(Finding(f"{waiter} — blocked by pid {blocker} (not visible to this role)"))
        else:
            chained = ", itself waiting for a lock" if b_waits else ""
            findings.append(Finding(
                f"{waiter} — blocked by pid {blocker} ({b_user}, {b_state}{chained}, transaction open {age(b_age)}: "
                f"{readable.first_line(b_query, 60) or '(no query text)'})",
                terminate(blocker, b_start, f"Terminate blocker {blocker}")))
    if not rows:
        return CheckOutcome(Status.OK, "No session is waiting for a lock")
    waiters = len({row[0] for row in rows})
    longest = rows[0]
    status = Status.FAIL if longest[8] > ctx.env.long_query_seconds else Status.WARN
    target = f"{longest[5]}.{longest[6]}" if longest[6] else (longest[3] or "a lock")
    return CheckOutcome(status, f"{readable.count(waiters, 'session')} waiting for locks; longest {age(longest[8])} "
                           f"(pid {longest[0]} on {target}, blocked by "
                           f"{'a prepared transaction' if longest[9] == 0 else f'pid {longest[9]}'})"
                           + (f"; over the {age(ctx.env.long_query_seconds)} limit" if status == Status.FAIL else ""),
                   tuple(findings))


async def _hidden(ctx: Context) -> str:
    cursor = await ctx.db.execute(HIDDEN_SQL)
    hidden = (await cursor.fetchone())[0]
    return f"; {readable.count(hidden, 'session')} of other roles not visible (grant pg_read_all_stats)" if hidden else ""


CHECKS = (
    Check("long_queries", "Long-running queries", CONTINGENCY_1, long_queries),
    Check("locks", "Lock waits", CONTINGENCY_1, locks),
)
