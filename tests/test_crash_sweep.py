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

import aiohttp
import psycopg
import pytest

from actions.config import load_settings
from actions.plans.cleanup import SCHEMA_KINDS
from actions.store.records import PreparedState
from actions.store.sqlite import Store
from actions.verbs import PLANS
from demo.fingerprint import fingerprint
from fake_slack import FakeSlack
from support.crash import WAIT, Bot, audit_rows, chain_problem, live_is
from support.harness import (
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
# The quarantine's rows carry the moment they were moved (`now()`): equal in number, never in content, between
# the reference run and the swept one.
VARIES = ("rollback_quarantine.rows: content differs with equal row count",)
SURVIVED: list[str] = []  # "<case> <step>:<moment>", for docs/RELIABILITY.md's figure


@dataclass(frozen=True)
class Case:
    name: str
    plan: str
    command: str
    long_steps: tuple[str, ...] = ()  # steps with a long part: also killed in the middle
    overrides: dict[str, str] = field(default_factory=dict)
    rows: int = 20_000
    # What runs first, uninterrupted: "full" (a full rollback; `command` may name its {incident}), "orphans"
    # (orphan rows and a diagnosis: the plan is started by its Quarantine button), "quarantined" (those
    # orphans quarantined by that button; `command` names the quarantine's {incident}).
    prelude: str = ""

    def settings_plan(self, tmp_path: Path, crm, app):
        settings = load_settings(write_config(tmp_path, crm, app, **self.overrides))
        env = settings.environments["staging"]
        return PLANS[self.plan].build(env, _args(self))


CASES = (
    Case("full (immediately)", "full", "full staging", ("restore_aside",), rows=200_000),
    Case("full (at_swap)", "full", "full staging", ("restore_aside",), {"stop_app": '"at_swap"'}, rows=200_000),
    Case("columns", "columns", "columns staging", ("copy",)),
    Case("views", "views", "views staging"),
    Case("indexes", "indexes", "indexes staging"),
    Case("tables", "tables", "tables staging customers", ("shadow",)),
    Case("carry-over", "carry-over", "carry-over staging {incident}", ("find",), prelude="full"),
    Case("remedy (quarantine)", "remedy", "", prelude="orphans"),
    Case("remedy (terminate)", "remedy", "", prelude="blocker"),
    Case("restore-quarantine", "restore-quarantine", "restore-quarantine staging {incident}", prelude="quarantined"),
)

# The sample CI runs: per plan, the boundaries around its destructive step and its long part.
SAMPLE = {
    "full (immediately)": {("restore_aside", "middle"), ("swap", "acted")},
    "full (at_swap)": {("stop_app", "acted"), ("swap", "started")},
    "columns": {("readd", "acted")},
    "views": {("drop", "acted")},
    "indexes": {("drop", "started")},
    "tables": {("swap", "acted")},
    "carry-over": {("find", "middle"), ("carry", "acted")},
    "remedy (quarantine)": {("apply", "acted")},
    "remedy (terminate)": {("apply", "started")},
    "restore-quarantine": {("put_back", "started")},
}


def _args(case: Case) -> tuple[str, ...]:
    """The plan's arguments as its build sees them (the steps do not depend on their values)."""
    if case.plan == "remedy":
        return ("quarantine", "{}")
    return tuple(w.replace("{incident}", "INC-20260101-0001") for w in case.command.split()[2:])


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
    plan = PLANS[case.plan].build(None, _args(case))
    return [s.key for s in plan.steps]


PARAMS = [pytest.param(case, step, moment, id=f"{case.name}-{step}-{moment}")
          for case in CASES for step, moment in boundaries(case, step_keys(case))]


async def approve_until_dead(bot: Bot, slack: FakeSlack) -> None:
    """Approve every approval request as it comes, until the bot has killed itself."""
    clicked: set[str] = set()
    deadline = asyncio.get_running_loop().time() + WAIT
    while not bot.dead:
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the bot never reached the boundary:\n" + slack.describe(20))
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


async def write_after_the_backup(crm) -> None:
    """Rows the application inserted after the backup: what a carry-over brings back."""
    async with await psycopg.AsyncConnection.connect(crm.dsn, autocommit=True) as conn:
        await conn.execute("INSERT INTO suppliers (name, country) SELECT 'after ' || g, 'DE' FROM generate_series(1, 50) g")


async def make_orphans(crm) -> None:
    """How orphans happen: a bulk load with the foreign-key triggers off."""
    async with await psycopg.AsyncConnection.connect(crm.dsn, autocommit=True) as conn:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("UPDATE contracts SET customer_id = customer_id + 100000000 WHERE id IN "
                               "(SELECT id FROM contracts ORDER BY id LIMIT 7)")


async def fix_button(slack: FakeSlack, label: str) -> tuple[object, str]:
    """/rollback diagnose, then its report and the action id of the fix whose button starts with `label`."""
    await slack.send_command(OPERATOR, "diagnose staging")
    report = await slack.wait_for_message(CHANNEL, "Diagnosis of staging", timeout=WAIT)
    [button] = [b["accessory"] for b in report.blocks if b.get("accessory", {}).get("action_id", "").startswith("remedy")
                and b["accessory"]["text"]["text"].startswith(label)]
    return report, button["action_id"]


SESSIONS: list[psycopg.AsyncConnection] = []  # a blocker and its waiter, closed at the end of each test


async def make_a_blocker(crm) -> None:
    """A session holding an ACCESS EXCLUSIVE lock in an open transaction, and one waiting for it."""
    holder = await psycopg.AsyncConnection.connect(crm.dsn)
    waiter = await psycopg.AsyncConnection.connect(crm.dsn, autocommit=True)
    SESSIONS.extend([holder, waiter])
    await holder.execute("LOCK TABLE tickets IN ACCESS EXCLUSIVE MODE")
    asyncio.get_running_loop().create_task(waiter.execute("SELECT count(*) FROM tickets"))
    await asyncio.sleep(0.3)


async def close_sessions() -> None:
    while SESSIONS:
        conn = SESSIONS.pop()
        try:
            await conn.close()
        except Exception:
            pass  # terminated by the remedy: already gone


async def approve_the_new_request(slack: FakeSlack, seen: set[str]) -> None:
    request = await slack.wait_for(lambda: next((m for m in slack.messages(CHANNEL, include_replies=True)
                                                 if "Approval needed" in m.text and m.ts not in seen), None),
                                   timeout=WAIT, what="an approval request")
    seen.add(request.ts)
    await slack.click(APPROVER, request, "approval-approve")


async def prelude(case: Case, crm, slack: FakeSlack):
    """What runs before the plan under test; returns how to start it (an awaitable of no arguments)."""
    seen: set[str] = set()
    if case.prelude == "full":
        await write_after_the_backup(crm)
        await slack.send_command(OPERATOR, "full staging")
        await approve_the_new_request(slack, seen)
        offer = await slack.wait_for_message(CHANNEL, "row(s) inserted after the backup are in", timeout=WAIT)
        await slack.wait_for_message(CHANNEL, "Full rollback of staging finished", timeout=WAIT)
        incident = next(w for w in offer.text.replace("`", " ").split() if w.startswith("INC-"))
        return lambda: slack.send_command(OPERATOR, case.command.format(incident=incident))
    if case.prelude == "blocker":
        await make_a_blocker(crm)
        report, action_id = await fix_button(slack, "Terminate blocker")
        return lambda: slack.click(OPERATOR, report, action_id)
    if case.prelude in ("orphans", "quarantined"):
        await make_orphans(crm)
        report, action_id = await fix_button(slack, "Quarantine")
        if case.prelude == "orphans":
            return lambda: slack.click(OPERATOR, report, action_id)
        await slack.click(OPERATOR, report, action_id)
        await approve_the_new_request(slack, seen)
        await slack.wait_for_message(CHANNEL, "Remedy of staging finished", timeout=WAIT)
        async with await psycopg.AsyncConnection.connect(crm.dsn) as conn:
            [(incident,)] = await (await conn.execute(
                "SELECT DISTINCT incident_id FROM rollback_quarantine.rows")).fetchall()
        return lambda: slack.send_command(OPERATOR, case.command.format(incident=incident))
    return lambda: slack.send_command(OPERATOR, case.command)


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
            start = await prelude(case, crm, slack)
            await asyncio.sleep(0.5)  # the prelude's last words (the count, a report) are written
            before, seen = await fingerprint(crm.dsn), {m.ts for m in slack.messages(CHANNEL, include_replies=True)}
            ends = len([m for m in slack.messages(CHANNEL, include_replies=True) if "finished in" in m.text])
            await start()
            await approve_the_new_request(slack, seen)
            await slack.wait_for(lambda: len([m for m in slack.messages(CHANNEL, include_replies=True)
                                              if "finished in" in m.text]) > ends, timeout=WAIT, what="the run's end")
            return before, await fingerprint(crm.dsn)
        finally:
            await bot.stop()
            await app.stop()


_FINISHED: dict[str, object] = {}


@pytest.mark.parametrize(("case", "step", "moment"), PARAMS)
async def test_killed_at_a_step_boundary(tmp_path: Path, case: Case, step: str, moment: str):
    try:
        await killed_at_a_step_boundary(tmp_path, case, step, moment)
    finally:
        await close_sessions()


async def killed_at_a_step_boundary(tmp_path: Path, case: Case, step: str, moment: str):
    if case.plan != "full" and case.prelude != "blocker" and case.name not in _FINISHED:
        _FINISHED[case.name] = await finished_state(tmp_path, case)
    rows = case.rows if moment == "middle" or case.plan != "full" else 20_000  # a long restore only to kill it inside
    async with crm_database(tmp_path, rows=rows) as crm, FakeSlack(SIGNING_SECRET, bot_token=BOT_TOKEN) as slack:
        add_people(slack)
        app = StandInApp(tmp_path, crm.dsn)
        await app.start()
        audit_db = tmp_path / "state" / "rollback-audit.sqlite"
        bot = Bot(write_config(tmp_path, crm, app, **case.overrides), slack)
        # A full rollback makes live the backup, exactly; a partial one what an uninterrupted run makes.
        if case.plan == "full":
            states = {"before the run": crm.after, "as the run makes it": crm.before}
        elif case.prelude == "blocker":  # ending a session changes no data
            states = {"before the run": crm.after, "as the run makes it": crm.after}
        else:
            start, finished = _FINISHED[case.name]
            states = {"before the run": start, "as the run makes it": finished}
        try:
            await bot.start(crash_at=f"{case.plan}:{step}:{moment}")
            start = await prelude(case, crm, slack)
            try:
                await start()
            except aiohttp.ClientError:
                pass  # the bot died before it answered the command or the click: that is the crash
            await approve_until_dead(bot, slack)
            assert bot.crash_report.read_text() == moment  # it died where it was asked to
            await close_sessions()  # the test's own sessions: the checks below read every table
            written = audit_rows(audit_db)

            await bot.start()  # the same config and state: the restart after the crash
            ending = await slack.wait_for_message(CHANNEL, "interrupted: the bot stopped", timeout=WAIT)
            title = next(s.title for s in case.settings_plan(tmp_path, crm, app).steps if s.key == step)
            assert f"“{title}”" in ending.all_text(), ending.all_text()
            # Live's data is whole; the run's own scratch schemas may still be there, for the clean-up to drop.
            after_restart = await live_is(crm, states, ignore=(*SCHEMA_KINDS, *VARIES))
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
            assert await live_is(crm, states, ignore=VARIES) == after_restart  # the clean-up never touches live's data
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


# A prepare (`actions/prepared/desk.py`) runs in phases, not runner steps; the same boundaries are swept. It
# runs after an earlier prepare, so that its last phase has an older copy to replace.
PREPARE_PHASES = ("preflight", "backup", "restore", "verify", "ready", "replace")
PREPARE_SAMPLE = {("restore", "middle"), ("ready", "acted"), ("replace", "started")}
PREPARE_PARAMS = [pytest.param(phase, moment, id=f"prepare-{phase}-{moment}")
                  for phase in PREPARE_PHASES
                  for moment in (("started", "middle", "acted") if phase == "restore" else ("started", "acted"))
                  if FULL or (phase, moment) in PREPARE_SAMPLE]


async def prepared_databases(crm) -> set[str]:
    return {n for n in await database_names(crm.dbname) if "__prepared_" in n}


@pytest.mark.parametrize(("phase", "moment"), PREPARE_PARAMS)
async def test_prepare_killed_at_a_phase_boundary(tmp_path: Path, phase: str, moment: str):
    """Live is never touched; after the restart exactly one ready copy stands at most — the earlier one, or
    the new one if it was saved ready — with its database; anything else is offered for clean-up at
    start-up, and one approved click leaves nothing else behind."""
    rows = 200_000 if moment == "middle" else 20_000
    async with crm_database(tmp_path, rows=rows) as crm, FakeSlack(SIGNING_SECRET, bot_token=BOT_TOKEN) as slack:
        add_people(slack)
        app = StandInApp(tmp_path, crm.dsn)
        await app.start()
        audit_db = tmp_path / "state" / "rollback-audit.sqlite"
        bot = Bot(write_config(tmp_path, crm, app), slack)
        try:
            await bot.start()
            await slack.send_command(OPERATOR, "prepare staging")
            await slack.wait_for_message(CHANNEL, "Rollback ready", timeout=WAIT)
            await bot.stop()
            before = await fingerprint(crm.dsn)

            await bot.start(crash_at=f"prepare:{phase}:{moment}")
            try:
                await slack.send_command(OPERATOR, "prepare staging")
            except aiohttp.ClientError:
                pass  # the bot died before it answered: that is the crash
            await approve_until_dead(bot, slack)
            assert bot.crash_report.read_text() == moment
            written = audit_rows(audit_db)

            offers = len([m for m in slack.messages(CHANNEL) if "Found at start-up" in m.text])
            await bot.start()
            await asyncio.sleep(1.0)  # the start-up's reconciliation and its scan for leftovers
            assert await live_is(crm, {"as it was": before}) == "as it was"
            assert audit_rows(audit_db)[:len(written)] == written and chain_problem(audit_db) is None
            store = Store(audit_db)
            try:
                ready = store.prepared_copies(states=(PreparedState.READY,))
            finally:
                store.close()
            assert len(ready) == 1, [(c.database, c.state) for c in ready]  # never two copies a rollback could use
            leftover = await prepared_databases(crm) - {ready[0].database}
            if leftover:
                offer = await slack.wait_for(lambda: [m for m in slack.messages(CHANNEL) if "Found at start-up" in m.text][offers:],
                                             timeout=WAIT, what="the start-up's offer to clean up")
                seen = {m.ts for m in slack.messages(CHANNEL, include_replies=True)}
                await slack.click(OPERATOR, offer[-1], "clean-up")
                await approve_the_new_request(slack, seen)
                await slack.wait_for_message(CHANNEL, "Clean-up of staging finished", timeout=WAIT)
            assert await prepared_databases(crm) == {ready[0].database}
            assert await live_is(crm, {"as it was": before}) == "as it was"
            assert chain_problem(audit_db) is None
            SURVIVED.append(f"prepare {phase}:{moment}")
        finally:
            await bot.stop()
            await app.stop()
