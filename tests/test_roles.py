"""Roles on every verb and every button (issue 19): someone with no role walks every slash verb and every
action id the bot knows, through the real Bolt app. Each attempt is refused, the refusal names who may,
it is in the audit trail, and nothing changed: not the store, not the database.

The buttons are clicked on one message that carries every action id, with the values the bot itself
would give them (a real incident, a real run and a real pending approval): a role check must not depend
on which message a button came from.
"""

from __future__ import annotations

import json

from actions.permissions import BUTTONS, STARTS_PLAN, Who
from actions.verbs import VERBS, typed_verbs
from demo.fingerprint import fingerprint
from messages.ids import (
    ActionId,
    ApprovalButton,
    CallbackId,
    IncidentButton,
    RemedyButton,
    RunButton,
)
from support.harness import BYSTANDER, CHANNEL, OPERATOR, Harness
from support.slack import WAIT, approval_message, start_rollback

REFUSED = "🚫 Not done: only "

# What each typed verb needs after its name to get past the argument checks (the role comes first anyway).
WORDS = {"declare": "staging something broke", "tables": "staging customers", "rerun": "staging 007_phase4",
         "watch": "staging 10", "carry-over": "staging INC-20260101-0001", "restore-quarantine":
         "staging INC-20260101-0001", "report": "INC-20260101-0001"}


def test_every_button_and_form_has_a_declared_role():
    """The Slack side's ids and the declarations are one list: a new button cannot come without a role."""
    ids = {a.value for a in ActionId} | {c.value for c in CallbackId}
    assert ids == set(BUTTONS), ids ^ set(BUTTONS)
    for button, plan in STARTS_PLAN.items():  # a button that starts a plan asks what typing its verb asks
        assert plan is None or BUTTONS[button].who is VERBS[plan].who, button
    assert {v.name for v in VERBS.values() if v.who is Who.ANYONE} == {"status", "help"}  # read-only


async def state(h: Harness) -> tuple:
    store = h.store()
    incidents = [store.incident(r.incident_id) for r in store.runs()]
    return (tuple((i.id, i.status, i.level, i.alert_status, i.severity, i.root_cause) for i in incidents),
            tuple((r.id, r.state, r.plan) for r in store.runs()),
            tuple((a.id, a.state) for r in store.runs() for a in store.approvals_of(r.id)),
            tuple(json.dumps(store.checklist(i.id), sort_keys=True, default=str) for i in incidents),
            tuple(json.dumps(store.signoffs(i.id), sort_keys=True, default=str) for i in incidents),
            await fingerprint(h.crm.dsn))


def every_button(incident: str, run: str, approval: str) -> list[dict]:
    """One message's blocks with every action id the bot uses, each with the value the bot would give it."""
    on_incident = IncidentButton(incident=incident).model_dump_json()
    on_run = RunButton(incident=incident, run=run).model_dump_json()
    values = {ActionId.APPROVE: ApprovalButton(incident=incident, approval=approval).model_dump_json(),
              ActionId.DENY: ApprovalButton(incident=incident, approval=approval).model_dump_json(),
              ActionId.REMEDY: RemedyButton(environment="staging", kind="terminate", target={"pid": 1}).model_dump_json(),
              ActionId.RUN_AGAIN: on_run, ActionId.RETRY_APP: on_run, ActionId.CLEAN_UP: on_run}
    buttons = [{"type": "button", "action_id": f"{a.value}dba" if a is ActionId.SIGN_OFF_PREFIX else a.value,
                "text": {"type": "plain_text", "text": a.name}, "value": values.get(a, on_incident)}
               for a in ActionId if a is not ActionId.CHECKLIST_PREFIX]
    blocks = [{"type": "actions", "block_id": f"walk{i}", "elements": buttons[i:i + 5]} for i in range(0, len(buttons), 5)]
    blocks.append({"type": "actions", "block_id": f"checklist|{incident}|immediate", "elements": [{
        "type": "checkboxes", "action_id": f"{ActionId.CHECKLIST_PREFIX.value}immediate",
        "options": [{"text": {"type": "plain_text", "text": "Verify all systems operational"},
                     "value": "verify_systems"}]}]})
    return blocks


async def test_someone_without_a_role_can_use_no_verb_and_no_button(harness: Harness):
    h = harness
    await start_rollback(h)
    await approval_message(h)  # a real pending approval: its buttons are live
    [run] = h.store().runs()
    [approval] = h.store().approvals_of(run.id)
    before = await state(h)
    audit_before = len(h.store().audit_events())
    tried = 0

    for verb in typed_verbs():
        if verb.who is Who.ANYONE:
            continue
        words = WORDS.get(verb.name, "staging")
        await h.slack.send_command(BYSTANDER, f"{verb.name} {words}")
        tried += 1
        refusal = await h.slack.wait_for(lambda: len([e for e in h.slack.ephemerals(BYSTANDER)
                                                      if REFUSED in e.text]) == tried, timeout=WAIT,
                                         what=f"the refusal of /rollback {verb.name}")
        assert refusal
        text = [e for e in h.slack.ephemerals(BYSTANDER) if REFUSED in e.text][-1].all_text()
        assert f"only {verb.who.value} may" in text and "Who may: <@" in text, (verb.name, text)

    message = h.slack.post_message(CHANNEL, "every button", OPERATOR, every_button(run.incident_id, run.id, approval.id))
    for action in ActionId:
        action_id = (f"{ActionId.SIGN_OFF_PREFIX.value}dba" if action is ActionId.SIGN_OFF_PREFIX
                     else f"{ActionId.CHECKLIST_PREFIX.value}immediate" if action is ActionId.CHECKLIST_PREFIX
                     else action.value)
        selected = ["verify_systems"] if action is ActionId.CHECKLIST_PREFIX else None
        reply = await h.slack.click(BYSTANDER, message, action_id, selected=selected)
        assert reply.status == 200
        tried += 1
        await h.slack.wait_for(lambda: len([e for e in h.slack.ephemerals(BYSTANDER) if REFUSED in e.text]) == tried,
                               timeout=WAIT, what=f"the refusal of the button {action_id}")
        text = [e for e in h.slack.ephemerals(BYSTANDER) if REFUSED in e.text][-1].all_text()
        assert "Who may: <@" in text, (action_id, text)
    assert not h.slack.views  # the report form was not opened

    assert await state(h) == before
    mine = [e for e in h.store().audit_events()[audit_before:] if e.actor == BYSTANDER]
    refusals = [e for e in mine if e.outcome == "refused"]
    assert len(refusals) == tried, [e.action for e in mine]
    assert all(e.action.endswith(".refused") for e in refusals), [e.action for e in refusals]
    # Nothing but the arrival of each command and the refusals was written in the bystander's name.
    assert {e.action for e in mine if e.outcome != "refused"} <= {"command"}, [e.action for e in mine]
    assert h.store().verify_audit().problem is None
