"""`/rollback full staging` end to end: real Bolt over HTTP, real PostgreSQL, real pg_restore,
the project's fake Slack. Assertions are on what Slack received and on the databases."""

from __future__ import annotations

import asyncio
import json

from conftest import (
    APPROVER,
    APPROVER_2,
    CHANNEL,
    GROUP_MEMBER,
    LEAD,
    OPERATOR,
    Harness,
    database_names,
    dsn_of,
)
from demo.fingerprint import diff, fingerprint

WAIT = 90.0


async def start_rollback(h: Harness, user: str = OPERATOR):
    reply = await h.slack.send_command(user, "full staging", channel_id=CHANNEL)
    assert reply.status == 200, reply.body
    return reply


async def approval_message(h: Harness):
    return await h.slack.wait_for_message(CHANNEL, "Approval needed", timeout=WAIT)


async def run_end(h: Harness, expected: str):
    """The first message that ends a run (RESOLVED, a failure or a denial); it must contain `expected`."""
    ending = await h.slack.wait_for(
        lambda: next((m for m in h.slack.messages(CHANNEL, include_replies=True)
                      if any(mark in m.text for mark in ("INCIDENT RESOLVED", "failed at", "was denied", "failed:"))), None),
        timeout=WAIT, what="the end of the run")
    assert expected in ending.all_text(), ending.all_text()
    return ending


def audit_actions(h: Harness) -> list[tuple[str, str, str]]:
    return [(e.actor, e.action, e.outcome) for e in h.runtime.deps.store.sync.audit_events()]


async def test_full_rollback_restores_the_backup_and_keeps_the_failed_database(harness: Harness):
    h = harness
    reply = await start_rollback(h)
    assert reply.elapsed_ms < 3000
    started = await h.slack.wait_for_ephemeral(OPERATOR, "Started the full rollback", timeout=WAIT)
    assert "INC-" in started.all_text()

    alert = await h.slack.wait_for_message(CHANNEL, "INCIDENT ALERT", timeout=WAIT)
    request = await approval_message(h)
    text = request.all_text()
    failed_name = f"{h.crm.dbname}__failed_"
    assert "Approve" in text and "Deny" in text
    assert "staging_full_backup.dump" in text and failed_name in text and h.crm.dbname in text
    approve_button = next(e for b in request.blocks if b["type"] == "actions" for e in b["elements"]
                          if e["action_id"] == "approval-approve")
    assert approve_button["style"] == "danger" and "confirm" in approve_button

    click = await h.slack.click(APPROVER, request, "approval-approve")
    assert click.status == 200
    await run_end(h, "INCIDENT RESOLVED")
    await h.settle()

    # The live name holds exactly the backup's content; the failed database is kept, unchanged.
    assert diff(h.crm.before, await fingerprint(h.crm.dsn)) == []
    kept = {n for n in await database_names(h.crm.dbname) if n.startswith(failed_name)}
    assert len(kept) == 1
    assert diff(h.crm.after, await fingerprint(dsn_of(kept.pop()))) == []
    assert not any("__rollback_" in n for n in await database_names(h.crm.dbname))
    assert h.app.running

    # The alert was updated in place to RESOLVED; progress went into its thread.
    alert_now = next(m for m in h.slack.messages(CHANNEL) if m.ts == alert.ts)
    assert "RESOLVED" in alert_now.all_text() and alert_now.edited
    thread = "\n".join(m.all_text() for m in h.slack.replies(CHANNEL, alert.ts))
    for title in ("Declare the incident", "Preflight", "Stop the application", "Restore the backup aside",
                  "Verify the restored copy", "Swap the restored copy in", "Start the application",
                  "Run the smoke checks", "Resolve the incident", "Write the incident report"):
        assert f"✅ {title}" in thread, title
    assert f"Approved by <@{APPROVER}>" in thread

    # The approval message now says who approved, and has no buttons left.
    decided = next(m for m in h.slack.messages(CHANNEL) if m.ts == request.ts)
    assert "Approved" in decided.all_text() and APPROVER in decided.all_text()
    assert not any(b["type"] == "actions" for b in decided.blocks)

    # The report: written beside the audit database, uploaded, with the real timeline.
    report_file = next(f for f in h.slack.files if f.title.startswith("Incident report"))
    report = report_file.content.decode()
    assert report == (h.settings.reports_dir / report_file.name).read_text()
    for heading in ("## Timeline", "## Root Cause", "## What Failed", "## Resolution", "## Prevention", "## Sign-offs"):
        assert heading in report
    assert "- Rollback initiated: 20" in report and "- Incident closed: 20" in report
    assert f"**Approved by**: {APPROVER}" in report

    # The audit trail shows who asked and who approved.
    actions = audit_actions(h)
    assert (OPERATOR, "full.started", "ok") in actions
    assert (APPROVER, "approved", "ok") in actions
    assert ("bot", "run.succeeded", "ok") in actions
