"""The command line's way into what the slash commands do, without a running bot: `rollback-bot backup` and
`rollback-bot prepare` (audited as `cli`). The read-only commands use `Ledger` (`actions/service.py`)."""

from __future__ import annotations

from typing import Callable

from actions.backups.inspection import backup_now
from actions.config import Settings
from actions.engine.events import PrepareChanged
from actions.prepared.desk import PrepareDesk
from actions.redact import Redactor, dsn_secrets
from actions.results import NotPossible
from actions.service import Ledger
from actions.store.records import Actor, PreparedCopy, PreparedState, Role
from actions.store.sqlite import AsyncStore, Store


async def backup_from_terminal(settings: Settings, environment: str):
    """`rollback-bot backup --config FILE ENV`: the backup, or a problem in words (audited as `cli`)."""
    result = await backup_now(settings.environments[environment])
    if not isinstance(result, str):
        with Ledger(settings) as ledger:
            ledger.audit("cli", "backup", environment=environment, backup=str(result.path), bytes=result.size)
    return result


async def prepare_from_terminal(settings: Settings, environment: str, say: Callable[[str], None]) -> PreparedCopy | str:
    """`rollback-bot prepare --config FILE ENV`: the same prepare as `/rollback prepare`, told line by line
    through `say`, audited as `cli`. The ready copy, or why it could not be made."""
    store = AsyncStore(Store(settings.bot.audit_db))
    ended: list[PreparedCopy] = []

    def emit(event) -> None:
        if isinstance(event, PrepareChanged):
            percent = (f" {100 * event.progress.done // event.progress.total}%"
                       if event.progress and event.progress.total else "")
            say(f"{event.phase}{percent}: {event.detail}" if event.detail or percent else event.phase)
            if event.phase in ("ready", "failed"):
                ended.append(event.copy)

    desk = PrepareDesk(settings, store, emit, Redactor(dsn_secrets(
        settings.environments[environment].resolved_dsn.get_secret_value())))
    try:
        started = await desk.start(Actor("cli", frozenset({Role.OPERATOR})), environment)
        if isinstance(started, NotPossible):
            return started.reason
        await desk.wait_idle()
    finally:
        store.close()
    copy = ended[-1] if ended else None
    if copy is None or copy.state is not PreparedState.READY:
        return copy.note if copy and copy.note else "the prepare did not finish"
    return copy
