"""Pure pieces: the table-of-contents parser, the redactor, the plan's approval groups."""

from __future__ import annotations

import pytest

from actions.backups.toc import parse_toc
from actions.plans.full import build_plan
from actions.redact import Redactor, dsn_secrets

LISTING = """\
;
; Archive created at 2026-11-24 06:14:52 UTC
;     dbname: crm_staging
;     Dumped from database version: 15.20 (Debian 15.20-0+deb12u1)
;
6; 2615 16390 SCHEMA - s2 postgres
222; 1255 16421 FUNCTION public f(integer, text) postgres
216; 1259 16392 TABLE public customers postgres
3372; 0 16392 TABLE DATA public customers postgres
3373; 0 16402 TABLE DATA public odd name postgres
3224; 2606 16406 CONSTRAINT public odd name odd name_pkey postgres
3225; 2606 16407 FK CONSTRAINT public odd name odd name_c_fkey postgres
3374; 0 16416 MATERIALIZED VIEW DATA public mv1 postgres
;3375; 0 0 COMMENT public TABLE customers postgres
"""


def test_toc_entries_keep_spaces_in_tags_and_multi_word_kinds():
    toc = parse_toc(LISTING)
    assert toc.source_database == "crm_staging" and toc.server_version.startswith("15.20")
    assert toc.header["Archive created at"] == "2026-11-24 06:14:52 UTC"
    kinds = [(e.kind, e.schema, e.tag) for e in toc.entries]
    assert kinds == [
        ("SCHEMA", None, "s2"), ("FUNCTION", "public", "f(integer, text)"), ("TABLE", "public", "customers"),
        ("TABLE DATA", "public", "customers"), ("TABLE DATA", "public", "odd name"),
        ("CONSTRAINT", "public", "odd name odd name_pkey"), ("FK CONSTRAINT", "public", "odd name odd name_c_fkey"),
        ("MATERIALIZED VIEW DATA", "public", "mv1"),
    ]  # the commented-out entry is not restored, so it is not listed


@pytest.mark.parametrize("text, hidden", [
    ("could not connect: postgresql://app:pa55word@db/crm", "pa55word"),
    ("host=db user=app password=pa55word dbname=crm", "pa55word"),
    ("password = 'pa55 word' host=db", "pa55 word"),
    ("token xoxb-123-456-abcdef leaked", "xoxb-123-456-abcdef"),
    ("app token xapp-1-A0-99-ffff", "xapp-1-A0-99-ffff"),
])
def test_redactor_masks_secrets_it_was_never_told(text, hidden):
    assert hidden not in Redactor()(text)


def test_redactor_masks_known_secrets_anywhere():
    redact = Redactor(dsn_secrets("postgresql://app:Zq9-very-secret@db/crm") + ["sign-secret-1"])
    assert "Zq9-very-secret" not in redact("boom Zq9-very-secret boom") and "sign-secret-1" not in redact("x sign-secret-1")


@pytest.mark.parametrize("mode, gated", [
    ("immediately", ["swap"]),
    ("at_swap", ["stop_app", "swap"]),
])
def test_full_plan_gates_exactly_the_destructive_steps(mode, gated):
    plan = build_plan(mode)
    groups = plan.approval_groups()
    assert len(groups) == 1
    (first, steps), = groups.items()
    assert [s.key for s in steps] == gated
    assert plan.steps[first].ask_approval_after == "preflight"
    keys = [s.key for s in plan.steps]
    assert keys.index("preflight") < keys.index("stop_app")  # the backup is checked before the app goes down
    assert keys.index("verify") < keys.index("swap")
    if mode == "immediately":  # every data block is read before the app goes down, after the approval is asked
        assert keys.index("preflight") < keys.index("read_dump") < keys.index("stop_app")
    else:  # nothing goes down before the swap: the restore reads the blocks
        assert "read_dump" not in keys


def test_readme_documents_every_verb_and_config_key():
    from pathlib import Path

    from actions.config import BotConfig, EmailConfig, Environment, PagingConfig, SmokeCheck
    from actions.verbs import typed_verbs

    readme = (Path(__file__).parent.parent / "README.md").read_text().replace("\\|", "|")  # a table cell escapes |
    assert all(f"`{verb.usage}`" in readme for verb in typed_verbs())
    keys = (set(BotConfig.model_fields) | set(Environment.model_fields) | set(PagingConfig.model_fields)
            | set(EmailConfig.model_fields)) - {"name"}
    assert all(f"`{key}`" in readme for key in keys if key not in ("dsn", "dsn_env")) and "`dsn` / `dsn_env`" in readme
    assert all(key in readme for key in SmokeCheck.model_fields)
