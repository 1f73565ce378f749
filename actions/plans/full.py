"""Scenario 1 of the runbook, the immediate full rollback, made safe.

The runbook drops the failed database, creates an empty one and restores into it: if the restore
fails half-way there is no database at all. Here the backup is restored *aside*, into a new
database beside the live one, while the approval is pending; it is verified; and only then are
the two swapped by renaming, in one transaction. The failed database is kept under a new name.

Steps: declare → preflight → [read the whole dump → stop app] → restore aside → verify →
(approval) [stop app] → swap → start app → smoke checks → resolve → report. The app is stopped
right away (the runbook's order, `stop_app = "immediately"`), once the dump is known to be whole,
or only for the swap (`"at_swap"`), which keeps it up during the restore.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from psycopg import sql

import readable
from actions.application import control as appctl
from actions.backups.files import (
    BackupFile,
    BackupProblem,
    backup_name,
    fingerprint,
    newest_backup,
    read_all_data,
    read_toc,
)
from actions.backups.manifest import load_manifest
from actions.backups.restore import RestoreFailed, progress_for, restore_into
from actions.backups.verify import verify_restored
from actions.engine.concurrency import together
from actions.engine.events import ReportWritten
from actions.engine.plan import ApprovalPreview, Plan, PlanSpec, RunContext, RunOutcome, Step, StepFailed, StepOutcome
from actions.incidents.report import write_report
from actions.plans import writes
from actions.plans.facts import BackupRef, Databases, PreparedRef, RunFacts, Swap, facts_update
from actions.plans.full_server import check_server
from actions.plans.partial import backup_inputs
from actions.postgres import server as pg
from actions.prepared import use as prepared_use
from actions.store.records import AlertStatus, IncidentStatus, PreparedState, RunState


def names(ctx: RunContext) -> tuple[str, str, str]:
    """(live, restored copy — or the prepared copy used —, name the failed database is kept under)."""
    chosen = _facts(ctx).databases
    if chosen is not None:
        return chosen.live, chosen.aside, chosen.keep_as
    live = ctx.environment.database
    return live, f"{live}__rollback_{ctx.database_suffix}", f"{live}__failed_{ctx.database_suffix}"


def _facts(ctx: RunContext) -> RunFacts:
    return RunFacts.of(ctx.facts)


async def declare(ctx: RunContext) -> StepOutcome:
    await ctx.announce(alert_status=AlertStatus.ROLLING_BACK)
    return StepOutcome(f"{ctx.incident.id} declared by <@{ctx.incident.declared_by}> at "
                       f"{ctx.incident.declared_at:%H:%M:%S} UTC; full rollback requested by <@{ctx.run.requested_by}> "
                       f"for {ctx.environment.name} ({ctx.environment.target})")


async def preflight(ctx: RunContext) -> StepOutcome:
    """Everything that can be checked in moments before anything is changed, all at once: the
    dump's table of contents and SHA-256 (the approval is bound to it), and the server (names,
    rights, disk). Reading every data block is a step of its own (`read_dump`)."""
    env = ctx.environment
    live, aside, keep_as = names(ctx)
    for name in (aside, keep_as):
        if len(name.encode()) > pg.MAX_IDENTIFIER_BYTES:
            raise StepFailed(f"the database name {name} would be longer than PostgreSQL's 63 bytes; "
                             "use a shorter database name for this environment")
    try:
        backup = await asyncio.to_thread(newest_backup, env)  # a backup folder may be on slow storage
        toc, (identity, sha256), server = await together(
            read_toc(backup), fingerprint(backup.path), check_server(env, live, aside, keep_as))
    except BackupProblem as problem:
        raise StepFailed(str(problem)) from None
    prepared, unused = await prepared_use.usable_copy(ctx, sha256)
    if server.disk_problem and not prepared:
        raise StepFailed(server.disk_problem + (f" (the prepared copy is not used: {unused})" if unused else ""))
    chosen = Databases(live=live, aside=prepared.database if prepared else aside, keep_as=keep_as)
    facts = {**facts_update(backup=BackupRef.of(backup, sha256=sha256, identity=identity), databases=chosen,
                            prepared=prepared and PreparedRef(id=prepared.id, database=prepared.database,
                                                              ready_at=prepared.ready_at,
                                                              restore_seconds=prepared.restore_seconds)),
             "toc_entries": len(toc.entries), "live_size": server.size,
             "leftover_aside": server.leftover and not prepared}
    again = f"; {aside}, left by an interrupted run of this incident, will be restored again" if server.leftover else ""
    if prepared:
        again = (f"; the prepared copy {prepared.database} (verified {prepared.ready_at:%H:%M} UTC, closed since) "
                 "is used: nothing to restore")
    elif unused:
        again += f"; the prepared copy is not used: {unused}, so the backup is restored as usual"
        await ctx.store.audit("bot", "prepared.not_used", environment=env.name, incident_id=ctx.incident.id,
                              run_id=ctx.run.id, reason=unused)
    return StepOutcome(
        f"backup {backup.describe()}: {len(toc.entries)} items in its table of contents; "
        f"{env.target} reachable (PostgreSQL {server.version}), {readable.size(server.size)}; {server.disk}{again}", facts)


async def read_dump(ctx: RunContext) -> StepOutcome:
    """Read and decompress every data block before the application is stopped.

    Only in the plan that stops the app right after (`stop_app = "immediately"`): a truncated or
    corrupt dump found here costs no downtime. It runs after the approval request is posted, so
    the approver reads while it runs (about 13 s per GB of dump on 2 cores). With "at_swap"
    nothing is stopped or changed before the swap, and the restore reads every block itself: a
    damaged dump fails it, the copy is dropped, live and the app are untouched.
    """
    prepared = _facts(ctx).prepared
    if prepared:
        return StepOutcome(f"not needed: the prepared copy {prepared.database} was restored from this backup and "
                           f"verified against its manifest at {prepared.ready_at:%H:%M:%S} UTC")
    try:
        seconds = await read_all_data(_backup(ctx))
    except BackupProblem as problem:
        raise StepFailed(str(problem)) from None
    return StepOutcome(f"every data block read and decompressed in {readable.duration(seconds)}: the dump is whole")


async def stop_app(ctx: RunContext) -> StepOutcome:
    detail = await appctl.run_commands(ctx.environment, "stop")
    await ctx.announce(app_stopped=True)
    return StepOutcome(detail)


async def restore_aside(ctx: RunContext) -> StepOutcome:
    """pg_restore into a new database beside the live one; nothing live is touched."""
    env = ctx.environment
    live, aside, _ = names(ctx)
    prepared = _facts(ctx).prepared
    if prepared:
        took = f" (its restore took {readable.duration(prepared.restore_seconds)} then)" if prepared.restore_seconds else ""
        return StepOutcome(f"nothing to restore: the prepared copy {prepared.database}, verified at "
                           f"{prepared.ready_at:%H:%M:%S} UTC, is used{took}")
    async with await pg.admin(env) as conn:
        if ctx.facts.get("leftover_aside"):
            await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(aside)))
        await pg.create_database_like(conn, live, aside)
    await ctx.remember({"aside_created": True})
    log_path = ctx.settings.logs_dir / f"{ctx.run.id}-restore.log"
    progress = await progress_for(env, _backup(ctx))
    ctx.track(progress)
    try:
        result = await restore_into(env, _backup(ctx), aside, progress, log_path)
    except RestoreFailed as failed:
        raise StepFailed(str(failed)) from None
    async with await pg.admin(env) as conn:
        copied = await pg.copy_database_properties(conn, live, aside)
    rate = _facts(ctx).backup.size / result.seconds / 2**20 if result.seconds else 0
    await ctx.remember({"restore_seconds": result.seconds, "restore_log": str(log_path)})
    return StepOutcome(
        f"restored into {aside} in {readable.duration(result.seconds)} with {env.restore_jobs} job(s) "
        f"({rate:.1f} MB/s of dump); copied from {live}: owner{', ' + ', '.join(copied) if copied else ''}")


async def verify(ctx: RunContext) -> StepOutcome:
    env = ctx.environment
    _, aside, _ = names(ctx)
    if _facts(ctx).prepared:
        copy = await prepared_use.still_unchanged(ctx)
        return StepOutcome(f"{aside} is unchanged since it was verified against the manifest at "
                           f"{copy.ready_at:%H:%M:%S} UTC: closed to connections since, its pg_database row as it was",
                           {"row_counts": copy.row_counts})
    backup = _backup(ctx)
    toc, manifest = await together(read_toc(backup), asyncio.to_thread(load_manifest, backup.path))
    result = await verify_restored(lambda: pg.connect(env, aside), toc, manifest, jobs=env.restore_jobs)
    if not result.ok:
        shown = ", ".join(result.missing[:8]) + (f" and {len(result.missing) - 8} more" if len(result.missing) > 8 else "")
        raise StepFailed(f"the restored copy lacks {len(result.missing)} object(s) of the backup: {shown}")
    return StepOutcome(f"pg_restore reported no errors; {result.summary()}; {result.manifest_note}",
                       {"row_counts": result.row_counts})


def _backup(ctx: RunContext) -> BackupFile:
    return _facts(ctx).backup.file()


async def swap(ctx: RunContext) -> StepOutcome:
    live, aside, keep_as = names(ctx)
    # Written before anything is renamed: without it, a later "the server did not answer" can
    # only mean the swap never began, and live is known to be untouched.
    prepared = _facts(ctx).prepared
    if prepared:  # proven once more right before, then given live's owner, grants and settings
        await prepared_use.still_unchanged(ctx)
        async with await pg.admin(ctx.environment) as conn:
            await pg.copy_database_properties(conn, live, aside)
    async with await pg.admin(ctx.environment) as conn:
        # Who is who before anything is renamed: after a crash inside the swap, reconcile proves by these
        # that the live name still holds the database that was live, and may re-open it.
        identity = await pg.database_identities(conn, [live, aside])
        await ctx.remember({**facts_update(swap=Swap.UNDER_WAY), "swap_identity": identity})
        result = await pg.swap_databases(conn, live=live, restored=aside, keep_as=keep_as)
    await ctx.remember({**facts_update(swap=Swap.DONE), "swap_window_seconds": result.window_seconds})
    if prepared:
        await ctx.store.update_prepared(prepared.id, state=PreparedState.USED, note=f"swapped in by {ctx.run.id}")
    return StepOutcome(f"{live} is now the restored copy; the failed database is kept as {keep_as}; "
                       f"{result.sessions_terminated} session(s) ended; {live} was closed for {result.window_seconds:.2f} s")


async def start_app(ctx: RunContext) -> StepOutcome:
    started = await appctl.run_commands(ctx.environment, "start")
    await ctx.announce(app_stopped=False)
    healthy = await appctl.wait_healthy(ctx.environment)
    return StepOutcome(f"{started}; {healthy}")


async def smoke(ctx: RunContext) -> StepOutcome:
    return StepOutcome(await appctl.run_smoke_checks(ctx.environment))


async def resolve(ctx: RunContext) -> StepOutcome:
    await ctx.announce(alert_status=AlertStatus.RESOLVED, status=IncidentStatus.RESOLVED)
    return StepOutcome(f"{ctx.incident.id} resolved")


async def report(ctx: RunContext) -> StepOutcome:
    path = await write_report(ctx.settings, ctx.store, ctx.incident.id)
    ctx.emit(ReportWritten(await ctx.store.incident(ctx.incident.id), str(path)))
    return StepOutcome(f"incident report written to {path.name}", {"report_path": str(path)})


def preview(ctx: RunContext) -> ApprovalPreview:
    env = ctx.environment
    live, aside, keep_as = names(ctx)
    backup = _backup(ctx)
    actions = []
    if env.stop_app == "at_swap":
        actions.append("Stop the application (" + ("; ".join(" ".join(a) for a in env.stop) or "no stop command configured") + ")")
    prepared = _facts(ctx).prepared
    actions += [
        (f"Use the prepared copy `{aside}` from {prepared.ready_at:%H:%M} UTC: restored from this backup and "
         "verified against its manifest then, closed to connections since (proven again before the swap); "
         "nothing to restore" if prepared else f"Wait until the restored copy `{aside}` is verified against the backup"),
        f"Close `{live}` to new connections and end its open sessions",
        f"Rename `{live}` → `{keep_as}` (kept for forensics; the bot never drops it)",
        f"Rename `{aside}` → `{live}` (both renames in one transaction)",
        "Start the application, wait for its health check, run the smoke checks",
    ]
    return ApprovalPreview(
        title=f"Full rollback of {env.name}",
        actions=tuple(actions),
        facts=(("Target", env.target), ("Backup", backup.describe()), ("Failed database kept as", keep_as),
               ("Prepared copy" if prepared else "Restored copy", aside),
               ("Requested by", f"<@{ctx.run.requested_by}>")),
        confirm=(f"Replace {live} with the copy restored from {backup_name(env)} of "
                 f"{backup.created:%Y-%m-%d %H:%M} UTC? The current {live} is kept as {keep_as}."),
    )


async def reconcile(ctx: RunContext) -> None:
    """After a failure or a crash, read where the databases stand instead of trusting memory: a
    lost connection may hide a committed swap, a crash may leave the live database closed."""
    if _facts(ctx).databases is None:
        return  # preflight did not pass: nothing was created or changed
    live, aside, keep_as = names(ctx)
    try:
        async with await pg.admin(ctx.environment) as conn:
            kept, copy = await pg.database_exists(conn, keep_as), await pg.database_exists(conn, aside)
            open_to_clients = await pg.scalar(conn, "SELECT datallowconn FROM pg_database WHERE datname = %s", (live,))
    except Exception:
        if _facts(ctx).swap is not Swap.NOT_DONE:
            await ctx.remember(facts_update(swap=Swap.UNKNOWN))
        else:  # the swap never began: live is untouched whatever the server says now
            await ctx.remember({"server_unreachable": True})
        return
    # A prepared copy is never the run's to drop: only a copy this run restored is.
    await ctx.remember({**facts_update(swap=Swap.DONE if kept and not copy else Swap.NOT_DONE),
                        "aside_created": copy and _facts(ctx).prepared is None,
                        "live_refuses_connections": open_to_clients is False})
    if open_to_clients is False and not kept and copy:
        await _reopen_if_proven(ctx)


async def _reopen_if_proven(ctx: RunContext) -> None:
    """The swap closes live to new connections before its renames, outside their transaction: a crash in
    between leaves it closed although the renames were rolled back. Re-opened here only where it is
    provably the database that was live: the live name holds the same database (oid) it held when the swap
    began, the restored copy is still under its own name with its own oid, and there is no kept copy — so
    neither rename happened, and the only change is the closing, which is undone to what it was before."""
    live, aside, _ = names(ctx)
    before = ctx.facts.get("swap_identity")
    if not before:
        return  # a swap that recorded nothing (an older run): a person decides, as the message says
    async with await pg.admin(ctx.environment) as conn:
        now = await pg.database_identities(conn, [live, aside])
        if now.get(live, {}).get("oid") != before.get(live, {}).get("oid") or \
                now.get(aside, {}).get("oid") != before.get(aside, {}).get("oid"):
            return
        allowed = bool(before[live]["allow_connections"])
        await conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            sql.Identifier(live), sql.Literal(allowed)))
    await ctx.store.audit("bot", "swap.reopened", environment=ctx.environment.name, incident_id=ctx.incident.id,
                          run_id=ctx.run.id, database=live, oid=before[live]["oid"],
                          reason="the interrupted swap had closed it; the same database, never renamed")
    await ctx.remember({"live_refuses_connections": not allowed, "live_reopened": allowed})


async def abort(ctx: RunContext) -> str:
    """Undo what is safe to undo: the aside copy if it was never swapped in; an app stopped only for the swap."""
    done = []
    facts = _facts(ctx)
    if facts.swap is Swap.UNKNOWN:
        return "Nothing was cleaned up: the server could not be asked where the databases stand."
    if ctx.facts.get("aside_created") and not facts.swapped:
        _, aside, _ = names(ctx)
        try:
            async with await pg.admin(ctx.environment) as conn:
                await pg.drop_database(conn, aside)
            done.append(f"The restored copy {aside} was dropped.")
        except Exception:  # the server is down or refusing: the copy may remain, so name it
            done.append(f"The restored copy `{aside}` could not be dropped (the server did not answer): once the "
                        f"server is back, run `/rollback cleanup {ctx.environment.name}` (it asks an approver).")
    if facts.app_stopped and not facts.swapped and ctx.environment.stop_app == "at_swap":
        # The app was up on the live database before the swap window; put it back as it was.
        await appctl.run_commands(ctx.environment, "start")
        await ctx.announce(app_stopped=False)
        done.append("The application, stopped only for the swap, was started again.")
    return " ".join(done)


def outcome(ctx: RunContext, state: RunState, failed_step: str | None) -> RunOutcome:
    live, _, keep_as = names(ctx)
    facts = _facts(ctx)
    if state is RunState.SUCCEEDED:
        return RunOutcome(f"`{live}` holds the backup of {_backup(ctx).created:%Y-%m-%d %H:%M} UTC; "
                       f"the failed database is kept as `{keep_as}`.")
    if facts.swap is Swap.UNKNOWN:
        return RunOutcome(f"Unknown: the server did not answer. If a database `{keep_as}` exists, the swap is done and "
                       f"`{live}` holds the restored backup; otherwise `{live}` is untouched.",
                       "Check the server, then look for those names (`\\l`) before doing anything else.")
    if not facts.swapped:
        advice = ("The application is still stopped (this rollback stopped it): start it again with the "
                  "environment's start command once you have decided what to do." if facts.app_stopped and
                  ctx.environment.stop_app == "immediately" else "")
        if state.failed:
            advice = f"Fix what the ❌ step reports, then run `/rollback full {ctx.environment.name}` again. {advice}"
        if ctx.facts.get("live_reopened"):
            advice += (f" The interrupted swap had closed `{live}` to new connections; the bot re-opened it, as it "
                       "was: it is provably the same database (same oid, never renamed; the restored copy is still "
                       "under its own name).")
        elif ctx.facts.get("live_refuses_connections"):
            advice += (f" `{live}` refuses new connections (the swap had closed it): "
                       f"run `ALTER DATABASE {live} WITH ALLOW_CONNECTIONS true` once you are ready.")
        return RunOutcome(f"Nothing was changed: `{live}` is untouched.", advice.strip())
    step = {"start_app": "the application did not start or did not become healthy",
            "smoke": "the application started but smoke checks failed"}.get(
        failed_step or "", "the application has not been started again yet")
    return RunOutcome(
        f"The swap is done: `{live}` holds the restored backup; the failed database is kept as `{keep_as}`.",
        f"Only the application is left: {step}. Fix it and start it with the environment's start command; "
        "the database needs no further action.")


def build_plan(stop_app_mode: str) -> Plan:
    """The plan for an environment whose `stop_app` is `stop_app_mode` ("immediately" or "at_swap")."""
    stop_now = stop_app_mode == "immediately"
    steps = [
        Step("declare", "Declare the incident", declare),
        Step("preflight", "Preflight: backup, target, disk", preflight),
        *([Step("read_dump", "Read the whole backup", read_dump, interruptible=True),
           Step("stop_app", "Stop the application", stop_app)] if stop_now else []),
        Step("restore_aside", "Restore the backup aside", restore_aside, interruptible=True),
        Step("verify", "Verify the restored copy", verify, interruptible=True),
        *([] if stop_now else [Step("stop_app", "Stop the application for the swap", stop_app, destructive=True)]),
        Step("swap", "Swap the restored copy in", swap, destructive=True),
        Step("start_app", "Start the application", start_app),
        Step("smoke", "Run the smoke checks", smoke),
        Step("resolve", "Resolve the incident", resolve),
        Step("count_writes", "Count the writes made after the backup", writes.count_writes),
        Step("report", "Write the incident report", report),
    ]
    # The approval is asked as soon as preflight passes: the restore runs while the approver reads.
    gate = next(i for i, step in enumerate(steps) if step.destructive)
    steps[gate] = replace(steps[gate], ask_approval_after="preflight", preview=preview)
    return Plan("full", "Full rollback", tuple(steps), abort=abort, outcome=outcome, reconcile=reconcile,
                approval_inputs=backup_inputs)


SPEC = PlanSpec("full", "Full rollback", lambda env, args: build_plan(env.stop_app), level=3)
