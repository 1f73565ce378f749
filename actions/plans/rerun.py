"""`/rollback rerun <env> <migration>` (Scenario 3): drop what one migration creates, run it again.

The migration file comes from the environment's `migrations_dir`. The objects it creates are read
from its SQL (CREATE VIEW / MATERIALIZED VIEW / INDEX / TABLE / FUNCTION); those that exist now are
dropped, each before what it is built on (`pg_depend`) and without CASCADE (dependents the file
does not create block the step), and the file is run
again, all in one transaction. A table that holds rows is never dropped: that needs a table rollback.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from psycopg import sql

from actions.config import Environment
from actions.engine.plan import (
    ApprovalPreview,
    Plan,
    PlanSpec,
    RunContext,
    RunOutcome,
    Step,
    StepFailed,
    StepOutcome,
)
from actions.plans import partial
from actions.postgres import server as pg
from actions.postgres.catalog import describe
from actions.postgres.dependencies import drop_plan, drop_statement
from actions.store.records import RunState

NAME = r'((?:"[^"]+"|[\w$]+)(?:\.(?:"[^"]+"|[\w$]+))?)'
CREATES = re.compile(
    r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:UNIQUE\s+)?(MATERIALIZED\s+VIEW|VIEW|INDEX|TABLE|FUNCTION)\s+"
    r"(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?" + NAME, re.IGNORECASE)
FORBIDDEN = re.compile(r"\b(CONCURRENTLY|BEGIN\s*;|COMMIT\b|ROLLBACK\b|VACUUM\b|CREATE\s+DATABASE)", re.IGNORECASE)


def _strip_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/", " ", re.sub(r"--[^\n]*", " ", text), flags=re.DOTALL)


def _qualified(name: str) -> str:
    parts = [p.strip('"') for p in re.findall(r'"[^"]+"|[\w$]+', name)]
    return ".".join(parts) if len(parts) == 2 else f"public.{parts[0]}"


def created_objects(text: str) -> list[tuple[str, str]]:
    """(kind, schema.name) for each object the SQL creates, in order of creation."""
    found = []
    for kind, name in CREATES.findall(_strip_comments(text)):
        item = (" ".join(kind.upper().split()), _qualified(name))
        if item not in found:
            found.append(item)
    return found


def find_migration(env: Environment, name: str) -> Path:
    if env.migrations_dir is None:
        raise ValueError(f"no `migrations_dir` is configured for {env.name}")
    if not env.migrations_dir.is_dir():
        raise ValueError(f"the migrations folder {env.migrations_dir} does not exist")
    exact = env.migrations_dir / name
    if exact.is_file() and exact.parent == env.migrations_dir:
        return exact
    matches = sorted(p for p in env.migrations_dir.glob("*.sql") if p.name.startswith(name))
    if len(matches) != 1:
        known = ", ".join(p.name for p in sorted(env.migrations_dir.glob("*.sql"))[-8:])
        raise ValueError(f"{'no' if not matches else 'more than one'} migration matches {name!r} in "
                         f"{env.migrations_dir} (latest: {known or 'none'})")
    return matches[0]


async def check_args(env: Environment, args: tuple[str, ...]) -> str | None:
    if len(args) != 1 or "/" in args[0]:
        return "name one migration file of the environment's migrations_dir"
    try:
        path = find_migration(env, args[0])
    except ValueError as problem:
        return str(problem)
    text = path.read_text(encoding="utf-8")
    if bad := FORBIDDEN.search(_strip_comments(text)):
        return (f"{path.name} contains {bad.group(1).split()[0].upper()}, which cannot run inside the one "
                "transaction a re-run uses; run it by hand")
    if not created_objects(text):
        return f"{path.name} creates no view, index, table or function: nothing to re-run"
    return None


async def preflight(ctx: RunContext) -> StepOutcome:
    path = find_migration(ctx.environment, ctx.facts["args"][0])
    text = path.read_text(encoding="utf-8")
    objects = created_objects(text)
    async with await pg.connect(ctx.environment) as conn:
        live = await describe(conn)
        existing = []
        for kind, name in objects:
            present = {"VIEW": live.views, "MATERIALIZED VIEW": live.views, "INDEX": live.indexes,
                       "TABLE": live.tables}.get(kind)
            if present is not None and name in present:
                existing.append((kind, name))
        relations = [name for kind, name in existing if kind != "FUNCTION"]
        plan = await drop_plan(conn, relations)
        outside = [d for d in plan.dependents if d not in {name for _, name in objects}] + plan.blocking + plan.not_own
        if outside:
            raise StepFailed(f"objects the migration does not create depend on what it would drop: {', '.join(outside)}; "
                             "a re-run would need CASCADE")
        for kind, name in existing:
            if kind == "TABLE":
                rows = await pg.scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*name.split(".", 1))))
                if rows:
                    raise StepFailed(f"{path.name} creates table {name}, which now holds {rows:,} rows: a re-run would "
                                     "drop them. Use `/rollback tables` or fix it by hand")
    await ctx.remember({"migration": path.name, "sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
                        "objects": objects, "existing": existing, "drop": plan.order, "kinds": plan.kinds})
    return StepOutcome(f"{path.name} creates {len(objects)} object(s); {len(existing)} exist now and will be dropped "
                       f"first: {', '.join(n for _, n in existing) or 'none'}")


async def rerun(ctx: RunContext) -> StepOutcome:
    path = find_migration(ctx.environment, ctx.facts["migration"])
    text = path.read_text(encoding="utf-8")
    if hashlib.sha256(text.encode()).hexdigest()[:16] != ctx.facts["sha256"]:
        raise StepFailed(f"{path.name} changed after the approval was asked: nothing was run; ask again")
    async with await pg.connect(ctx.environment) as conn:
        async with conn.transaction():
            # Each before what it is built on (pg_depend); functions are replaced in place by CREATE OR REPLACE.
            for name in ctx.facts["drop"]:
                await conn.execute(drop_statement(ctx.facts["kinds"][name], name))
            await conn.execute(text.encode())  # the file as written: several statements, one transaction
    await ctx.remember({"rerun": True})
    return StepOutcome(f"dropped {len(ctx.facts['existing'])} object(s) and ran {path.name} in one transaction")


async def verify(ctx: RunContext) -> StepOutcome:
    async with await pg.connect(ctx.environment) as conn:
        live = await describe(conn)
    present = {"VIEW": live.views, "MATERIALIZED VIEW": live.views, "INDEX": live.indexes, "TABLE": live.tables}
    missing = [name for kind, name in ctx.facts["objects"]
               if kind in present and name not in present[kind]
               or kind == "FUNCTION" and not any(f.startswith(name + "(") for f in live.functions)]
    if missing:
        raise StepFailed(f"after the re-run these do not exist: {', '.join(missing)}")
    return StepOutcome(f"now present: {', '.join(name for _, name in ctx.facts['objects'])}")


def preview(ctx: RunContext) -> ApprovalPreview:
    actions = [f"DROP {ctx.facts['kinds'][name]} `{name}`" for name in ctx.facts["drop"]][:12]
    actions.append(f"Run `{ctx.facts['migration']}` again (sha256 {ctx.facts['sha256']}…)")
    actions.append("All in one transaction: if the migration fails, the dropped objects come back.")
    return ApprovalPreview(
        title=f"Re-run {ctx.facts['migration']} on {ctx.environment.name}", actions=tuple(actions),
        facts=(("Target", ctx.environment.target), ("Creates", ", ".join(n for _, n in ctx.facts["objects"])[:1500]),
               ("Requested by", f"<@{ctx.run.requested_by}>")),
        confirm=f"Drop {len(ctx.facts['existing'])} object(s) and run {ctx.facts['migration']} again?")


def outcome(ctx: RunContext, state: RunState, failed_step: str | None) -> RunOutcome:
    if state is RunState.SUCCEEDED:
        return RunOutcome(f"`{ctx.facts['migration']}` ran again; what it creates exists.")
    if ctx.facts.get("rerun"):
        return RunOutcome("The re-run committed; the check after it failed.", "Read the ❌ step.")
    return RunOutcome(f"Nothing was changed: `{ctx.environment.database}` is untouched (the re-run is one transaction).",
                   "Fix what the ❌ step reports (the migration's own error, say), then run the command again."
                   if state.failed else "")


def build_plan(env: Environment, args: tuple[str, ...]) -> Plan:
    return partial.partial_plan(
        "rerun", "Migration re-run",
        Step("preflight", "Preflight: the migration and what it creates", preflight),
        Step("rerun", "Drop and re-run the migration", rerun, destructive=True, preview=preview),
        Step("verify", "Verify what the migration creates", verify),
        outcome=outcome)


SPEC = PlanSpec("rerun", "Migration re-run", build_plan, check_args)
