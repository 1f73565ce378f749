"""Fail-closed approvals: an approval expires when nobody decides in time, is void when the
backup it was bound to changes, and is asked again when the approved plan no longer matches its
binding. In each case the live database is untouched until a valid approval exists."""

from __future__ import annotations

import copy
import sqlite3

from actions.store.records import ApprovalState, StepState
from demo.fingerprint import diff, fingerprint
from support.harness import APPROVER, APPROVER_2, CHANNEL, OPERATOR, database_names, start_harness
from support.slack import WAIT, audit_actions, run_end, start_rollback


async def waiting_at_the_gate(h, request):
    """The approval message, once the run has reached its gate (restore and verify are done)."""
    await h.slack.wait_for(lambda: any(s.state is StepState.WAITING for r in h.store().runs()
                                       for s in h.store().steps(r.id)), timeout=WAIT, what="the run waiting")
    return request


async def approval(h):
    return await h.slack.wait_for_message(CHANNEL, "Approval needed", timeout=WAIT)


async def test_an_approval_nobody_decides_in_time_expires_and_can_no_longer_run(tmp_path, crm, stand_in):
    h = await start_harness(tmp_path, crm, stand_in, bot_extra="approval_ttl_seconds = 2", stop_app='"at_swap"')
    try:
        await start_rollback(h)
        request = await waiting_at_the_gate(h, await approval(h))
        stale = copy.deepcopy(request)  # the message as a client that has not refreshed still shows it
        ending = await run_end(h, "expired")
        assert "nobody decided within" in ending.all_text()
        await h.settle()
        click = await h.slack.click(APPROVER, stale, "approval-approve")  # the stale button, clicked late
        assert click.status == 200
        await h.slack.wait_for_ephemeral(APPROVER, "already expired", timeout=WAIT)
        [stored] = [a for r in h.store().runs() for a in h.store().approvals_of(r.id)]
        assert stored.state is ApprovalState.EXPIRED and stored.decided_by == "bot"
        decided = next(m for m in h.slack.messages(CHANNEL) if m.ts == request.ts)
        assert "Expired" in decided.all_text() and not any(b["type"] == "actions" for b in decided.blocks)
        assert diff(crm.after, await fingerprint(crm.dsn)) == []  # live untouched
        assert not any("__rollback_" in n for n in await database_names(crm.dbname))  # the aside was dropped
        assert h.app.running  # at_swap: it was never stopped
        actions = audit_actions(h)
        assert ("bot", "approval.expired", "refused") in actions and ("bot", "run.denied", "ok") in actions
        assert (APPROVER, "approved", "ok") not in actions
    finally:
        await h.close()


async def test_a_backup_changed_after_the_request_voids_the_approval_and_changes_nothing(tmp_path, crm, stand_in):
    h = await start_harness(tmp_path, crm, stand_in, stop_app='"at_swap"')
    try:
        await start_rollback(h)
        request = await waiting_at_the_gate(h, await approval(h))
        dump = next(crm.backup_root.glob("*/staging_full_backup.dump"))
        with dump.open("ab") as file:  # someone replaces or rewrites the backup while the approver reads
            file.write(b"\0")
        await h.slack.click(APPROVER, request, "approval-approve")
        ending = await run_end(h, "changed after the approval was asked")
        assert "nothing live was changed" in ending.all_text()
        await h.settle()
        assert diff(crm.after, await fingerprint(crm.dsn)) == []
        assert not any("__rollback_" in n for n in await database_names(crm.dbname))
        [stored] = [a for r in h.store().runs() for a in h.store().approvals_of(r.id)]
        assert stored.state is ApprovalState.SUPERSEDED
        decided = next(m for m in h.slack.messages(CHANNEL) if m.ts == request.ts)
        assert "Superseded" in decided.all_text()
        assert ("bot", "approval.superseded", "refused") in audit_actions(h)
    finally:
        await h.close()


async def test_an_approval_whose_binding_does_not_match_is_asked_again(tmp_path, crm, stand_in):
    """An approval row altered in the state database (its binding no longer the plan's) opens
    nothing: a new approval is asked, and only that one lets the rollback go on."""
    h = await start_harness(tmp_path, crm, stand_in, stop_app='"at_swap"')
    try:
        await start_rollback(h)
        first = await waiting_at_the_gate(h, await approval(h))
        conn = sqlite3.connect(h.settings.bot.audit_db)
        conn.execute("UPDATE approvals SET binding = 'forged'")
        conn.commit()
        conn.close()
        await h.slack.click(APPROVER, first, "approval-approve")
        second = await h.slack.wait_for(lambda: next((m for m in h.slack.messages(CHANNEL)
                                                      if "Approval needed" in m.all_text() and m.ts != first.ts), None),
                                        timeout=WAIT, what="a second approval request")
        assert diff(crm.after, await fingerprint(crm.dsn)) == []  # nothing ran on the first approval
        await h.slack.click(APPROVER_2, second, "approval-approve")
        await run_end(h, "INCIDENT RESOLVED")
        await h.settle()
        assert diff(crm.before, await fingerprint(crm.dsn)) == []
        states = [a.state for r in h.store().runs() for a in h.store().approvals_of(r.id)]
        assert states == [ApprovalState.SUPERSEDED, ApprovalState.APPROVED]
        assert ("bot", "approval.superseded", "refused") in audit_actions(h)
        assert (OPERATOR, "full.started", "ok") in audit_actions(h)
    finally:
        await h.close()
