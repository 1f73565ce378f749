"""`/rollback tables`, before any approval: the shadow rows equal the backup's, fit the live
constraints (and the live partitions' bounds), and orphan nothing through any foreign key."""

from __future__ import annotations

import asyncio
from typing import Any

from psycopg import sql

from actions.backups.manifest import load_manifest
from actions.engine.plan import RunContext, StepFailed, StepOutcome
from actions.plans.tables import sql as q
from actions.plans.tables.partitions import bound_violations
from actions.plans.tables.swap import orphan_line
from actions.postgres import server as pg


def _plan_columns(table: str, backup: list[dict], live: list[dict], problems: list[str]) -> dict[str, Any]:
    """How the backup's rows go into the live table: columns to add, to insert, live-only ones kept."""
    by_name = {c["name"]: c for c in live}
    add, insert, override = [], [], False
    for b in backup:
        c = by_name.get(b["name"])
        if c is None:
            if b["identity"] or b["generated"]:
                problems.append(f"{table}.{b['name']} (identity or generated in the backup) is gone live: "
                                "re-adding such a column is not done here")
            add.append(b)
            insert.append(b["name"])
        elif c["type"] != b["type"]:
            problems.append(f"{table}.{b['name']} is {c['type']} live but {b['type']} in the backup")
        elif c["generated"]:
            if not b["generated"] or c["default"] != b["default"]:
                problems.append(f"{table}.{b['name']} is computed live (GENERATED {c['default']}) but not the same "
                                "way in the backup: its values could not be restored")
        else:
            insert.append(b["name"])
            override |= c["identity"] == "a"
    backup_names = {b["name"] for b in backup}
    live_only = [c for c in live if c["name"] not in backup_names]
    for c in live_only:
        if c["not_null"] and c["default"] is None and not c["identity"]:
            problems.append(f"{table}.{c['name']} is live-only, NOT NULL and has no default: the backup's rows "
                            "would have no value for it")
    return {"table": table, "add": add, "insert": insert, "override": override,
            "live_only": [c["name"] for c in live_only], "live_columns": live, "backup_columns": sorted(backup_names)}


