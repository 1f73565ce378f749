"""The schema side's pure rules, on catalogs built by hand: the diff (partitions, inherited parts,
enum labels, domains, grants), the drop order, a partitioned table planned as one unit, the typed
run facts (older runs too), the verbs table and the readable formats."""

from __future__ import annotations

from datetime import UTC, datetime

import readable
from actions.plans.facts import BackupRef, RunFacts, Swap, facts_update
from actions.plans.tables.partitions import plan_unit
from actions.postgres.catalog import Catalog, Column, Table
from actions.postgres.dependencies import _dependents_first
from actions.postgres.schemadiff import compare
from actions.store.records import Actor, Role
from actions.verbs import VERBS, Who, typed_verbs

COLUMNS = [Column("id", "integer", False, None), Column("paid_at", "timestamp with time zone", False, None)]
BOUND = "FOR VALUES FROM ('2022-0{m}-01 00:00:00+00') TO ('2022-0{n}-01 00:00:00+00')"


def payments(*months: int, detached: tuple[int, ...] = ()) -> Catalog:
    """A table `pay` partitioned by month, with an index on it and on each attached partition."""
    catalog = Catalog()
    catalog.tables["public.pay"] = Table(list(COLUMNS), ["id", "paid_at"], kind="p", partition_key="RANGE (paid_at)")
    catalog.indexes["public.pay_paid_idx"] = {"table": "public.pay", "definition": "CREATE INDEX … (paid_at)",
                                             "constraint": False, "parent": None, "partitioned": True}
    for m in months:
        name = f"public.pay_{m}"
        attached = m not in detached
        catalog.tables[name] = Table(list(COLUMNS), ["id", "paid_at"], rows=10,
                                     partition_of="public.pay" if attached else None,
                                     bound=BOUND.format(m=m, n=m + 1) if attached else None)
        catalog.indexes[f"{name}_paid_idx"] = {"table": name, "definition": "CREATE INDEX … (paid_at)",
                                               "constraint": False, "parent": "public.pay_paid_idx" if attached else None,
                                               "partitioned": False}
    return catalog


def test_partitions_dropped_and_detached_are_told_once_and_their_indexes_are_parts():
    backup, live = payments(1, 2, 3), payments(1, 3, detached=(1,))
    live.indexes["public.pay_amount_idx"] = {"table": "public.pay", "definition": "CREATE INDEX … (amount)",
                                            "constraint": False, "parent": None, "partitioned": True}
    live.indexes["public.pay_3_amount_idx"] = {"table": "public.pay_3", "definition": "…", "constraint": False,
                                              "parent": "public.pay_amount_idx", "partitioned": False}
    diff = compare(live, backup)
    assert diff.partitions_detached == [
        f"public.pay_1 of public.pay {BOUND.format(m=1, n=2)}: detached, now a table of its own",
        f"public.pay_2 of public.pay {BOUND.format(m=2, n=3)}: dropped"]
    assert diff.indexes_added == ["public.pay_amount_idx"]  # one index, not one per partition
    assert diff.tables_dropped == [] and diff.indexes_dropped == [] and diff.partitions_attached == []
    assert backup.total_rows == 30 and backup.leaves("public.pay") == ["public.pay_1", "public.pay_2", "public.pay_3"]


def test_enum_labels_domain_constraints_grants_and_triggers_are_compared():
    backup, live = Catalog(), Catalog()
    backup.types["public.mood"] = {"kind": "enum", "labels": ["ok", "sad"]}
    live.types["public.mood"] = {"kind": "enum", "labels": ["ok", "sad", "angry"]}
    backup.types["public.year"] = {"kind": "domain", "base": "integer", "not_null": False, "default": None,
                                   "constraints": {"year_check": "CHECK ((VALUE > 1900))"}}
    live.types["public.year"] = {**backup.types["public.year"], "constraints": {}}
    for catalog in (backup, live):
        catalog.tables["public.film"] = Table(list(COLUMNS), ["id"])
    backup.grants = {"TABLE public.film": ["PUBLIC:SELECT"]}
    live.grants = {}
    backup.triggers["public.film.stamp"] = {"table": "public.film", "definition": "CREATE TRIGGER stamp …",
                                           "enabled": "O", "inherited": False}
    diff = compare(live, backup)
    assert diff.enum_labels_added == ["public.mood: 'angry'"]
    assert diff.types_changed == ["public.year: constraint year_check CHECK ((VALUE > 1900)) → (dropped)"]
    assert diff.grants_changed == ["TABLE public.film: -PUBLIC:SELECT"]
    assert diff.triggers_dropped == ["public.film.stamp"]
    unknown = compare(live, Catalog(grants=None))
    assert unknown.notes and not unknown.grants_changed  # a backup whose grants could not be read


