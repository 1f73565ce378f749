"""What every partial rollback shares: its first and last steps (`partial_plan`), reading the
backup and the diff, and binding its approval to the backup it read.

A partial rollback changes part of the live database (or only the application) in place, inside
the environment's open incident. It does not resolve the incident: when the application is
healthy again, a person presses *Mark resolved*.
"""

from __future__ import annotations

import asyncio

from actions.backups.files import BackupFile, BackupProblem, file_identity, fingerprint, newest_backup, read_toc
from actions.backups.scratch import backup_catalog
from actions.engine.events import ReportWritten
from actions.engine.plan import (
    ApprovalInputs,
    Plan,
    RunContext,
    RunOutcome,
    Step,
    StepFailed,
    StepOutcome,
    nothing_to_reconcile,
    nothing_to_undo,
)
from actions.incidents.report import write_report
from actions.plans.facts import BackupRef, RunFacts, facts_update
from actions.postgres import server as pg
from actions.postgres.catalog import Catalog, describe
from actions.postgres.schemadiff import SchemaDiff, compare
from actions.prepared.proof import proven_copy
from actions.store.records import AlertStatus, PreparedCopy, PreparedState, RunState


async def declare(ctx: RunContext) -> StepOutcome:
    await ctx.announce(alert_status=AlertStatus.ROLLING_BACK)
    args = " ".join(ctx.facts.get("args", []))
    return StepOutcome(f"{ctx.incident.id}: {ctx.run.plan} rollback{' ' + args if args else ''} requested by "
                       f"<@{ctx.run.requested_by}> for {ctx.environment.name} ({ctx.environment.target})")


async def locate_backup(ctx: RunContext) -> BackupFile:
    try:
        backup = await asyncio.to_thread(newest_backup, ctx.environment)
        await read_toc(backup)  # readable, or a clear failure before anything else
    except BackupProblem as problem:
        raise StepFailed(str(problem)) from None
    return backup


async def read_diff(ctx: RunContext) -> tuple[BackupFile, Catalog, Catalog, SchemaDiff, str]:
    """The newest backup, its catalog, the live catalog and the difference (read-only)."""
    backup = await locate_backup(ctx)
    backup_cat, source = await backup_catalog(ctx.environment, backup.path)
    async with await pg.connect(ctx.environment) as conn:
        live = await describe(conn)
    await ctx.remember({**facts_update(backup=BackupRef.of(backup)), "diff_source": source})
    return backup, backup_cat, live, compare(live, backup_cat), source


async def finish(ctx: RunContext) -> StepOutcome:
    """Write the incident report with this run in it (the incident stays open)."""
    path = await write_report(ctx.settings, ctx.store, ctx.incident.id)
    ctx.emit(ReportWritten(await ctx.store.incident(ctx.incident.id), str(path)))
    return StepOutcome(f"incident report updated: {path.name}; press Mark resolved on the alert once the "
                       "application is healthy", {"report_path": str(path)})


def backup_of(ctx: RunContext) -> BackupRef:
    """The backup this run read (preflight remembered it)."""
    backup = RunFacts.of(ctx.facts).backup
    if backup is None:
        raise StepFailed("no backup was recorded for this run before this step")
    return backup


async def backup_checksum(ctx: RunContext) -> str:
    """The SHA-256 of the run's backup file, hashed once and remembered with the file's identity;
    hashed again only when the identity changed, so the check before a swap costs a stat, not
    another read of the dump. A file that is gone has the checksum "missing"."""
    backup = backup_of(ctx)
    try:
        identity = await asyncio.to_thread(file_identity, backup.path)
    except OSError:
        return "missing"
    if backup.identity == identity and backup.sha256:
        return backup.sha256
    identity, checksum = await fingerprint(backup.path)
    await ctx.remember(facts_update(backup=backup.model_copy(update={"sha256": checksum, "identity": identity})))
    return checksum


def live_untouched(done: str):
    """The outcome of a plan that only ever drops copies the bot made: live is untouched either way;
    `done` says what went when it succeeded."""
    def outcome(ctx: RunContext, state: RunState, failed_step: str | None) -> RunOutcome:
        if state is RunState.SUCCEEDED:
            return RunOutcome(f"Untouched: {done}.", "")
        return RunOutcome("Untouched.", "Read the ❌ step." if state.failed else "")
    return outcome


async def prepared_source(ctx: RunContext) -> PreparedCopy | None:
    """A prepared copy of the run's backup, proven unchanged, to read the backup's rows from instead of
    restoring them (a file copy of it is faster than pg_restore); None when there is none."""
    copies = await ctx.store.prepared_copies(environment=ctx.environment.name, states=(PreparedState.READY,))
    if not copies:
        return None
    checksum = await backup_checksum(ctx)
    async with await pg.admin(ctx.environment) as conn:
        return await proven_copy(conn, copies, checksum)


async def backup_inputs(ctx: RunContext) -> ApprovalInputs:
    """An approval of a plan that read a backup is bound to that file's content: if the file
    changes after the approval was asked, what the plan prepared from it is void and the run stops."""
    if RunFacts.of(ctx.facts).backup is None:
        return ApprovalInputs({})
    return ApprovalInputs({"backup_sha256": await backup_checksum(ctx)}, fatal={"backup_sha256": (
        f"the backup file {backup_of(ctx).path} changed after the approval was asked: what was restored and "
        "verified is no longer what the file holds")})


def partial_plan(name: str, title: str, *steps: Step, outcome, abort=nothing_to_undo,
                 reconcile=nothing_to_reconcile, reads_backup: bool = False) -> Plan:
    """A partial rollback's plan: "Declare the incident" first, its own steps, "Update the incident
    report" last; bound to the backup it reads, if it reads one."""
    return Plan(name, title, (Step("declare", "Declare the incident", declare), *steps,
                              Step("finish", "Update the incident report", finish)),
                abort=abort, outcome=outcome, reconcile=reconcile,
                approval_inputs=backup_inputs if reads_backup else None)