async def check(ctx: RunContext) -> StepOutcome:
    """Before any approval: the shadow rows equal the backup's, fit the live constraints (and the live
    partitions' bounds), orphan nothing."""
    tables, specs, schema = ctx.facts["tables"], ctx.facts["specs"], q.shadow_schema(ctx)
    units = ctx.facts.get("units", [])
    unit_of = {t: u for u in units for t in (*u["leaves"], *u["live_only"])}
    created = {c["name"] for u in units for c in u["create"]}
    attached = {a["name"] for u in units for a in u["attach"]}
    manifest = await asyncio.to_thread(load_manifest, q.backup_of(ctx).path)
    problems, notes, work, checked, linked = [], [], [], [], set()
    async with await pg.connect(ctx.environment) as conn:
        await q.prepare(conn)
        for t in tables:
            got = await q.sums(conn, q.in_schema(schema, t))
            entry = manifest.catalog.tables.get(t) if manifest else None
            expected, against = ((entry.checksum, "manifest") if entry and entry.checksum
                                 else (specs[t]["scratch"], "scratch copy"))
            if got != expected:
                problems.append(f"{t}: the shadow rows ({got}) differ from the backup's {against} ({expected})")
            # A partition to re-create will have its partitioned table's columns.
            columns_of = unit_of[t]["name"] if t in created else t
            live_columns = await q.table_columns(conn, columns_of)
            w = _plan_columns(t, specs[t]["columns"], live_columns, problems)
            w["columns_of"] = columns_of
            if t in unit_of and w["add"]:
                problems.append(f"{unit_of[t]['name']}: the backup has column(s) live lacks "
                                f"({', '.join(c['name'] for c in w['add'])}); bring them back first "
                                f"(`/rollback columns {ctx.environment.name}`), then restore its rows")
                w["add"] = []
            if t in attached and _shape(live_columns) != _shape(await q.table_columns(conn, unit_of[t]["name"])):
                problems.append(f"{t} cannot be attached to {unit_of[t]['name']} again: its columns are no longer "
                                "the same as the partitioned table's")
            for c in w["add"]:
                why = await q.unusable_definition(conn, c)
                if why:
                    problems.append(f"{t}.{c['name']} cannot be re-added as the backup had it ({c['type']}"
                                    f"{' DEFAULT ' + c['default'] if c['default'] else ''}): {why}")
            live_not_null = {c["name"] for c in w["live_columns"] if c["not_null"]}
            for name in (n for n in w["insert"] if n in live_not_null):
                nulls = await pg.scalar(conn, sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(
                    q.in_schema(schema, t), sql.Identifier(name)))
                if nulls:
                    problems.append(f"{t}.{name} is NOT NULL live; {nulls:,} backup row(s) have no value")
            violations, unchecked = await q.check_violations(conn, columns_of, q.in_schema(schema, t))
            problems += [f"{t} CHECK {v}" for v in violations]
            notes += [f"{t} CHECK {u} (names a live-only column; enforced by the swap)" for u in unchecked]
            if t in unit_of and t not in created and t not in attached:
                refused = await bound_violations(conn, t, q.in_schema(schema, t))
                if refused:
                    problems.append(f"{refused:,} of the backup's rows of {t} fall outside its live bound: live "
                                    "has a partition for them that the backup lacks; detach or drop it first")
            exists = t not in created
            w["live_rows"] = await pg.scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(q.live_rel(t))) if exists else 0
            w["backup_rows"] = int(got.split(":")[0])
            w["against"] = against
            w["unit"] = unit_of[t]["name"] if t in unit_of else None
            work.append(w)
        for u in units:  # the partitioned table's own CHECK constraints, on all of its rows
            violations, _ = await q.check_violations(conn, u["name"], q.in_schema(schema, u["name"]))
            problems += [f"{u['name']} CHECK {v}" for v in violations]
        columns = {w["table"]: set(w["backup_columns"]) for w in work}
        columns |= {name: {c["name"] for c in cols} for name, cols in ctx.facts.get("unit_columns", {}).items()}
        replaced = {*tables, *(u["name"] for u in units)}
        for fk in ctx.facts["fks"]:
            child_new, parent_new = fk["child"] in replaced, fk["parent"] in replaced
            lacking = [f"{fk['child']}.{c}" for c in fk["child_cols"] if child_new and c not in columns[fk["child"]]]
            lacking += [f"{fk['parent']}.{c}" for c in fk["parent_cols"] if parent_new and c not in columns[fk["parent"]]]
            if lacking:
                problems.append(f"{q.fk_label(fk)} uses column(s) the backup lacks: {', '.join(lacking)}")
                continue
            child = q.in_schema(schema, fk["child"]) if child_new else q.live_rel(fk["child"], fk["child_partitioned"])
            parent = (q.in_schema(schema, fk["parent"]) if parent_new
                      else q.live_rel(fk["parent"], fk["parent_partitioned"]))
            count, sample = await q.orphans(
                conn, fk, child, parent,
                q.live_rel(fk["parent"], fk["parent_partitioned"]) if parent_new and not child_new and not fk["validated"]
                else None)
            if count:
                problems.append(orphan_line(fk, count, sample, "backup's" if child_new else "live"))
                linked.add(fk["child"] if parent_new else fk["parent"])
            checked.append(q.fk_label(fk))
    if problems:
        await ctx.remember({"also_restore": sorted(linked - replaced)})
        raise StepFailed("the swap would not be safe; nothing was changed: " + "; ".join(problems))
    # Existing tables first; a partition is created before its rows go in; one re-attached after.
    work.sort(key=lambda w: (w["table"] in attached, w["table"] in created))
    await ctx.remember({"work": work, "fks_checked": checked, "check_notes": notes})
    against = sorted({w["against"] for w in work})
    shown = [f"{w['table']} {w['backup_rows']:,}" for w in work if w["unit"] is None]
    shown += [f"{u['name']} {sum(w['backup_rows'] for w in work if w['unit'] == u['name']):,} in "
              f"{len(u['leaves'])} partition(s)" for u in units]
    return StepOutcome(
        f"shadow rows equal the backup's ({' and '.join(against)}): {', '.join(shown)}"
        f"; live NOT NULL and CHECK constraints hold"
        + ("; every partition's rows fit its bound" if units else "")
        + f"; no orphans across {len(checked)} foreign key(s)"
        + (f"; {'; '.join(notes)}" if notes else ""))


def _shape(columns: list[dict]) -> set[tuple]:
    """What ATTACH PARTITION needs to be the same (names and types; the order may differ)."""
    return {(c["name"], c["type"]) for c in columns}