def test_drop_order_puts_what_is_built_on_a_view_first():
    names = {1: "public.base", 2: "public.on_base", 3: "public.on_both", 4: "public.alone"}
    depends_on = {2: {1}, 3: {1, 2}}
    order = [names[o] for o in _dependents_first(set(names), depends_on, names)]
    assert order.index("public.on_both") < order.index("public.on_base") < order.index("public.base")


def test_a_partitioned_table_is_planned_as_one_unit_and_a_moved_partition_is_refused():
    backup, live = payments(1, 2, 3), payments(1, 3, detached=(1,))
    problems: list[str] = []
    unit = plan_unit("public.pay", backup, live, problems)
    assert problems == [] and [c["name"] for c in unit["create"]] == ["public.pay_2"]
    assert [a["name"] for a in unit["attach"]] == ["public.pay_1"] and unit["live_only"] == []
    elsewhere = payments(1, 2, 3)
    elsewhere.tables["public.pay_2"].bound = BOUND.format(m=5, n=6)
    assert plan_unit("public.pay", backup, elsewhere, problems) is None and "public.pay_2 was a partition" in problems[0]


def test_run_facts_are_typed_and_older_runs_are_read():
    created = datetime(2026, 11, 24, 6, 15, tzinfo=UTC)
    old = {"backup_path": "/b/x.dump", "backup_created": created.isoformat(), "backup_size": 2048,
           "aside": "db__rollback_x", "live": "db", "keep_as": "db__failed_x", "swap_started": True, "swapped": True}
    facts = RunFacts.of(old)
    assert facts.swapped and facts.backup.created == created and facts.databases.keep_as == "db__failed_x"
    assert RunFacts.of({"swap_state": "unknown", "swap_started": True}).swap is Swap.UNKNOWN
    update = facts_update(backup=BackupRef(path="/b/y.dump", created=created, size=1), swap=Swap.UNDER_WAY)
    assert update["swap"] == "under way" and RunFacts.of(update).backup.path == "/b/y.dump"


def test_the_verbs_table_says_who_may_and_lists_only_typed_verbs():
    operator, approver = Actor("U1", frozenset({Role.OPERATOR})), Actor("U2", frozenset({Role.APPROVER}))
    assert VERBS["full"].who.allows(operator) and not VERBS["full"].who.allows(approver)
    assert VERBS["diff"].who is Who.RESPONDERS and VERBS["diff"].who.allows(approver)
    assert "remedy" not in {v.name for v in typed_verbs()} and VERBS["status"].who.allows(Actor("U3"))
    assert all(v.plan is not None for v in VERBS.values() if v.starts == "plan")


def test_one_formatter_each():
    assert (readable.duration(4.25), readable.duration(185), readable.duration(7800), readable.duration(260000)) == (
        "4.2 s", "3 min 05 s", "2 h 10 min", "3 d 0 h")
    assert readable.duration(None) == "" and readable.duration(None, unknown="unknown") == "unknown"
    assert readable.size(512) == "512 B" and readable.size(126 * 2**20) == "126.0 MB"
    assert readable.first_line("\n  SELECT  a, b\n FROM x", 8) == "SELECT …" and readable.count(1, "table") == "1 table"


def test_the_slack_manifest_hints_every_verb():
    import re
    from pathlib import Path

    manifest = (Path(__file__).parents[2] / "manifest.yml").read_text()
    hint = re.search(r'usage_hint: "([^"]+)"', manifest).group(1)
    assert all(re.search(rf"(?<![\w-]){re.escape(v.name)}(?![\w-])", hint) for v in typed_verbs()), hint
