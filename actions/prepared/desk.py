"""`/rollback prepare <env>`: before a migration, make the full rollback an approval and a swap.

One prepare per environment at a time, beside any incident (none is open yet: nothing has gone wrong):
1. preflight: live exists, the role may create databases, a rollback is not running, and there is room
   for the backup and the copy (the runbook's 2× rule: twice the live database's size free);
2. a backup now, as `/rollback backup` takes it (the runbook's layout, with its manifest);
3. restored into `<db>__prepared_<id>` with `restore_jobs` jobs, its progress shown as a restore's;
4. verified against the manifest: every object, every table's row count and checksum;
5. closed to connections, and the proof kept (`proof.py`); only now is it `ready`, and only now are
   earlier copies of the environment dropped (replaced).

Every phase is written to the store and audited, then announced (`PrepareChanged`). A failure drops the
half-made copy; a crash leaves its row `preparing`, which the next start turns into `failed` and whose
copy the start-up scan offers to clean up, like a restore aside: nothing half-made is ever `ready`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import readable
from actions.backups.files import BackupFile, backup_file, fingerprint, read_toc
from actions.backups.manifest import load_manifest
from actions.backups.restore import RestoreFailed, progress_for, restore_into
from actions.backups.take import BackupFailed, take_backup
from actions.backups.verify import verify_restored
from actions.config import Environment, Settings
from actions.engine.boundaries import boundary
from actions.engine.events import Emit, PrepareChanged
from actions.engine.plan import StepFailed
from actions.engine.progress import RestoreProgress
from actions.postgres import server as pg
from actions.prepared.proof import close_and_prove
from actions.redact import Redactor
from actions.results import NotPossible, PrepareStarted
from actions.store.records import Actor, PreparedCopy, PreparedState, utcnow
from actions.store.sqlite import AsyncStore

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 5.0  # how often the restore's progress is announced
ROOM_FACTOR = 2  # the runbook's Contingency 3: twice the database's size free


class PrepareFailed(Exception):
    """A phase could not be done; the message says what and what to do."""


class PrepareDesk:
    def __init__(self, settings: Settings, store: AsyncStore, emit: Emit, redact: Redactor):
        self.settings = settings
        self.store = store
        self.emit = emit
        self.redact = redact
        self._tasks: dict[str, asyncio.Task] = {}
        self._progress: dict[str, RestoreProgress] = {}

    async def start(self, actor: Actor, environment: str) -> PrepareStarted | NotPossible:
        env = self.settings.environments[environment]
        if any(run.environment == environment for run in await self.store.runs(active=True)):
            return NotPossible(f"a rollback of {environment} is running; prepare before a migration, not during one")
        copy_id = utcnow().strftime("%Y%m%dt%H%M%S")
        database = f"{env.database}__prepared_{copy_id}"
        if len(database.encode()) > pg.MAX_IDENTIFIER_BYTES:
            return NotPossible(f"the copy's name {database} would be longer than PostgreSQL's 63 bytes; use a shorter "
                               "database name for this environment")
        copy = await self.store.start_prepared(copy_id, environment, database, actor.user_id)
        if copy is None:
            under_way = (await self.store.prepared_copies(environment=environment,
                                                          states=(PreparedState.PREPARING,)))
            if under_way:
                return NotPossible(f"a prepare of {environment} is already under way (started "
                                   f"{under_way[0].started_at:%H:%M:%S} UTC by <@{under_way[0].requested_by}>)")
            return NotPossible("a prepare was asked within the same second; try again")
        await self.store.audit(actor.user_id, "prepare.started", environment=environment, copy=database)
        self._tasks[environment] = asyncio.create_task(self._prepare(env, copy), name=f"prepare {environment}")
        self.emit(PrepareChanged(copy, "preflight", "checking the server, the rights and the disk"))
        return PrepareStarted(copy, self.settings.bot.incident_channel)

    async def wait_idle(self) -> None:
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def stop_all(self) -> None:
        """Stop the prepares under way: their rows stay `preparing`, and the next start ends them as failed."""
        for task in self._tasks.values():
            task.cancel()
        await self.wait_idle()

    def progress(self, environment: str) -> RestoreProgress | None:
        return self._progress.get(environment)

    # -- the work --------------------------------------------------------------------------------

    async def _prepare(self, env: Environment, copy: PreparedCopy) -> None:
        created = False
        try:
            boundary("prepare", "preflight", "started")
            live_size = await self._preflight(env, copy)
            boundary("prepare", "preflight", "acted")
            self.emit(PrepareChanged(copy, "backup", f"taking a backup of {env.target} with its manifest"))
            boundary("prepare", "backup", "started")
            taken = await take_backup(env)
            boundary("prepare", "backup", "acted")
            _, sha256 = await fingerprint(taken.path)
            backup = await asyncio.to_thread(backup_file, taken.path)
            copy = await self.store.update_prepared(
                copy.id, backup_path=str(taken.path), backup_sha256=sha256, backup_created=backup.created,
                backup_size=taken.size, backup_seconds=taken.seconds)
            await self.store.audit("bot", "prepare.backup", environment=env.name, backup=str(taken.path),
                                   bytes=taken.size, seconds=round(taken.seconds, 3))
            self.emit(PrepareChanged(copy, "restore", f"backup {backup.describe()} taken in "
                                     f"{readable.duration(taken.seconds)}; restoring it into {copy.database}"))
            boundary("prepare", "restore", "started")
            async with await pg.admin(env) as conn:
                await pg.create_database_like(conn, env.database, copy.database)
            created = True
            restore_seconds = await self._restore(env, copy, backup)
            boundary("prepare", "restore", "acted")
            copy = await self.store.update_prepared(copy.id, restore_seconds=restore_seconds)
            self.emit(PrepareChanged(copy, "verify", f"restored in {readable.duration(restore_seconds)}; verifying "
                                     "every object, row count and checksum against the manifest"))
            boundary("prepare", "verify", "started")
            toc, manifest = await read_toc(backup), await asyncio.to_thread(load_manifest, backup.path)
            try:
                result = await verify_restored(lambda: pg.connect(env, copy.database), toc, manifest,
                                               jobs=env.restore_jobs)
            except StepFailed as mismatch:
                raise PrepareFailed(str(mismatch)) from None
            if not result.ok:
                raise PrepareFailed(f"the copy lacks {len(result.missing)} object(s) of the backup: "
                                    + ", ".join(result.missing[:8]))
            boundary("prepare", "verify", "acted")
            boundary("prepare", "ready", "started")
            async with await pg.admin(env) as conn:
                proof = await close_and_prove(conn, copy.database)
                size = await pg.scalar(conn, "SELECT pg_database_size(%s)", (copy.database,))
            boundary("prepare", "ready", "acted")
            copy = await self.store.update_prepared(
                copy.id, state=PreparedState.READY, ready_at=utcnow(), proof=proof.as_dict(), size=size,
                row_counts=result.row_counts)
            boundary("prepare", "replace", "started")
            replaced = await self._replace_older(env, copy)
            boundary("prepare", "replace", "acted")
            await self.store.audit("bot", "prepare.ready", environment=env.name, copy=copy.database,
                                   backup=copy.backup_path, verified=result.summary(), replaced=", ".join(replaced),
                                   live_bytes=live_size)
            self.emit(PrepareChanged(copy, "ready", f"{result.summary()}; {result.manifest_note}",
                                     replaced=tuple(replaced)))
        except asyncio.CancelledError:
            raise  # the bot is stopping: the row stays `preparing`; the next start ends it and offers the clean-up
        except Exception as exc:
            reason = self.redact(str(exc) if isinstance(exc, (PrepareFailed, BackupFailed, RestoreFailed))
                                 else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            if not isinstance(exc, (PrepareFailed, BackupFailed, RestoreFailed)):
                log.exception("prepare of %s failed", env.name)
            dropped = await self._drop(env, copy.database) if created else None
            copy = await self.store.update_prepared(copy.id, state=PreparedState.FAILED, note=reason)
            await self.store.audit("bot", "prepare.failed", outcome="failed", environment=env.name,
                                   copy=copy.database, reason=reason)
            self.emit(PrepareChanged(copy, "failed", reason + ("" if dropped is None else f"; {dropped}")))
        finally:
            self._progress.pop(env.name, None)
            self._tasks.pop(env.name, None)

    async def _preflight(self, env: Environment, copy: PreparedCopy) -> int:
        try:
            conn = await pg.admin(env)
        except Exception as exc:
            raise PrepareFailed(f"cannot connect to {env.target}: {str(exc).splitlines()[0]}") from None
        async with conn:
            if not await pg.database_exists(conn, env.database):
                raise PrepareFailed(f"the live database {env.database} does not exist on {env.target}")
            if not await pg.may_swap(conn, env.database):
                raise PrepareFailed("the configured role may not create and rename databases: it needs to be superuser, "
                                    f"or to have CREATEDB and be a member of {env.database}'s owner role")
            if await pg.database_exists(conn, copy.database):
                raise PrepareFailed(f"{copy.database} exists already")
            size = await pg.scalar(conn, "SELECT pg_database_size(%s)", (env.database,))
            room = await pg.free_space(conn, env.database)
        if room is not None and room[0] < ROOM_FACTOR * size:
            raise PrepareFailed(f"not enough disk: {readable.size(room[0])} free in {room[1]}, and the runbook asks "
                                f"for twice the database's size ({readable.size(ROOM_FACTOR * size)}) for the "
                                "backup and the copy. Free space or add storage, then prepare again")
        return size

    async def _restore(self, env: Environment, copy: PreparedCopy, backup: BackupFile) -> float:
        progress = await progress_for(env, backup)
        self._progress[env.name] = progress

        async def report_progress() -> None:
            while True:
                await asyncio.sleep(PROGRESS_SECONDS)
                self.emit(PrepareChanged(copy, "restore", "", progress.view("restore")))

        ticker = asyncio.create_task(report_progress())
        try:
            started = time.monotonic()
            await restore_into(env, backup, copy.database, progress,
                               self.settings.logs_dir / f"prepare-{env.name}-{copy.id}-restore.log")
            return time.monotonic() - started
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def _replace_older(self, env: Environment, newest: PreparedCopy) -> list[str]:
        """Drop the environment's earlier ready copies, now that a newer one is verified."""
        replaced = []
        for older in await self.store.prepared_copies(environment=env.name, states=(PreparedState.READY,)):
            if older.id == newest.id:
                continue
            note = await self._drop(env, older.database)
            await self.store.update_prepared(older.id, state=PreparedState.REPLACED, note=f"replaced by {newest.database}")
            await self.store.audit("bot", "prepare.replaced", environment=env.name, copy=older.database,
                                   by_copy=newest.database, dropped=note)
            replaced.append(older.database)
        return replaced

    async def _drop(self, env: Environment, database: str) -> str:
        try:
            async with await pg.admin(env) as conn:
                await pg.drop_database(conn, database)  # a copy closed to connections drops all the same
            return f"{database} was dropped"
        except Exception as exc:
            return (f"{database} could not be dropped ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}): "
                    f"`/rollback unprepare {env.name}` removes it")
