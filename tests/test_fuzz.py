"""Property-based fuzzing (hypothesis) of what Slack can deliver: command text and button clicks,
through the real Bolt app over signed HTTP, against a real CRM database. Every request must be
acknowledged within Slack's 3 seconds, answered with exactly one helpful ephemeral (never a stack
trace), and change nothing it may not. `FUZZ_EXAMPLES` sets the budget (tests/fuzzing.py)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from urllib.parse import parse_qs, urlencode

import pytest
from hypothesis import strategies as st

from actions.config import SIGNOFF_ROLES
from actions.verbs import PLANS, VERBS
from demo.fingerprint import diff, fingerprint
from fake_slack.outgoing import find_action
from fake_slack.responses import new_hook
from fuzzing import (
    ACK_DEADLINE_MS,
    NASTY,
    answers,
    assert_helpful_ephemeral,
    database_names,
    explore,
    long_text,
    state_rows,
    wait_quiet,
)
from messages.ids import ActionId
from support.harness import APPROVER, BYSTANDER, CHANNEL, OPERATOR, Harness
from support.slack import WAIT, approval_message, run_end, start_rollback

ANSWER_WAIT = 5  # seconds; an answer normally comes within 0.1 s, and a failing case is retried while shrinking
VERB_WORDS = sorted({*VERBS, *PLANS, "fulll", "FULL", "Help", "rollback", "drop"})
WORDS = st.one_of(st.sampled_from(NASTY), st.text(min_size=1, max_size=30),
                  st.sampled_from(["staging", "STAGING", "production", "INC-20000101-0001", "30", "stop", "sales,users"]))
COMMAND_TEXT = st.one_of(
    st.builds(lambda verb, rest: " ".join([verb, *rest]), st.sampled_from(VERB_WORDS) | st.text(min_size=1, max_size=20),
              st.lists(WORDS, max_size=4)),
    st.text(max_size=200), long_text(), st.sampled_from(NASTY))


def names_the_environment(text: str) -> bool:
    """Whether the bot would read `staging` as the environment (it splits and lower-cases so)."""
    words = " ".join(text.split()).split(" ")
    return len(words) > 1 and words[1].lower() == "staging"


# A bystander may type anything (every verb refuses them); an operator or approver anything that
# names no configured environment, so no example can legitimately start or declare something.
COMMANDS = st.one_of(st.tuples(st.just(BYSTANDER), COMMAND_TEXT),
                     st.tuples(st.sampled_from([OPERATOR, APPROVER]),
                               COMMAND_TEXT.filter(lambda text: not names_the_environment(text))))


# Cases that found bugs (typed `remedy` ran after "I don't know the verb"), plus the classics.
FOUND_COMMANDS = [(BYSTANDER, "remedy staging"), (OPERATOR, 'remedy nowhere analyze {"table":"sales"}'),
                  (OPERATOR, "full staging; DROP DATABASE x"), (OPERATOR, 'tables "; -- sales;DROP TABLE users'),
                  (BYSTANDER, "full staging"), (APPROVER, "x" * 5000)]


async def test_fuzzed_command_text_gets_one_helpful_answer_and_changes_nothing(harness: Harness, record_property):
    h = harness
    databases = await database_names(h.crm.dbname)
    sent = []

    async def check(example) -> None:
        user, text = example
        audited = len(h.store().audit_events())
        reply = await h.slack.send_command(user, text)
        assert reply.status == 200 and reply.elapsed_ms < ACK_DEADLINE_MS, (reply.status, reply.elapsed_ms)
        for message in await h.slack.wait_for(lambda: answers(h, reply), timeout=ANSWER_WAIT, what=f"an answer to {text!r}"):
            if "recorded in the audit trail" in assert_helpful_ephemeral(message):  # the reply's claim is true
                assert any(e.actor == user and e.outcome == "refused" for e in h.store().audit_events()[audited:])
        if reply.json:  # answered in the ack: give a listener still running the time to answer again
            await asyncio.sleep(0.3)
            assert len(answers(h, reply)) == 1, answers(h, reply)
        assert all(rows == [] for rows in state_rows(h).values()), state_rows(h)
        assert h.runtime.service.watches.running("staging") is None
        sent.append((text, reply))

    figures = await explore("command_text", COMMANDS, check, record_property, always=FOUND_COMMANDS)
    await wait_quiet(h)
    await h.settle()
    # Exactly one answer each: an ack saying "unknown verb" must not be followed by a second reply.
    twice = [(text, answers(h, reply)) for text, reply in sent if len(answers(h, reply)) != 1]
    assert not twice, twice[:3]
    assert len([e for e in h.store().audit_events() if e.action == "command"]) == figures.cases
    assert await database_names(h.crm.dbname) == databases
    assert diff(h.crm.after, await fingerprint(h.crm.dsn)) == []


RECOVERY = (ActionId.RUN_AGAIN.value, ActionId.CLEAN_UP.value)  # an interrupted run's buttons


def _fake_incident():
    return st.from_regex(r"INC-2000010[1-9]-00[0-9]{2}", fullmatch=True) | st.text(max_size=45)


def _not_staging():
    return st.sampled_from([*NASTY, "production", ""]) | st.text(max_size=45).filter(lambda e: e.lower() != "staging")


def click_examples(incident: str, approval: str, run: str):
    """(user, action_id, value, block_id, selected_options), one branch per kind of button so each
    gets its share. Role holders only get values that name nothing real (else an approver's click
    would rightly approve); the bystander also gets the genuine values, which must be refused."""
    garbage = st.one_of(long_text(), st.text(max_size=100), st.sampled_from(NASTY), st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
        max_leaves=8).map(json.dumps))
    as_json = json.dumps
    approvals = st.one_of(
        garbage, st.builds(lambda i: as_json({"incident": i, "approval": approval}), _fake_incident()),  # another incident
        st.builds(lambda a: as_json({"incident": incident, "approval": a}), st.text(max_size=45)),  # no such approval
        st.builds(lambda i, a: as_json({"incident": i, "approval": a}), _fake_incident(), st.text(max_size=45)))
    incidents = garbage | st.builds(lambda i: as_json({"incident": i}), _fake_incident())
    runs = garbage | st.builds(lambda i, r: as_json({"incident": i, "run": r}), _fake_incident() | st.just(incident),
                               st.text(max_size=60) | st.just(run))
    remedies = garbage | st.builds(lambda e, k: as_json({"environment": e, "kind": k, "target": {"table": "sales"}}),
                                   _not_staging(), st.sampled_from(["analyze", "vacuum", "terminate", "x"]))
    incident_ids = st.sampled_from([ActionId.SEVERITY_CRITICAL, ActionId.SEVERITY_MINOR, ActionId.SEVERITY_UNSURE,
                                    ActionId.START_FULL, ActionId.ESCALATE, ActionId.RESOLVE, ActionId.EDIT_REPORT,
                                    *(ActionId.SIGN_OFF_PREFIX + r for r in [*SIGNOFF_ROLES, "nobody"])]).map(str)
    block_ids = st.one_of(st.none(), st.text(max_size=40), st.sampled_from(["|", "||", "decision", "a|b|c|d"]),
                          st.builds(lambda i, g: f"checklist|{i}|{g}", _fake_incident(), st.sampled_from(["immediate", "x"])))
    options = st.none() | st.lists(st.fixed_dictionaries({"value": st.text(max_size=20)})
                                   | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2), max_size=3)
    anyone = st.sampled_from([BYSTANDER, OPERATOR, APPROVER])
    bystander, holders = st.just(BYSTANDER), st.sampled_from([OPERATOR, APPROVER])
    approve_deny = st.sampled_from([ActionId.APPROVE.value, ActionId.DENY.value])
    remedy_ids = st.sampled_from([ActionId.REMEDY.value, "remedy-0", "remedy-17"])
    genuine = {"approval": as_json({"incident": incident, "approval": approval}), "incident": as_json({"incident": incident}),
               "remedy": as_json({"environment": "staging", "kind": "analyze", "target": {"table": "sales"}})}
    click = lambda users, ids, values: st.tuples(users, ids, values, st.just("decision"), st.none())  # noqa: E731
    return st.one_of(
        click(bystander, approve_deny, approvals | st.just(genuine["approval"])), click(holders, approve_deny, approvals),
        click(bystander, incident_ids, incidents | st.just(genuine["incident"])), click(holders, incident_ids, incidents),
        click(bystander, remedy_ids, remedies | st.just(genuine["remedy"])), click(holders, remedy_ids, remedies),
        click(anyone, incident_ids | st.sampled_from(RECOVERY), runs),  # run values, on recovery buttons too
        st.tuples(anyone, st.sampled_from(["checklist-immediate", "checklist-x", "checklist-"]), st.none() | garbage,
                  block_ids, options),
        st.tuples(anyone, st.text(max_size=40) | st.sampled_from(["", "approval-approve2", "remedy-x", "Approve"]),
                  garbage | st.sampled_from(list(genuine.values())), block_ids, options))  # ids nobody made


def click_body(h: Harness, template: dict, user: str, action_id: str, value: str, block_id, options) -> bytes:
    """A block_actions payload like a real click's (`template`), with the fuzzed parts swapped in,
    a fresh response_url and a fresh trigger_id (so a modal may open, as it would from Slack)."""
    payload = json.loads(json.dumps(template))
    payload["user"] = {**payload["user"], "id": user, "username": user, "name": user}
    payload["response_url"] = new_hook(h.slack.workspace, user, CHANNEL, payload["container"]["message_ts"])
    payload["trigger_id"] = f"{int(time.time() * 1000)}.fuzz.{secrets.token_hex(8)}"
    h.slack.workspace.triggers[payload["trigger_id"]] = (user, time.time())
    action = {**payload["actions"][0], "action_id": action_id, "value": value, "block_id": block_id}
    if options is not None:
        action["selected_options"] = options
    payload["actions"] = [action]
    return urlencode({"payload": json.dumps(payload)}).encode()


async def test_fuzzed_clicks_are_refused_or_answered_and_never_act(harness: Harness, record_property):
    h = harness
    await start_rollback(h)
    request = await approval_message(h)
    await h.slack.wait_for_message(CHANNEL, "✅ Verify the restored copy", timeout=WAIT)  # parked at the gate
    _, approve = find_action(request.blocks, ActionId.APPROVE.value)
    genuine = json.loads(approve["value"])
    run = h.store().runs()[0].id
    captured = await h.slack.click(BYSTANDER, request, ActionId.APPROVE.value)  # refused; its payload is the template
    template = json.loads(parse_qs(captured.request.body.decode())["payload"][0])
    await h.slack.wait_for_ephemeral(BYSTANDER, "only approvers", timeout=WAIT)
    baseline, databases = state_rows(h), await database_names(h.crm.dbname)

    async def check(example) -> None:
        user, action_id, value, block_id, options = example
        audited = len(h.store().audit_events())
        views = len(h.slack.views)
        body = click_body(h, template, user, action_id, value, block_id, options)
        # send_command's raw_body knob signs and posts any body, with the body's own response_url.
        reply = await h.slack.send_command(user, "", raw_body=body)
        assert reply.status == 200 and reply.elapsed_ms < ACK_DEADLINE_MS, (reply.status, reply.body)
        await h.slack.wait_for(lambda: answers(h, reply) or len(h.slack.views) > views, timeout=ANSWER_WAIT,
                               what=f"an answer to {action_id!r}")
        new_events = [e for e in h.store().audit_events()[audited:] if e.actor == user]
        for message in answers(h, reply):
            text = assert_helpful_ephemeral(message)
            if "recorded in the audit trail" in text or "I don't know this" in text:  # refusals the code audits
                assert any(e.outcome == "refused" for e in new_events), (text, new_events)
        assert state_rows(h) == baseline

    found = [  # cases that found bugs: a tampered incident button (TypeError in its audit call), an
        # unknown action id (Bolt's 404), a checklist block id that is not "checklist|<incident>|<group>",
        # an empty incident id
        (BYSTANDER, ActionId.SEVERITY_CRITICAL.value, "not json", "decision", None),
        (APPROVER, ActionId.REMEDY.value, "{}", "decision", None),
        (APPROVER, "a-button-from-an-older-bot", approve["value"], "decision", None),
        (OPERATOR, "checklist-immediate", None, "abc", [{}]),
        (BYSTANDER, ActionId.ESCALATE.value, '{"incident":""}', "decision", None),  # was ignored: no answer
        (APPROVER, ActionId.APPROVE.value, json.dumps({"incident": "INC-20000101-0001", "approval": genuine["approval"]}),
         "decision", None)]
    figures = await explore("clicks", click_examples(genuine["incident"], genuine["approval"], run), check,
                            record_property, always=found)
    await wait_quiet(h)
    assert state_rows(h) == baseline and await database_names(h.crm.dbname) == databases
    assert h.slack.workspace.message(CHANNEL, request.ts).blocks == request.blocks  # buttons still there
    assert figures.cases >= 1
    await h.slack.click(APPROVER, request, ActionId.DENY.value)
    await run_end(h, "was denied")
    assert diff(h.crm.after, await fingerprint(h.crm.dsn)) == []


@pytest.mark.parametrize("action_id", RECOVERY)
async def test_a_tampered_recovery_button_is_answered_and_audited(harness: Harness, action_id):
    # Found by this suite: bot/recovery.py passed `action=` to store.audit() (its own parameter), so a
    # tampered value raised TypeError, Bolt answered 404 after 3 s and nothing was audited.
    h = harness
    await h.slack.send_command(BYSTANDER, "status")
    status = await h.slack.wait_for_ephemeral(BYSTANDER, "No open incidents", timeout=WAIT)
    template = {"type": "block_actions", "user": {"id": BYSTANDER}, "container": {"message_ts": status.ts},
                "actions": [{"type": "button"}]}
    body = click_body(h, template, BYSTANDER, action_id, "not json", "decision", None)
    reply = await h.slack.send_command(BYSTANDER, "", raw_body=body)
    assert reply.status == 200
    answer = await h.slack.wait_for(lambda: answers(h, reply), timeout=10)
    assert_helpful_ephemeral(answer[0])
    assert [e.action for e in h.store().audit_events() if e.outcome == "refused"] == ["button.tampered"]
