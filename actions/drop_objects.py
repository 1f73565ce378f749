"""Part 7's quick rollbacks: `/rollback views <env>` and `/rollback indexes <env>`.

Drops the views (or indexes) that exist live but not in the backup — or exactly the ones named.
Unlike the runbook's `DROP VIEW … CASCADE`, nothing goes that the preview did not list: views
that depend on a target are found in the catalog, listed first and dropped first; any other kind
of dependent object blocks the step. Every definition is kept in the run's facts, to recreate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from actions import partial_steps, pg
from actions.catalog import describe
from actions.config import Environment
from actions.plan import ApprovalPreview, Outcome, Plan, PlanSpec, RunContext, Step, StepFailed, StepOutcome
from actions.records import RunState
from actions.scratch import backup_catalog


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


async def view_dependents(conn: psycopg.AsyncConnection, names: list[str]) -> tuple[list[str], list[str]]:
    """(views depending on `names`, recursively; other objects depending on them, which block)."""
    views, blocking, frontier = [], [], list(names)
    while frontier:
        rows = await (await conn.execute("""
            SELECT DISTINCT CASE WHEN d.classid = 'pg_rewrite'::regclass THEN dn.nspname || '.' || dc.relname END,
                   CASE WHEN d.classid <> 'pg_rewrite'::regclass THEN pg_describe_object(d.classid, d.objid, d.objsubid) END
              FROM pg_depend d
              LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
              LEFT JOIN pg_class dc ON dc.oid = r.ev_class LEFT JOIN pg_namespace dn ON dn.oid = dc.relnamespace
             WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY(%s::regclass[]) AND d.deptype = 'n'
               AND (dc.oid IS NULL OR dc.oid <> d.refobjid)""",
            ([str(sql.Identifier(*n.split(".", 1)).as_string(conn)) for n in frontier],))).fetchall()
        frontier = []
        for view, other in rows:
            if view and view not in views and view not in names:
                views.append(view)
                frontier.append(view)
            elif other and other not in blocking:
                blocking.append(other)
    return views, blocking


def _drop_order(targets: list[str], dependents: list[str]) -> list[str]:
    # Dependents were found breadth-first from the targets: dropping the deepest first is safe.
    return list(reversed(dependents)) + targets


def build(kind: Kind):
    async def preflight(ctx: RunContext) -> StepOutcome:
        backup, backup_cat, live, diff, source = await partial_steps.read_diff(ctx)
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
            dependents, blocking = await view_dependents(conn, targets) if kind is VIEWS else ([], [])
        if blocking:
            raise StepFailed(f"other objects depend on these {kind.name} and would need CASCADE: {', '.join(blocking)}; "
                             "drop or change them first")
        order = _drop_order(targets, dependents)
        definitions = {n: (live.views[n] if kind is VIEWS else live.indexes[n]["definition"]) for n in order}
        materialized = sorted(await _materialized(ctx, order)) if kind is VIEWS else []
        extra = f"; {len(dependents)} dependent view(s) too: {', '.join(dependents)}" if dependents else ""
        return StepOutcome(
            f"{len(targets)} {kind.name} live but not in the backup ({source}){extra}"
            + (f"; skipped (back constraints): {', '.join(skipped)}" if skipped else ""),
            {"drop": order, "definitions": definitions, "materialized": materialized, "skipped": skipped})

    async def drop(ctx: RunContext) -> StepOutcome:
        async with await pg.connect(ctx.environment) as conn:
            async with conn.transaction():
                for name in ctx.facts["drop"]:
                    keyword = ("MATERIALIZED VIEW" if name in ctx.facts["materialized"] else "VIEW") if kind is VIEWS else "INDEX"
                    await conn.execute(sql.SQL("DROP {} {}").format(sql.SQL(keyword), sql.Identifier(*name.split(".", 1))))
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
        backup_cat, _ = await backup_catalog(ctx.environment, Path(ctx.facts["backup_path"]))
        expected = backup_cat.views if kind is VIEWS else backup_cat.indexes
        extra = sorted(set(present) - set(expected) - set(ctx.facts.get("skipped", [])))
        if extra:
            raise StepFailed(f"live still has {kind.name} the backup lacks: {', '.join(extra)}")
        return StepOutcome(f"live {kind.name} now match the backup's ({len(expected)})")

    def preview(ctx: RunContext) -> ApprovalPreview:
        order = ctx.facts["drop"]
        actions = [f"DROP {'VIEW' if kind is VIEWS else 'INDEX'} `{n}`" for n in order[:15]]
        if len(order) > 15:
            actions.append(f"… and {len(order) - 15} more (all listed in the thread)")
        actions.append("All in one transaction; no CASCADE. The definitions are kept in the audit trail.")
        return ApprovalPreview(
            title=f"Drop {len(order)} {kind.name} in {ctx.environment.name}", actions=tuple(actions),
            facts=(("Target", ctx.environment.target), ("Compared with", ctx.facts.get("diff_source", "")),
                   ("Requested by", f"<@{ctx.run.requested_by}>")),
            confirm=f"Drop {len(order)} {kind.name} from {ctx.environment.database}?")

    async def abort(ctx: RunContext) -> str:
        return ""  # nothing is prepared aside

    async def reconcile(ctx: RunContext) -> None:
        return None  # one transaction: it either committed (the step succeeded) or not

    def outcome(ctx: RunContext, state: RunState, failed_step: str | None) -> Outcome:
        if state is RunState.SUCCEEDED:
            return Outcome(f"`{ctx.environment.database}` no longer has the {len(ctx.facts['drop'])} {kind.name}.",
                           "Recreate any of them from its definition in the audit trail if needed.")
        return Outcome(f"Nothing was changed: `{ctx.environment.database}` is untouched.",
                       "Fix what the ❌ step reports, then run the command again." if state is RunState.FAILED else "")

    def plan(env: Environment, args: tuple[str, ...]) -> Plan:
        return Plan(kind.name, kind.title, (
            Step("declare", "Declare the incident", partial_steps.declare),
            Step("preflight", f"Preflight: backup and the {kind.name} to drop", preflight),
            Step("drop", f"Drop the {kind.name}", drop, destructive=True, ask_approval_after="preflight", preview=preview),
            Step("verify", f"Verify the {kind.name}", verify),
            Step("finish", "Update the incident report", partial_steps.finish),
        ), abort=abort, outcome=outcome, reconcile=reconcile)

    return plan


async def _materialized(ctx: RunContext, names: list[str]) -> set[str]:
    async with await pg.connect(ctx.environment) as conn:
        rows = await (await conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'm' AND n.nspname || '.' || c.relname = ANY(%s)", (names,))).fetchall()
    return {row[0] for row in rows}


VIEWS_SPEC = PlanSpec("views", VIEWS.title, build(VIEWS), check_args)
INDEXES_SPEC = PlanSpec("indexes", INDEXES.title, build(INDEXES), check_args)
