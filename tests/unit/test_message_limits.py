"""Every message builder in messages/ stays within Slack's limits, whatever it is fed.

Slack refuses a payload past its limits (`invalid_blocks`, `msg_too_long`), so each public builder
is called with hostile input — lists of hundreds of items, texts of 10,000+ characters with
non-ASCII and Slack's control characters — and its result must pass slack_sdk's own models.
Identifiers that go into button values (incident, approval and run ids, environment names, user
ids) stay realistic: config and the store bound them, and the value models refuse longer ones.
No database, no network: a fraction of a second.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from slack_sdk.models.basic_objects import JsonObject
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from messages import (
    approval,
    diagnose,
    diff,
    incident,
    lifecycle,
    outreach,
    postincident,
    prepared,
    replies,
    update,
    watch,
)
from messages.blocks import SlackMessage, combined, section
from messages.views import (
    AlertView,
    ApprovalView,
    ChecklistView,
    ResolvedView,
    RunEndView,
    SignoffView,
    StatusLine,
    StepView,
    UpdateView,
)

# Slack's limits (../shared/slack/README.md), checked here on top of what the models check.
TEXT_LIMIT = 3000
MESSAGE_BLOCKS = 50
MODAL_BLOCKS = 100
SECTION_TEXT = 3000
FIELD_TEXT = 2000
FIELDS = 10
HEADER_TEXT = 150
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
ID_LENGTH = 255  # action_id, block_id
CONTEXT_ELEMENTS = 10
ACTIONS_ELEMENTS = 25
CHECKBOX_OPTIONS = 10

# --- hostile input -----------------------------------------------------------------------------

NASTY = "<!channel> & <@U0> <#C1|x> ünïcødé ✅🚨 中文 «»—… `code` *bold* _it_ ~s~ &amp; &lt; > < "
LONG = (NASTY * (12_000 // len(NASTY) + 1))[:12_000]  # 12,000 characters


def long(tag: str) -> str:
    """A 12,000-character text that says which argument it is (handy when a check fails)."""
    return f"[{tag}] {LONG}"


def many(n: int, tag: str) -> list[str]:
    """`n` items: the first of 12,000 characters, the others as long as a PostgreSQL identifier,
    with non-ASCII and < > & (all of them 12,000 characters long would only make the test slow)."""
    return [long(tag)] + [f"{tag}_{i}_ñ<é>&{'x' * 40}"[:63] for i in range(1, n)]


NAMES = many(1000, "name")
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PREPARE = prepared.PrepareView(
    environment="production-eu_west-1", target=long("target"), database=long("db"), phase="restore",
    detail=long("detail"), requested_by="U012AB3CD", started_at=NOW, backup=long("backup"), backup_seconds=1e9,
    restore_seconds=1e9, ready_at=NOW, percent=99, replaced=tuple(many(1000, "old copy")))
INCIDENT = "INC-20261124-0001"
RUN = "INC-20261124-0001-R2"
APPROVAL = "apr_3f9c2a7d5b1e4c8a9f0d"
ENV = "production-eu_west-1"  # config: ^[a-z][a-z0-9_-]{0,30}$
USER = "U012AB3CD"
APPROVERS = tuple(f"U{i:08d}" for i in range(1000))


# --- the check ---------------------------------------------------------------------------------

def _validate_deep(model: Any) -> None:
    """`validate_json` on a model and every model inside it (a block's own call stops at itself):
    buttons, confirm dialogs, options and text objects (which must not be empty) included."""
    if isinstance(model, JsonObject):
        model.validate_json()
        for value in vars(model).values():
            _validate_deep(value)
    elif isinstance(model, (list, tuple)):
        for item in model:
            _validate_deep(item)


def _walk(node: Any):
    """Every dict in a block's raw JSON, the block itself first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _assert_raw_limits(block: dict) -> None:
    """The limits Slack applies that slack_sdk's models do not all check on a dict."""
    kind = block["type"]
    if kind == "section":
        assert block.get("text") or block.get("fields"), block
        if "text" in block:
            assert len(block["text"]["text"]) <= SECTION_TEXT
        assert len(block.get("fields", [])) <= FIELDS
        assert all(len(f["text"]) <= FIELD_TEXT for f in block.get("fields", []))
    elif kind == "header":
        assert len(block["text"]["text"]) <= HEADER_TEXT
    elif kind == "context":
        assert 1 <= len(block["elements"]) <= CONTEXT_ELEMENTS
    elif kind == "actions":
        assert 1 <= len(block["elements"]) <= ACTIONS_ELEMENTS
    for node in _walk(block):
        assert len(node.get("block_id", "")) <= ID_LENGTH
        assert len(node.get("action_id", "")) <= ID_LENGTH
        if node.get("type") in ("plain_text", "mrkdwn"):
            assert 0 < len(node["text"]) <= SECTION_TEXT
        if node.get("type") == "button":
            assert len(node["text"]["text"]) <= BUTTON_TEXT
            assert len(node["value"]) <= BUTTON_VALUE
        if node.get("type") == "checkboxes":
            assert 1 <= len(node["options"]) <= CHECKBOX_OPTIONS


def assert_block_valid(block: dict) -> None:
    parsed = Block.parse(block)
    assert parsed is not None, f"slack_sdk does not know this block: {block['type']}"
    parsed.validate_json()  # raises SlackObjectFormationError
    _validate_deep(parsed)
    _assert_raw_limits(block)


def assert_within_limits(message: SlackMessage) -> None:
    assert isinstance(message, SlackMessage)
    assert 0 < len(message.text) <= TEXT_LIMIT
    assert 0 < len(message.blocks) <= MESSAGE_BLOCKS
    block_ids = [block["block_id"] for block in message.blocks if "block_id" in block]
    assert len(block_ids) == len(set(block_ids)), "Slack refuses a message whose block ids repeat"
    for block in message.blocks:
        assert_block_valid(block)


# --- the builders, fed hostile input -----------------------------------------------------------

def _approval(state: str) -> ApprovalView:
    return ApprovalView(
        approval_id=APPROVAL, incident_id=INCIDENT, title=long("title"), requested_by=USER,
        actions=tuple(many(300, "action")),
        facts=tuple(zip(many(200, "fact"), many(200, "value"))),
        confirm=long("confirm"), approvers=APPROVERS, two_person_rule=True, state=state,
        decided_by=USER if state != "pending" else None, decided_at=NOW if state != "pending" else None)


def _remedy(kind: str, n: int) -> SimpleNamespace:
    # Targets are catalog names (63 bytes at most in PostgreSQL) or a pid: RemedyButton allows four.
    name = f'public."{"ñ<>&" * 15}{n}"'
    target = {"pid": 4242, "backend_start": NOW.isoformat()} if kind == "terminate" else {"table": name, "index": name}
    return SimpleNamespace(kind=SimpleNamespace(value=kind), target=target, label=LONG)


def _diagnosis() -> SimpleNamespace:
    remedies = [None] + [_remedy(kind, n) for n, kind in enumerate(diagnose.WHAT_IT_DOES)]
    findings = [SimpleNamespace(text=text, remedy=remedies[f % len(remedies)]) for f, text in enumerate(NAMES)]
    checks = [SimpleNamespace(
        key=f"check_{c}", title=long(f"check {c}"), status=["ok", "warn", "fail", "error"][c % 4],
        summary=long(f"summary {c}"), hint=long(f"hint {c}"), seconds=c * 1.5, findings=findings[c:c + 300],
    ) for c in range(60)]
    return SimpleNamespace(environment=ENV, database=long("database"), at=NOW, checks=checks, worst="fail")


def _schema_diff() -> dict:
    columns = [{"table": f"public.{name}", "column": name, "backup_type": long("type")[:200], "live_type": None}
               for name in many(1000, "col")]
    keys = [key for _, kinds in diff.FAMILIES for key, _ in kinds]
    entries = {key: (columns if key.startswith("columns_") else many(1000, key)) for key in keys}
    return {**entries, "notes": many(200, "note")}


def _alert(**flags) -> AlertView:
    return AlertView(
        incident_id=INCIDENT, environment=ENV, declared_at=NOW, status=long("status"), impact=long("impact"),
        action=long("action"), eta=long("eta"), progress_note=long("progress"), level=2,
        level_name=long("level name"), summary=long("summary"), closed_at=NOW, **flags)


def _run_end(state: str, **flags) -> RunEndView:
    return RunEndView(
        incident_id=INCIDENT, environment=ENV, plan_title=long("plan"), state=state, reason=long("reason"),
        failed_step=long("failed step"), live_state=long("live state"), next_steps=long("next steps"),
        seconds=98_765.4, skipped=tuple(many(1000, "skipped")), run_id=RUN, **flags)


def _checklist() -> ChecklistView:
    # 200 groups; each of at most 10 items, as one checkboxes element holds (the real checklist has 4).
    groups = tuple((f"group_{g}", NAMES[g],
                    tuple((f"item_{g}_{i}", NAMES[i], i % 2 == 0, USER if i % 2 == 0 else None)
                          for i in range(CHECKBOX_OPTIONS)))
                   for g in range(200))
    return ChecklistView(incident_id=INCIDENT, groups=groups)


def _signoffs(closed: bool) -> SignoffView:
    # 300 roles (config allows three): more buttons than one actions block holds.
    roles = tuple((f"role_{r}", NAMES[r], r % 2 == 0, USER if r % 3 == 0 else None,
                   NOW if r % 3 == 0 else None) for r in range(300))
    return SignoffView(incident_id=INCIDENT, roles=roles, closed_at=NOW if closed else None)


def _status_lines() -> list[StatusLine]:
    return [StatusLine(incident_id=f"INC-20261124-{i:04d}", environment=ENV, alert_status=NAMES[i], declared_at=NOW,
                       run_id=f"INC-20261124-{i:04d}-R1", run_state="running", current_step=NAMES[i], requested_by=USER)
            for i in range(1000)]


def _update(**overrides) -> UpdateView:
    view = UpdateView(
        incident_id=INCIDENT, environment=ENV, status=long("status"), level=3, impact=long("impact"), at=NOW,
        elapsed_seconds=1e9, current_step=long("current step"), step_seconds=12_345.0, waiting_for_approval=False,
        progress_done=987_654_321, progress_total=987_654_322, eta_at=NOW + timedelta(days=3000),
        upcoming=tuple(many(1000, "upcoming")), decision=long("decision"), next_update_seconds=300.0)
    return replace(view, **overrides)


def _watch_started() -> SimpleNamespace:
    return SimpleNamespace(environment=ENV, target=long("target"), minutes=1e7, started_by=USER,
                           poll_seconds=5.0, long_query_seconds=120.0, hung_minutes=10.0)


def _watch_ended() -> SimpleNamespace:
    summary = SimpleNamespace(
        seconds=1e8, polls=10**9, failed_polls=10**8, alerts=10**6,
        alerts_by_kind=tuple((kind, 10**6) for kind in [*watch.COUNTED, *many(300, "kind")]),
        longest_query_seconds=99_999.0, longest_query_pid=2**31 - 1, longest_query=long("query"))
    reason = f"stopped by <@{USER}>: " + long("reason")
    return SimpleNamespace(environment=ENV, reason=reason, summary=summary)


MESSAGES = {
    # approval.py
    "approval_message pending": lambda: approval.approval_message(_approval("pending")),
    "approval_message decided": lambda: approval.approval_message(_approval("approved")),
    "approval_message expired": lambda: approval.approval_message(_approval("expired")),
    # diagnose.py (remedy_button: see test_remedy_button_within_limits)
    "diagnosis_message": lambda: diagnose.diagnosis_message(_diagnosis()),
    # diff.py
    "schema_diff": lambda: diff.schema_diff(ENV, long("database"), long("backup"), long("source"), _schema_diff()),
    "schema_diff no difference": lambda: diff.schema_diff(ENV, long("database"), long("backup"), long("source"), {}),
    "backup_taken": lambda: diff.backup_taken(ENV, long("path"), long("size"), 1e9, 10**9, 10**15,
                                              many(1000, "backup"), 3),
    # incident.py
    "alert": lambda: incident.alert(_alert(can_escalate=True, can_resolve=True)),
    "alert without buttons": lambda: incident.alert(_alert()),
    "run_started": lambda: incident.run_started(long("plan"), ENV, USER, RUN),
    "decision_line": lambda: incident.decision_line("approved", USER),
    "decision_line unknown state": lambda: incident.decision_line(long("state"), USER),
    "step_line": lambda: incident.step_line(StepView(long("step"), "waiting for approval", 1e9, long("detail"))),
    "run_ended succeeded": lambda: incident.run_ended(_run_end("succeeded")),
    "run_ended failed": lambda: incident.run_ended(_run_end("failed", retry_app=True)),
    "run_ended denied": lambda: incident.run_ended(_run_end("denied")),
    "run_ended interrupted": lambda: incident.run_ended(_run_end("interrupted", interrupted=True, retry_app=True)),
    "resolved": lambda: incident.resolved(ResolvedView(
        INCIDENT, ENV, NOW, long("restored from"), tuple(many(500, "app line")), long("kept as"), NOW)),
    "resolved_by_hand": lambda: incident.resolved_by_hand(INCIDENT, ENV, USER, NOW),
    # lifecycle.py
    "channel_opened": lambda: lifecycle.channel_opened(INCIDENT, ENV, "C0123ABCD", USER),
    "severity_question": lambda: lifecycle.severity_question(INCIDENT, ENV),
    "severity_answered": lambda: lifecycle.severity_answered(INCIDENT, ENV, long("choice"), USER),
    "critical_proposal": lambda: lifecycle.critical_proposal(INCIDENT, ENV, USER),
    "carry_over_offer": lambda: lifecycle.carry_over_offer(INCIDENT, ENV, 10**12, long("kept")),
    # prepared.py
    "prepare_progress": lambda: prepared.prepare_progress(PREPARE),
    "prepare_progress failed": lambda: prepared.prepare_progress(replace(PREPARE, phase="failed")),
    "rollback_ready": lambda: prepared.rollback_ready(replace(PREPARE, phase="ready")),
    "prepare_failed": lambda: prepared.prepare_failed(replace(PREPARE, phase="failed")),
    # outreach.py: the thread's line for a page or a mail (the rest are PagerDuty events and mail, not Slack)
    "delivery_line": lambda: outreach.delivery_line(outreach.DeliveryView(
        INCIDENT, "email", "resolved", False, None, tuple(many(1000, "r@example.com")), long("error"))),
    "minor_recorded": lambda: lifecycle.minor_recorded(INCIDENT, USER),
    "unsure_paged": lambda: lifecycle.unsure_paged(INCIDENT, USER, APPROVERS),
    "escalated": lambda: lifecycle.escalated(INCIDENT, 3, long("level name"), USER, APPROVERS),
    "page": lambda: lifecycle.page(INCIDENT, "C0123ABCD", long("why")),
    "leftover_copies": lambda: lifecycle.leftover_copies(ENV, list(zip(many(1000, "copy"), many(1000, "size")))),
    # postincident.py (report_modal: see test_report_modal_within_limits)
    "checklist_message": lambda: postincident.checklist_message(_checklist()),
    "signoff_message open": lambda: postincident.signoff_message(_signoffs(closed=False)),
    "signoff_message closed": lambda: postincident.signoff_message(_signoffs(closed=True)),
    "reminder": lambda: postincident.reminder(INCIDENT, long("title"), many(500, "open item"), APPROVERS),
    "report_prompt": lambda: postincident.report_prompt(INCIDENT, many(200, "missing")),
    # replies.py
    "help_message": lambda: replies.help_message(list(zip(many(300, "usage"), many(300, "what"), many(300, "who"))),
                                                 many(1000, "env")),
    "unknown_verb": lambda: replies.unknown_verb(long("verb"), many(1000, "verb")),
    "usage_error": lambda: replies.usage_error(long("usage"), long("problem")),
    "usage_error without usage": lambda: replies.usage_error(None, long("problem")),
    "unknown_environment": lambda: replies.unknown_environment(long("environment"), many(1000, "env")),
    "refused": lambda: replies.refused(long("reason"), list(APPROVERS)),
    "already_running": lambda: replies.already_running(ENV, INCIDENT, USER, long("step"), "C0123ABCD"),
    "started": lambda: replies.started(long("plan"), ENV, INCIDENT, "C0123ABCD"),
    "decision_too_late": lambda: replies.decision_too_late(long("state"), USER),
    "approval_not_found": replies.approval_not_found,
    "unknown_button": replies.unknown_button,
    "internal_error": lambda: replies.internal_error(long("error id")),
    "status_message": lambda: replies.status_message(_status_lines()),
    "status_message empty": lambda: replies.status_message([]),
    "note": lambda: replies.note(long("note")),
    "not_possible": lambda: replies.not_possible(long("reason")),
    "unknown_incident": lambda: replies.unknown_incident(long("incident")),
    "declared new": lambda: replies.declared(INCIDENT, ENV, "C0123ABCD", True),
    "declared existing": lambda: replies.declared(INCIDENT, ENV, "C0123ABCD", False),
    "report_posted": lambda: replies.report_posted(INCIDENT, "C0123ABCD"),
    "problem": lambda: replies.problem(long("problem")),
    # update.py
    "status_update running": lambda: update.status_update(_update()),
    "status_update waiting": lambda: update.status_update(_update(waiting_for_approval=True, eta_at=None)),
    "status_update decided": lambda: update.status_update(_update(current_step=None, progress_total=None)),
    "status_update idle": lambda: update.status_update(_update(current_step=None, decision=None, upcoming=())),
    # watch.py
    "watch_started": lambda: watch.watch_started(_watch_started()),
    **{f"watch_alert {name}": (lambda kind=kind: watch.watch_alert(
        SimpleNamespace(environment=ENV, kind=kind, text=long("alert"), pid=4242)))
       for name, kind in [*((kind, kind) for kind in watch.ICONS), ("unknown kind", long("kind"))]},
    "watch_ended": lambda: watch.watch_ended(_watch_ended()),
    # blocks.py: progress lines that piled up behind Slack's rate, sent as one
    "combined": lambda: combined([incident.step_line(StepView(title, "succeeded", 1.0, long("detail")))
                                  for title in many(200, "step")]),
}


@pytest.mark.parametrize("build", MESSAGES.values(), ids=MESSAGES.keys())
def test_message_within_limits(build) -> None:
    assert_within_limits(build())


def test_every_public_builder_is_covered() -> None:
    """A new builder gets a hostile case here too."""
    covered = {name.split()[0] for name in MESSAGES} | {"remedy_button", "report_modal"}
    modules = (approval, diagnose, diff, incident, lifecycle, postincident, prepared, replies, update, watch)
    public = {name for module in modules for name, value in vars(module).items()
              if callable(value) and not name.startswith("_") and name[0].islower()
              and getattr(value, "__module__", None) == module.__name__}
    assert public <= covered, f"not called with hostile input: {sorted(public - covered)}"


def test_remedy_button_within_limits() -> None:
    for number, kind in enumerate(["terminate", "analyze", "vacuum", "reindex", "quarantine", "unknown"], start=1):
        element = diagnose.remedy_button(ENV, _remedy(kind, number), 10**9 + number)
        assert_within_limits(SlackMessage("fix", [{**section("finding"), "accessory": element}]))


def test_report_modal_within_limits() -> None:
    for notes in [(long("root cause"), long("what failed"), long("prevention")), (None, None, None), ("", "", "")]:
        view = postincident.report_modal(INCIDENT, *notes)
        assert len(view["blocks"]) <= MODAL_BLOCKS
        View(**view).validate_json()
        for block in view["blocks"]:
            assert_block_valid(block)
            element = block["element"]
            # A prefilled answer longer than the input's own limit could not be saved unchanged.
            assert len(element.get("initial_value", "")) <= element["max_length"]
