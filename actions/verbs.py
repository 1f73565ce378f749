"""Every `/rollback` verb, declared once: its usage, what it does, who may use it and what it starts.

The help text, the usage errors and the role checks are all read from here (`bot/` renders them,
`actions/service.py` enforces them). A new scenario is a module in `actions/plans/` and one row
here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from actions.engine.plan import PlanSpec
from actions.permissions import Who
from actions.plans import (
    app,
    carry_over,
    cleanup,
    columns,
    full,
    objects,
    quarantine,
    remedies,
    rerun,
    restart,
    unprepare,
)
from actions.plans.tables import plan as tables


class Starts(StrEnum):
    """What a verb starts: a run of its plan, or one of the answers the service gives at once."""

    PLAN = "plan"
    DIFF = "diff"
    BACKUP = "backup"
    DIAGNOSE = "diagnose"
    PREPARE = "prepare"
    WATCH = "watch"
    DECLARE = "declare"
    ASSESS = "assess"
    REPORT = "report"
    STATUS = "status"
    HELP = "help"


# What a verb does, in a refusal's words: "only operators may <this>".
WHAT_IT_STARTS = {Starts.PLAN: "start a rollback", Starts.DIFF: "compare the schema with the backup",
                  Starts.BACKUP: "take a backup", Starts.DIAGNOSE: "run diagnostics", Starts.PREPARE: "prepare a rollback",
                  Starts.WATCH: "start or stop a watch", Starts.DECLARE: "open an incident", Starts.ASSESS: "open an incident",
                  Starts.REPORT: "write the incident report again", Starts.STATUS: "read the status", Starts.HELP: "read the help"}


@dataclass(frozen=True)
class Verb:
    name: str
    usage: str  # "/rollback views <env> [v1,v2]"
    summary: str  # what it does, for the help text and the README
    who: Who
    starts: Starts
    plan: PlanSpec | None = None
    typed: bool = True  # False: only a button starts it (a remedy, a restart)

    @property
    def names_environment(self) -> bool:
        """Its first word after the verb is an environment."""
        return "<env>" in self.usage


def _plan(name: str, usage: str, summary: str, spec: PlanSpec, *, typed: bool = True) -> Verb:
    return Verb(name, usage, summary, Who.OPERATORS, Starts.PLAN, spec, typed)


# In the order of the help text.
VERBS: dict[str, Verb] = {verb.name: verb for verb in (
    _plan("full", "/rollback full <env>",
          "Full rollback (runbook Scenario 1): restore the newest backup aside, ask an approver, swap it in, restart "
          "the app, run smoke checks, post RESOLVED and the incident report.", full.SPEC),
    Verb("prepare", "/rollback prepare <env>",
         "Before a migration: take a backup, restore it aside and verify it, so that a full rollback is then an "
         "approval and a swap (posts \"Rollback ready\").", Who.OPERATORS, Starts.PREPARE),
    _plan("unprepare", "/rollback unprepare <env>",
          "Remove the environment's prepared copy, after an approval.", unprepare.SPEC),
    Verb("assess", "/rollback assess <env>",
         "Open an incident without acting and ask the runbook's question: CRITICAL (propose the full rollback), "
         "MINOR (continue and fix) or UNSURE (pause and page the approvers).", Who.RESPONDERS, Starts.ASSESS),
    Verb("declare", "/rollback declare <env> [text]",
         "Declare an incident without a rollback; the text is shown on the alert.", Who.RESPONDERS, Starts.DECLARE),
    Verb("report", "/rollback report <incident>",
         "Write the incident report again from the audit trail and post it to the incident's channel.",
         Who.POST_INCIDENT, Starts.REPORT),
    Verb("backup", "/rollback backup <env>",
         "Take a backup now (pg_dump -Fc, the runbook's layout) with a manifest of the catalog, row counts and "
         "checksums.", Who.RESPONDERS, Starts.BACKUP),
    Verb("diff", "/rollback diff <env>",
         "Compare the live schema with the newest backup: every kind of object, partitions, columns, triggers, "
         "types, grants. Read-only.", Who.RESPONDERS, Starts.DIFF),
    _plan("views", "/rollback views <env> [v1,v2]",
          "Drop the views live has and the backup lacks (or the ones named), in dependency order; no CASCADE.",
          objects.VIEWS_SPEC),
    _plan("indexes", "/rollback indexes <env> [i1,i2]",
          "Drop the indexes live has and the backup lacks (or the ones named).", objects.INDEXES_SPEC),
    _plan("columns", "/rollback columns <env>",
          "Re-add the columns the migration dropped, with their type, default and data from the backup.", columns.SPEC),
    _plan("tables", "/rollback tables <env> t1,t2",
          "Restore those tables' rows and columns from the backup (runbook Scenario 2), a partitioned table with all "
          "its partitions; others keep their rows.", tables.SPEC),
    _plan("rerun", "/rollback rerun <env> <migration>",
          "Drop what one migration creates and run it again, in one transaction (Scenario 3).", rerun.SPEC),
    _plan("app", "/rollback app <env> [release]",
          "Deploy the previous (or named) release of the application and check it (Scenario 4).", app.SPEC),
    Verb("diagnose", "/rollback diagnose <env>",
         "Read-only health report (runbook Part 8): long queries, lock waits, connectivity, disk, foreign-key orphans, "
         "statistics and indexes; each finding has a fix button that asks an approver.", Who.OPERATORS,
         Starts.DIAGNOSE),
    Verb("watch", "/rollback watch <env> [minutes|stop]",
         "While a migration runs, post long queries, lock waits, hung sessions and lost connections (default 30 "
         "minutes; stops by itself).", Who.OPERATORS, Starts.WATCH),
    _plan("carry-over", "/rollback carry-over <env> <incident> [t1,t2] [updates=t3,t4]",
          "After a full rollback: insert into live the rows inserted after the backup, from the failed database it "
          "kept (parents first, one transaction, triggers off). Updates only for the tables named in updates=, "
          "where live still holds the backup's version; never deletes.", carry_over.SPEC),
    _plan("restore-quarantine", "/rollback restore-quarantine <env> <incident>",
          "Put back, exactly, the foreign-key orphans an incident moved into rollback_quarantine.", quarantine.RESTORE_SPEC),
    _plan("cleanup", "/rollback cleanup <env>",
          "Drop the restored copies that interrupted or failed runs left behind (never live, never a kept failed "
          "copy), after an approval.", cleanup.SPEC),
    _plan("remedy", "/rollback remedy <env> <kind> <target>", "A diagnose finding's fix (its button starts it).",
          remedies.SPEC, typed=False),
    _plan("restart", "/rollback restart <env>",
          "Start the application again and check it, after a swap (the button on such a run starts it).",
          restart.SPEC, typed=False),
    Verb("status", "/rollback status", "Open incidents and running rollbacks, with their current step; prepared "
         "copies; pages and mails not delivered.", Who.ANYONE, Starts.STATUS),
    Verb("help", "/rollback help", "This list.", Who.ANYONE, Starts.HELP),
)}

# The plans by name: a run records its plan's name, and a restart rebuilds the plan from it.
PLANS: dict[str, PlanSpec] = {name: verb.plan for name, verb in VERBS.items() if verb.plan is not None}


def typed_verbs() -> list[Verb]:
    """The verbs a person may type, in the help text's order."""
    return [verb for verb in VERBS.values() if verb.typed]
