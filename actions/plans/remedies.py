"""The fixes a diagnose report offers, each a gated run: terminate a backend, ANALYZE or VACUUM a
table, REINDEX an invalid index, move foreign-key orphans into quarantine.

A remedy starts from a button, so its finding may be stale by the time it runs: preflight checks
again that there is still something to fix (the same backend — pid *and* start time, since pids
are reused —, the same invalid index, orphans still there) before the approval is asked.
"""

from __future__ import annotations

import asyncio
import json

from psycopg import sql

from actions.config import Environment
from actions.diagnose.model import RemedyKind
from actions.engine.plan import (
    ApprovalPreview,
    Plan,
    PlanSpec,
    RunContext,
    RunOutcome,
    Step,
    StepFailed,
    StepOutcome,
)
from actions.plans import partial
from actions.plans.quarantine import move_orphans, orphan_preflight
from actions.postgres import server as pg
from actions.postgres.catalog import qualified
from actions.store.records import RunState

TARGET_KEYS = {RemedyKind.TERMINATE: {"pid", "backend_start"}, RemedyKind.ANALYZE: {"table"},
               RemedyKind.VACUUM: {"table"}, RemedyKind.REINDEX: {"index"}, RemedyKind.QUARANTINE: {"constraint"}}


def parse(args: tuple[str, ...]) -> tuple[RemedyKind, dict]:
    kind = RemedyKind(args[0])
    target = json.loads(args[1])
    if not isinstance(target, dict) or set(target) != TARGET_KEYS[kind]:
        raise ValueError(f"a {kind} remedy needs {', '.join(sorted(TARGET_KEYS[kind]))}")
    return kind, target


async def check_args(env: Environment, args: tuple[str, ...]) -> str | None:
    if len(args) != 2:
        return "a remedy needs its kind and target (it comes from a diagnose report's button)"
    try:
        parse(args)
    except (ValueError, json.JSONDecodeError) as problem:
        return f"this remedy button is not valid: {problem}"
    return None


async def _backend(conn, target: dict) -> tuple | None:
    cursor = await conn.execute(
        "SELECT usename, state, left(regexp_replace(query, '\\s+', ' ', 'g'), 120), now() - query_start "
        "FROM pg_stat_activity WHERE pid = %s AND backend_start = %s::timestamptz", (target["pid"], target["backend_start"]))
    return await cursor.fetchone()


async def preflight(ctx: RunContext) -> StepOutcome:
    kind, target = parse(tuple(ctx.facts["args"]))
    async with await pg.connect(ctx.environment) as conn:
        if kind is RemedyKind.TERMINATE:
            backend = await _backend(conn, target)
            if backend is None:
                raise StepFailed(f"backend {target['pid']} is gone (or its pid now belongs to another session): "
                                 "nothing to terminate")
            user, state, query, age = backend
            return StepOutcome(f"backend {target['pid']} of {user} is still there: {state}, {query!r}, for {age}")
        if kind in (RemedyKind.ANALYZE, RemedyKind.VACUUM):
            row = await (await conn.execute(
                "SELECT n_live_tup, n_dead_tup, coalesce(last_analyze, last_autoanalyze)::text FROM pg_stat_user_tables "
                "WHERE relid = to_regclass(%s)", (str(qualified(target["table"]).as_string(conn)),))).fetchone()
            if row is None:
                raise StepFailed(f"table {target['table']} does not exist")
            return StepOutcome(f"{target['table']}: {row[0]:,} live rows, {row[1]:,} dead, last analyzed {row[2] or 'never'}")
        if kind is RemedyKind.REINDEX:
            valid = await pg.scalar(conn, "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
                                    (str(qualified(target["index"]).as_string(conn)),))
            if valid is None:
                raise StepFailed(f"index {target['index']} does not exist")
            if valid:
                raise StepFailed(f"index {target['index']} is valid already: nothing to rebuild")
            return StepOutcome(f"index {target['index']} is still invalid")
        detail, facts = await orphan_preflight(conn, target["constraint"])
        return StepOutcome(detail, facts)


