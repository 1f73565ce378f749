"""The crash sweep (issue 19): a plan run by a real `rollback-bot serve` process, killed with SIGKILL at a step
boundary — once the step's start is saved and before it acts, in the middle of a long step, once it has
acted and before its end is saved — then started again on the same state. After each kill:

- live holds the state before the run or the state the run makes, by whole-database fingerprint, never
  anything between;
- every audit row written before the kill is still there, unchanged, and the chain verifies;
- the interrupted run is reported with the step it stopped in;
- one approved click — *Abandon and clean up* — ends in a consistent state with no leftover copy:
  nothing the bot restored aside, no scratch database, no scratch or shadow schema in live.

CI runs a sample of the boundaries (every plan, the boundaries most likely to break); `FULL_SWEEP=1 pytest
tests/test_crash_sweep.py` runs every one. The figure goes in docs/RELIABILITY.md.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from actions.config import load_settings
from actions.plans.cleanup import SCHEMA_KINDS
from actions.verbs import PLANS
from demo.fingerprint import fingerprint
from fake_slack import FakeSlack
from support.crash import WAIT, Bot, audit_rows, chain_problem, live_is
from support.harness import (
    ADMIN_DSN,
    APPROVER,
    BOT_TOKEN,
    CHANNEL,
    OPERATOR,
    SIGNING_SECRET,
    StandInApp,
    add_people,
    crm_database,
    database_names,
    write_config,
)

FULL = os.environ.get("FULL_SWEEP") == "1"
SURVIVED: list[str] = []  # "<case> <step>:<moment>", for docs/RELIABILITY.md's figure


@dataclass(frozen=True)
class Case:
    name: str
    plan: str
    command: str
    long_steps: tuple[str, ...] = ()  # steps with a long part: also killed in the middle
    overrides: dict[str, str] = field(default_factory=dict)
    rows: int = 20_000

    def settings_plan(self, tmp_path: Path, crm, app):
        settings = load_settings(write_config(tmp_path, crm, app, **self.overrides))
        env = settings.environments["staging"]
        return PLANS[self.plan].build(env, tuple(self.command.split()[2:]))


CASES = (
    Case("full (immediately)", "full", "full staging", ("restore_aside",), rows=200_000),
    Case("full (at_swap)", "full", "full staging", ("restore_aside",), {"stop_app": '"at_swap"'}, rows=200_000),
    Case("columns", "columns", "columns staging", ("copy",)),
    Case("views", "views", "views staging"),
    Case("indexes", "indexes", "indexes staging"),
    Case("tables", "tables", "tables staging customers", ("shadow",)),
)

# The sample CI runs: per plan, the boundaries around its destructive step and its long part.
SAMPLE = {
    "full (immediately)": {("restore_aside", "middle"), ("swap", "started"), ("swap", "acted"), ("report", "acted")},
    "full (at_swap)": {("stop_app", "acted"), ("swap", "acted"), ("start_app", "started")},
    "columns": {("copy", "acted"), ("readd", "acted")},
    "views": {("drop", "started"), ("drop", "acted")},
    "indexes": {("drop", "acted")},
    "tables": {("shadow", "acted"), ("swap", "acted")},
}


def boundaries(case: Case, steps: list[str]) -> list[tuple[str, str]]:
    every = [(step, moment) for step in steps for moment in
             (("started", "middle", "acted") if step in case.long_steps else ("started", "acted"))]
    return every if FULL else [b for b in every if b in SAMPLE[case.name]]


def step_keys(case: Case) -> list[str]:
    """The plan's steps, as the build for a default environment has them (stop_app changes the full plan's)."""
    from actions.plans import full
    if case.plan == "full":
        mode = case.overrides.get("stop_app", '"immediately"').strip('"')
        return [s.key for s in full.build_plan(mode).steps]
    plan = PLANS[case.plan].build(None, tuple(case.command.split()[2:]))
    return [s.key for s in plan.steps]


PARAMS = [pytest.param(case, step, moment, id=f"{case.name}-{step}-{moment}")
          for case in CASES for step, moment in boundaries(case, step_keys(case))]


async def approve_until_dead(bot: Bot, slack: FakeSlack) -> None:
    """Approve every approval request as it comes, until the bot has killed itself."""
    clicked: set[str] = set()
    async with asyncio.timeout(WAIT):
        while not bot.dead:
            for message in slack.messages(CHANNEL, include_replies=True):
                if "Approval needed" in message.text and message.ts not in clicked:
                    clicked.add(message.ts)
                    try:
                        await slack.click(APPROVER, message, "approval-approve")
                    except Exception:
                        pass  # the bot died while the click was on its way: the kill came first
            await asyncio.sleep(0.05)
        await bot.process.wait()


async def leftovers(crm) -> list[str]:
    """What a run made beside live and never made live: copies, scratch databases, scratch schemas in live
    (not a table rollback's way back, `rollback_replaced_`, which an uninterrupted run keeps too)."""
    names = [n for n in await database_names(crm.dbname) if "__rollback_" in n or "__scratch_" in n]
    async with await psycopg.AsyncConnection.connect(crm.dsn) as conn:
        schemas = await (await conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rollback%' ORDER BY 1")).fetchall()
    return names + [s for (s,) in schemas if s.startswith(SCHEMA_KINDS)]


async def finished_state(tmp_path: Path, case: Case) -> object:
    """The whole-database state the plan makes when nothing stops it (one uninterrupted run)."""
    async with crm_database(tmp_path / "reference", rows=case.rows) as crm, \
            FakeSlack(SIGNING_SECRET, bot_token=BOT_TOKEN) as slack:
        add_people(slack)
        app = StandInApp(tmp_path / "reference", crm.dsn)
        await app.start()
        bot = Bot(write_config(tmp_path / "reference", crm, app, **case.overrides), slack)
        try:
            await bot.start()
            await slack.send_command(OPERATOR, case.command)
            await slack.click(APPROVER, await slack.wait_for_message(CHANNEL, "Approval needed", timeout=WAIT),
                              "approval-approve")
            await slack.wait_for_message(CHANNEL, "finished in", timeout=WAIT)
            return await fingerprint(crm.dsn)
        finally:
            await bot.stop()
            await app.stop()


_FINISHED: dict[str, object] = {}


@pytest.mark.parametrize(("case", "step", "moment"), PARAMS)
async def test_killed_at_a_step_boundary(tmp_path: Path, case: Case, step: str, moment: str):
    if case.plan != "full" and case.name not in _FINISHED:
        _FINISHED[case.name] = await finished_state(tmp_path, case)
    rows = case.rows if moment == "middle" or case.plan != "full" else 20_000  # a long restore only to kill it inside
    async with crm_database(tmp_path, rows=rows) as crm, FakeSlack(SIGNING_SECRET, bot_token=BOT_TOKEN) as slack:
        add_people(slack)
        app = StandInApp(tmp_path, crm.dsn)
        await app.start()
        audit_db = tmp_path / "state" / "rollback-audit.sqlite"
        bot = Bot(write_config(tmp_path, crm, app, **case.overrides), slack)
        # A full rollback makes live the backup, exactly; a partial one what an uninterrupted run makes.
        states = {"before the run": crm.after,
                  "as the run makes it": crm.before if case.plan == "full" else _FINISHED[case.name]}
        try:
            await bot.start(crash_at=f"{case.plan}:{step}:{moment}")
            await slack.send_command(OPERATOR, case.command)
            await approve_until_dead(bot, slack)
            written = audit_rows(audit_db)

            await bot.start()  # the same config and state: the restart after the crash
            ending = await slack.wait_for_message(CHANNEL, "interrupted: the bot stopped", timeout=WAIT)
            title = next(s.title for s in case.settings_plan(tmp_path, crm, app).steps if s.key == step)
            assert f"“{title}”" in ending.all_text(), ending.all_text()
            # Live's data is whole; the run's own scratch schemas may still be there, for the clean-up to drop.
            after_restart = await live_is(crm, states, ignore=SCHEMA_KINDS)
            now = audit_rows(audit_db)
            assert now[:len(written)] == written  # nothing written before the kill was lost or changed
            assert chain_problem(audit_db) is None

            # One approved click: abandon and clean up.
            await slack.click(OPERATOR, ending, "clean-up")

            def said(*texts: str) -> list:
                return [m for m in slack.messages(CHANNEL, include_replies=True) if any(t in m.text for t in texts)]
            ended = ("Clean-up of staging finished", "Clean-up of staging failed")
            await slack.wait_for(lambda: said("Drop leftover", *ended), timeout=WAIT,
                                 what="the clean-up's approval request or its end")
            if not said(*ended):
                await slack.click(APPROVER, said("Drop leftover")[-1], "approval-approve")
                await slack.wait_for(lambda: said(*ended), timeout=WAIT, what="the clean-up's end")
            assert await leftovers(crm) == []
            assert await live_is(crm, states) == after_restart  # the clean-up never touches live's data
            assert chain_problem(audit_db) is None
            SURVIVED.append(f"{case.name} {step}:{moment}")
        finally:
            await bot.stop()
            await app.stop()


def test_the_sweep_covers_every_plan_it_names():
    """Every case names a plan the bot has, every sampled boundary exists, and each plan has a sample."""
    for case in CASES:
        keys = step_keys(case)
        assert case.plan in PLANS and set(case.long_steps) <= set(keys)
        assert SAMPLE[case.name] and all(s in keys for s, _ in SAMPLE[case.name]), case.name
    assert ADMIN_DSN
