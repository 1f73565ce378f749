"""Part 7's quick rollbacks: `/rollback views <env>` and `/rollback indexes <env>`.

Drops the views (or indexes) that exist live but not in the backup — or exactly the ones named.
Unlike the runbook's `DROP VIEW … CASCADE`, nothing goes that the preview did not list: the drop
order comes from `pg_depend` (`actions/dependencies.py`), views built on a target are listed and
dropped before it, what PostgreSQL drops along with a target is listed, and any other dependent
object blocks the step. An index on a partitioned table is one index: its partitions' indexes go
with it. Every definition is kept in the run's facts, to recreate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from actions.backups.scratch import backup_catalog
from actions.config import Environment
from actions.engine.plan import ApprovalPreview, Plan, PlanSpec, RunContext, RunOutcome, Step, StepFailed, StepOutcome
from actions.plans import partial
from actions.postgres import server as pg
from actions.postgres.catalog import describe
from actions.postgres.dependencies import drop_plan, drop_statement
from actions.postgres.schemadiff import compare
from actions.store.records import RunState


@dataclass(frozen=True)
class Kind:
    name: str  # "views" / "indexes"
    noun: str
    title: str


VIEWS = Kind("views", "view", "View rollback")
INDEXES = Kind("indexes", "index", "Index rollback")


def _names(args: tuple[str, ...]) -> list[str]:
    return [n if "." in n else f"public.{n}" for arg in args for n in arg.split(",") if n]


async def check_args(env: Environment, args: tuple[str, ...]) -> str | None:
    return "give the names as one comma-separated list (views a,b,c)" if len(args) > 1 else None


def build(kind: Kind):
    async def preflight(ctx: RunContext) -> StepOutcome:
        backup, backup_cat, live, diff, source = await partial.read_diff(ctx)
        named = _names(tuple(ctx.facts.get("args", [])))
        present = live.views if kind is VIEWS else live.indexes
        if named:
            unknown = [n for n in named if n not in present]
            if unknown:
                raise StepFailed(f"no such {kind.noun} in the live database: {', '.join(unknown)}")
            targets = named
        else:
            targets = diff.views_added if kind is VIEWS else diff.indexes_added
        skipped = []
        if kind is INDEXES:
            skipped = [n for n in targets if live.indexes[n]["constraint"]]
            targets = [n for n in targets if n not in skipped]
        if not targets:
            raise StepFailed(f"nothing to drop: every {kind.noun} in {ctx.environment.database} is in the backup"
                             + (f" (skipped, they back constraints: {', '.join(skipped)})" if skipped else ""))
        async with await pg.connect(ctx.environment) as conn:
            plan = await drop_plan(conn, targets)
        if plan.not_own or plan.blocking:
            raise StepFailed("; ".join([*plan.not_own, *(f"{b}: dropping it would need CASCADE" for b in plan.blocking)])
                             + f". Nothing was changed; drop or change those first, or name other {kind.name}")
        definitions = {n: live.views[n] if n in live.views else live.indexes[n]["definition"] for n in plan.order}
        extra = f"; {len(plan.dependents)} dependent view(s) too: {', '.join(plan.dependents)}" if plan.dependents else ""
        return StepOutcome(
            f"{len(targets)} {kind.name} {'named' if named else 'live but not in the backup'} ({source}){extra}; "
            f"drop order from the catalog's dependencies: {', '.join(plan.order)}"
            + (f"; going with them: {_listed(plan.with_them, 10)}" if plan.with_them else "")
            + (f"; skipped (back constraints): {', '.join(skipped)}" if skipped else ""),
            {"drop": plan.order, "kinds": plan.kinds, "definitions": definitions, "dependents": plan.dependents,
             "with_them": plan.with_them, "skipped": skipped})

    async def drop(ctx: RunContext) -> StepOutcome:
        async with await pg.connect(ctx.environment) as conn:
            async with conn.transaction():
                for name in ctx.facts["drop"]:
                    await conn.execute(drop_statement(ctx.facts["kinds"][name], name))
        await ctx.remember({"dropped": True})
        return StepOutcome(f"dropped {len(ctx.facts['drop'])} {kind.name} in one transaction: {', '.join(ctx.facts['drop'])}")

    async def verify(ctx: RunContext) -> StepOutcome:
        async with await pg.connect(ctx.environment) as conn:
            live = await describe(conn)
        present = live.views if kind is VIEWS else live.indexes
        still = [n for n in ctx.facts["drop"] if n in present]
        if still:
            raise StepFailed(f"still present after the drop: {', '.join(still)}")
        if ctx.facts.get("args"):
            return StepOutcome(f"the {len(ctx.facts['drop'])} named {kind.name} are gone")
        backup_cat, _ = await backup_catalog(ctx.environment, Path(partial.backup_of(ctx).path))
        diff = compare(live, backup_cat)
        extra = sorted(set(diff.views_added if kind is VIEWS else diff.indexes_added) - set(ctx.facts.get("skipped", [])))
        if extra:
            raise StepFailed(f"live still has {kind.name} the backup lacks: {', '.join(extra)}")
        expected = backup_cat.views if kind is VIEWS else backup_cat.top_level_indexes()
        return StepOutcome(f"live {kind.name} now match the backup's: none is live that the backup lacks "
                           f"(the backup has {len(expected)})")

    def preview(ctx: RunContext) -> ApprovalPreview:
        order, kinds = ctx.facts["drop"], ctx.facts["kinds"]
        actions = [f"DROP {kinds[n]} `{n}`" for n in order[:15]]
        if len(order) > 15:
            actions.append(f"… and {len(order) - 15} more (all listed in the thread)")
        if ctx.facts.get("dependents"):
            actions.append(f"Views built on them are dropped first (not asked for): {_listed(ctx.facts['dependents'], 10)}")
        if ctx.facts.get("with_them"):
            actions.append(f"PostgreSQL drops along with them: {_listed(ctx.facts['with_them'], 10)}")
        actions.append("In this order (each before what it is built on), all in one transaction; no CASCADE. "
                       "The definitions are kept in the audit trail.")
        return ApprovalPreview(
            title=f"Drop {len(order)} {kind.name} in {ctx.environment.name}", actions=tuple(actions),
            facts=(("Target", ctx.environment.target), ("Compared with", ctx.facts.get("diff_source", "")),
                   ("Requested by", f"<@{ctx.run.requested_by}>")),
            confirm=f"Drop {len(order)} {kind.name} from {ctx.environment.database}?")

    def outcome(ctx: RunContext, state: RunState, failed_step: str | None) -> RunOutcome:
        if state is RunState.SUCCEEDED:
            return RunOutcome(f"`{ctx.environment.database}` no longer has the {len(ctx.facts['drop'])} {kind.name}.",
                           "Recreate any of them from its definition in the audit trail if needed.")
        return RunOutcome(f"Nothing was changed: `{ctx.environment.database}` is untouched.",
                       "Fix what the ❌ step reports, then run the command again." if state.failed else "")

    def plan(env: Environment, args: tuple[str, ...]) -> Plan:
        return partial.partial_plan(
            kind.name, kind.title,
            Step("preflight", f"Preflight: backup and the {kind.name} to drop", preflight),
            Step("drop", f"Drop the {kind.name}", drop, destructive=True, ask_approval_after="preflight", preview=preview),
            Step("verify", f"Verify the {kind.name}", verify),
            outcome=outcome, reads_backup=True)  # one transaction: nothing to undo

    return plan


def _listed(items: list[str], limit: int) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


VIEWS_SPEC = PlanSpec("views", VIEWS.title, build(VIEWS), check_args)
INDEXES_SPEC = PlanSpec("indexes", INDEXES.title, build(INDEXES), check_args)
