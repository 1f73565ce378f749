"""Requests that arrive at the same time, through the real Bolt app over HTTP: a crowd of identical
commands, a crowd of Approve clicks, and two environments rolled back side by side.

tests/test_approvals.py already races two commands and five clicks; the crowds here are the
sizes issue 8 names (5 commands from two operators, 10 clicks from two approvers) and check the
store's rows, not only the replies.
"""

from __future__ import annotations

import asyncio
import time

from actions.store.records import IncidentStatus, RunState
from demo.fingerprint import diff, fingerprint
from support.harness import (
    APPROVER,
    APPROVER_2,
    CHANNEL,
    LEAD,
    OPERATOR,
    Harness,
    StandInApp,
    crm_database,
    database_names,
    dsn_of,
    start_harness,
)
from support.slack import WAIT, approval_message, audit_actions, run_end


def count(h: Harness, action: str) -> int:
    return sum(1 for _, a, _ in audit_actions(h) if a == action)


async def test_five_commands_open_one_incident_and_ten_clicks_run_the_swap_once(harness: Harness):
    h = harness
    started = time.perf_counter()
    commands = await asyncio.gather(*(h.slack.send_command(user, "full staging")
                                      for user in (OPERATOR, LEAD, OPERATOR, LEAD, OPERATOR)))
    assert all(r.status == 200 and r.elapsed_ms < 3000 for r in commands), [(r.status, r.elapsed_ms) for r in commands]
    await h.slack.wait_for(lambda: count(h, "full.started") + count(h, "full.busy") == 5, timeout=WAIT)
    assert count(h, "full.started") == 1 and count(h, "full.busy") == 4
    assert len(h.store().runs()) == 1
    assert len(list(h.store().db.query("SELECT id FROM incidents"))) == 1
    busy = await h.slack.wait_for(lambda: len([e for e in h.slack.ephemerals() if "already running" in e.text]) == 4,
                                  timeout=WAIT)
    assert busy

    request = await approval_message(h)
    # Neither approver asked for the rollback, so both may decide: the race is only about who is first.
    clicks = await asyncio.gather(*(h.slack.click(user, request, "approval-approve")
                                    for user in (APPROVER, APPROVER_2) * 5))
    assert all(r.status == 200 and r.elapsed_ms < 3000 for r in clicks), [(r.status, r.elapsed_ms) for r in clicks]
    await run_end(h, "INCIDENT RESOLVED")
    await h.settle()
    elapsed = time.perf_counter() - started

    approvals = list(h.store().db.query("SELECT state, decided_by FROM approvals"))
    assert len(approvals) == 1 and approvals[0]["state"] == "approved"
    assert approvals[0]["decided_by"] in (APPROVER, APPROVER_2)
    assert count(h, "approved") == 1 and count(h, "approve.too_late") == 9
    swap = [e for e in h.store().audit_events() if e.detail.get("step") == "swap"]
    assert [e.action for e in swap] == ["step.running", "step.succeeded"]  # the destructive step ran once
    run = h.store().runs()[0]
    assert run.state is RunState.SUCCEEDED
    assert diff(h.crm.before, await fingerprint(h.crm.dsn)) == []
    print(f"concurrency: 5 commands + 10 clicks, one run, swap once; {elapsed:.1f} s end to end")


def second_environment(name: str, crm, app: StandInApp) -> str:
    """An `[environments.<name>]` table for write_config's env_extra (it lands after staging's keys)."""
    return f"""
        [environments.{name}]
        dsn = "{crm.dsn}"
        backup_dir = "{crm.backup_root}"
        backup_name = "staging_full_backup.dump"  # crm_database labels every backup `staging`
        stop = [["rm", "-f", "{app.flag}"]]
        start = [["touch", "{app.flag}"]]
        stop_app = "immediately"
        health_url = "http://127.0.0.1:{app.port}/api/health"
        health_timeout_seconds = 10
        smoke = [{{ url = "http://127.0.0.1:{app.port}/api/sales", status = 200 }}]
        restore_jobs = 2
        """


async def test_two_environments_roll_back_side_by_side(tmp_path, crm, stand_in):
    (tmp_path / "qa").mkdir()
    async with crm_database(tmp_path / "qa") as qa:
        qa_app = StandInApp(tmp_path / "qa", qa.dsn)
        await qa_app.start()
        h = await start_harness(tmp_path, crm, stand_in, env_extra=second_environment("qa", qa, qa_app))
        try:
            started = time.perf_counter()
            replies = await asyncio.gather(h.slack.send_command(OPERATOR, "full staging"),
                                           h.slack.send_command(LEAD, "full qa"))
            assert all(r.status == 200 and r.elapsed_ms < 3000 for r in replies)
            # Both runs reach their gates: neither environment waited for the other.
            requests = await h.slack.wait_for(
                lambda: (lambda found: found if len(found) == 2 else None)(
                    [m for m in h.slack.messages(CHANNEL) if "Approval needed" in m.text]),
                timeout=WAIT, what="both approval requests")
            by_env = {("qa" if qa.dbname in m.all_text() else "staging"): m for m in requests}
            assert set(by_env) == {"staging", "qa"} and crm.dbname in by_env["staging"].all_text()
            pending = list(h.store().db.query("SELECT environment FROM approvals WHERE state = 'pending'"))
            assert sorted(p["environment"] for p in pending) == ["qa", "staging"]
            clicks = await asyncio.gather(h.slack.click(APPROVER, by_env["staging"], "approval-approve"),
                                          h.slack.click(APPROVER_2, by_env["qa"], "approval-approve"))
            assert all(c.status == 200 for c in clicks)
            await h.slack.wait_for(lambda: len([m for m in h.slack.messages(CHANNEL, include_replies=True)
                                                if m.text.startswith("✅ INCIDENT RESOLVED")]) == 2, timeout=WAIT)
            await h.settle()
            elapsed = time.perf_counter() - started

            incidents = {i["environment"]: i for i in h.store().db.query("SELECT * FROM incidents")}
            assert set(incidents) == {"staging", "qa"}
            assert all(i["status"] == IncidentStatus.RESOLVED.value for i in incidents.values())
            assert all(r.state is RunState.SUCCEEDED for r in h.store().runs())
            for database, app in ((crm, stand_in), (qa, qa_app)):
                assert diff(database.before, await fingerprint(database.dsn)) == []  # its own backup, nobody else's
                kept = [n for n in await database_names(database.dbname) if "__failed_" in n]
                assert len(kept) == 1 and diff(database.after, await fingerprint(dsn_of(kept[0]))) == []
                assert not any("__rollback_" in n for n in await database_names(database.dbname))
                assert app.running
            print(f"concurrency: staging and qa rolled back side by side in {elapsed:.1f} s")
        finally:
            await h.close()
            await qa_app.stop()
