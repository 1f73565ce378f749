"""What the tests do and wait for on the Slack side: commands, approval clicks, the end of a run."""

from __future__ import annotations

from support.harness import APPROVER, CHANNEL, OPERATOR, Harness

WAIT = 90.0
STEP_TITLES = ("Declare the incident", "Preflight", "Read the whole backup", "Stop the application",
               "Restore the backup aside", "Verify the restored copy", "Swap the restored copy in",
               "Start the application", "Run the smoke checks", "Resolve the incident", "Count the writes made after the backup",
               "Write the incident report")


async def start_rollback(h: Harness, user: str = OPERATOR):
    reply = await h.slack.send_command(user, "full staging", channel_id=CHANNEL)
    assert reply.status == 200, reply.body
    return reply


async def ask(h: Harness, text: str, expected: str, user: str = OPERATOR):
    """`/rollback <text>`: acked within Slack's 3 s, then the ephemeral answer containing `expected`."""
    reply = await h.slack.send_command(user, text)
    assert reply.status == 200 and reply.elapsed_ms < 3000
    return await h.slack.wait_for_ephemeral(user, expected, timeout=WAIT)


async def approval_message(h: Harness):
    return await h.slack.wait_for_message(CHANNEL, "Approval needed", timeout=WAIT)


async def approve_and_finish(h: Harness, verb: str):
    """Approve the pending request as APPROVER, wait for the run to end and every message to go out;
    returns the approval message."""
    request = await approval_message(h)
    await h.slack.click(APPROVER, request, "approval-approve")
    await h.slack.wait_for_message(CHANNEL, "🏁", timeout=WAIT)
    await h.settle()
    assert (OPERATOR, f"{verb}.started", "ok") in audit_actions(h) and (APPROVER, "approved", "ok") in audit_actions(h)
    return request


async def run_end(h: Harness, expected: str):
    """The first message that ends a run (RESOLVED, a failure or a denial); it must contain `expected`."""
    ending = await h.slack.wait_for(
        lambda: next((m for m in h.slack.messages(CHANNEL, include_replies=True)
                      if m.reply_broadcast or m.text.startswith("✅ INCIDENT RESOLVED")), None),
        timeout=WAIT, what="the end of the run")
    assert expected in ending.all_text(), ending.all_text()
    return ending


async def run_failure(h: Harness, contains: str):
    """The latest message that ends a failed, refused or denied run and contains `contains`."""
    found = await h.slack.wait_for(lambda: [m for m in h.slack.messages(CHANNEL, include_replies=True)
                                            if m.reply_broadcast and contains in m.all_text()],
                                   timeout=WAIT, what=f"a run end with {contains!r}")
    return found[-1]


def thread(h: Harness) -> str:
    """Everything in the incident channel, threads included, as one text."""
    return "\n".join(m.all_text() for m in h.slack.messages(CHANNEL, include_replies=True))


def lines(h: Harness) -> list[str]:
    """Every line of every message's fallback text in the incident channel, threads included, in
    order: progress lines that piled up behind Slack's pace arrive together, as one message."""
    return [line for m in h.slack.messages(CHANNEL, include_replies=True) for line in m.text.splitlines()]


def audit_actions(h: Harness) -> list[tuple[str, str, str]]:
    return [(e.actor, e.action, e.outcome) for e in h.store().audit_events()]