async def apply(ctx: RunContext) -> StepOutcome:
    kind, target = parse(tuple(ctx.facts["args"]))
    async with await pg.connect(ctx.environment) as conn:
        if kind is RemedyKind.TERMINATE:
            return StepOutcome(await _terminate(conn, target))
        if kind is RemedyKind.ANALYZE:
            await conn.execute(sql.SQL("ANALYZE {}").format(qualified(target["table"])))
            return StepOutcome(f"ANALYZE {target['table']} done")
        if kind is RemedyKind.VACUUM:  # VACUUM cannot run in a transaction: the connection is in autocommit
            await conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(qualified(target["table"])))
            return StepOutcome(f"VACUUM (ANALYZE) {target['table']} done")
        if kind is RemedyKind.REINDEX:
            await conn.execute(sql.SQL("REINDEX INDEX {}").format(qualified(target["index"])))
            return StepOutcome(f"REINDEX INDEX {target['index']} done")
        moved = await move_orphans(conn, target["constraint"], ctx.incident.id)
        await ctx.remember({"quarantined": moved})
        return StepOutcome(f"{moved:,} orphan row(s) moved into rollback_quarantine.rows (incident {ctx.incident.id}) "
                           f"in one transaction; put them back with `/rollback restore-quarantine "
                           f"{ctx.environment.name} {ctx.incident.id}`")


async def _terminate(conn, target: dict) -> str:
    """Cancel the query first (the gentler signal); terminate the session only if it is still there."""
    await conn.execute("SELECT pg_cancel_backend(%s)", (target["pid"],))
    for _ in range(20):
        await asyncio.sleep(0.25)
        backend = await _backend(conn, target)
        if backend is None:
            return f"backend {target['pid']} ended after its query was cancelled"
        if backend[1] == "idle":
            return f"backend {target['pid']}'s query was cancelled; the session is idle now"
    await conn.execute("SELECT pg_terminate_backend(%s, 5000)", (target["pid"],))
    return f"cancelling did not free backend {target['pid']} within 5 s: it was terminated"


async def verify(ctx: RunContext) -> StepOutcome:
    kind, target = parse(tuple(ctx.facts["args"]))
    async with await pg.connect(ctx.environment) as conn:
        if kind is RemedyKind.TERMINATE:
            backend = await _backend(conn, target)
            if backend is not None and backend[1] not in ("idle",):
                raise StepFailed(f"backend {target['pid']} is still {backend[1]}")
            return StepOutcome(f"backend {target['pid']} is no longer busy")
        if kind is RemedyKind.REINDEX:
            if not await pg.scalar(conn, "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
                                   (str(qualified(target["index"]).as_string(conn)),)):
                raise StepFailed(f"index {target['index']} is still invalid")
            return StepOutcome(f"index {target['index']} is valid")
        if kind is RemedyKind.QUARANTINE:
            left, _ = await orphan_preflight(conn, target["constraint"], expect_none=True)
            return StepOutcome(left)
        return StepOutcome("statistics refreshed")


def preview(ctx: RunContext) -> ApprovalPreview:
    kind, target = parse(tuple(ctx.facts["args"]))
    what = {
        RemedyKind.TERMINATE: f"Cancel the query of backend {target.get('pid')}; if it is still busy after 5 s, terminate "
                              "the session (pg_terminate_backend)",
        RemedyKind.ANALYZE: f"ANALYZE `{target.get('table')}`",
        RemedyKind.VACUUM: f"VACUUM (ANALYZE) `{target.get('table')}`",
        RemedyKind.REINDEX: f"REINDEX INDEX `{target.get('index')}` (the table is locked for writes while it rebuilds)",
        RemedyKind.QUARANTINE: (f"Move the {ctx.facts.get('orphans', 0):,} orphan row(s) of `{target.get('constraint')}` "
                                "into `rollback_quarantine.rows` (each row whole, as JSON, with the table, the incident "
                                "and the time), in one transaction, the table's own triggers and rules off meanwhile; "
                                "nothing is lost"),
    }[kind]
    return ApprovalPreview(
        title=f"Remedy on {ctx.environment.name}: {kind.value}", actions=(what,),
        facts=(("Target", ctx.environment.target), ("Requested by", f"<@{ctx.run.requested_by}>")),
        confirm=what[:290])


def outcome(ctx: RunContext, state: RunState, failed_step: str | None) -> RunOutcome:
    if state is RunState.SUCCEEDED:
        return RunOutcome("The remedy was applied.", "Run `/rollback diagnose` again to see where things stand.")
    return RunOutcome("Nothing was changed.", "Read the ❌ step; run `/rollback diagnose` again for a fresh report."
                   if state.failed else "")


def build_plan(env: Environment, args: tuple[str, ...]) -> Plan:
    return partial.partial_plan(
        "remedy", "Remedy",
        Step("preflight", "Check the finding is still there", preflight),
        Step("apply", "Apply the remedy", apply, destructive=True, preview=preview),
        Step("verify", "Verify the remedy", verify),
        outcome=outcome)


SPEC = PlanSpec("remedy", "Remedy", build_plan, check_args, level=1)
