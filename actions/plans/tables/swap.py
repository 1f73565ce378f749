"""`/rollback tables`, after the approval: the swap transaction, its verification, and how a run ends.

The swap keeps each live table object — other tables' foreign keys, views, grants, sequences and
indexes stay attached to it — and replaces its rows, in one REPEATABLE READ transaction:

1. `SET LOCAL lock_timeout`, `SET LOCAL session_replication_role = replica` (superuser, checked in
   preflight): no trigger fires, so no foreign-key check fails half-way, no ON DELETE CASCADE or
   SET NULL reaches another table, no user trigger rewrites a restored value.
2. `LOCK TABLE ONLY … IN EXCLUSIVE MODE` (ACCESS EXCLUSIVE where columns are added): no concurrent
   write; and any session that would reference a row of these tables waits, as its own foreign-key
   check needs a lock on them. The snapshot is taken after the locks.
3. The live columns must still be the ones checked before the approval.
4. `CREATE TABLE rollback_replaced_<run>.<t> AS SELECT * FROM ONLY <t>` (the way back), then
   `DELETE FROM ONLY` (never TRUNCATE: it refuses a referenced table without CASCADE), `ADD COLUMN`
   for the backup's columns the table lacks (on the emptied table), `INSERT … [OVERRIDING SYSTEM
   VALUE] SELECT` from the shadow, leaving out columns live computes (GENERATED).
5. Proof before COMMIT, any failure raising to roll everything back: every foreign key from or to
   the tables has no orphan (anti-joins), each table equals the shadow row by row (EXCEPT ALL over
   the backup's columns, both ways), every linked table's checksum equals its value before.
6. Last, owned sequences are raised to the tables' max id, never lowered (setval is not undone by a
   rollback; raising only is harmless).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from actions.engine.plan import ApprovalPreview, RunContext, RunOutcome, StepFailed, StepOutcome
from actions.plans.facts import RunFacts, Swap, facts_update
from actions.plans.tables import partitions as units_sql
from actions.plans.tables import sql as q
from actions.postgres import server as pg
from actions.store.records import RunState

LOCK_TIMEOUT = "10s"  # the swap waits this long for sessions using the tables, then gives up (nothing changed)
UNCHANGED = "rolled back, nothing was changed"


async def swap(ctx: RunContext) -> StepOutcome:
    """One transaction: keep the live rows aside, put the backup's in, prove it, commit."""
    tables, work, fks = ctx.facts["tables"], ctx.facts["work"], ctx.facts["fks"]
    units = ctx.facts.get("units", [])
    created = {c["name"]: c for u in units for c in u["create"]}
    attached = {a["name"]: a for u in units for a in u["attach"]}
    replaced = {*tables, *(u["name"] for u in units)}
    shadow, kept = q.shadow_schema(ctx), q.replaced_schema(ctx)
    neighbours = sorted({(n, p) for fk in fks for n, p in ((fk["child"], fk["child_partitioned"]),
                                                        (fk["parent"], fk["parent_partitioned"])) if n not in replaced})
    report, raised, moved = [], [], []
    async with await pg.connect(ctx.environment) as conn:
        await q.prepare(conn)
        # One snapshot, taken after the locks: the checks below see exactly what this transaction did.
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        try:
            async with conn.transaction():
                await conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
                await conn.execute("SET LOCAL session_replication_role = replica")
                for u in units:  # the partitioned table and every partition under it
                    await conn.execute(sql.SQL("LOCK TABLE {} IN {} MODE").format(
                        q.ident(u["name"]), sql.SQL("ACCESS EXCLUSIVE" if u["create"] or u["attach"] else "EXCLUSIVE")))
                for w in (w for w in work if w["table"] not in created):
                    await conn.execute(sql.SQL("LOCK TABLE ONLY {} IN {} MODE").format(
                        q.ident(w["table"]), sql.SQL("ACCESS EXCLUSIVE" if w["add"] or w["table"] in attached
                                                     else "EXCLUSIVE")))
                # What was checked and approved must still hold (the locks now stop new foreign keys to them).
                for w in work:
                    if await q.table_columns(conn, w.get("columns_of", w["table"])) != w["live_columns"]:
                        raise StepFailed(f"{w['table']} changed since it was checked (its columns differ); "
                                         "nothing was changed: run the command again")
                if await q.foreign_keys(conn, ctx.facts.get("fk_tables", tables)) != fks:
                    raise StepFailed("the foreign keys from or to these tables changed since they were checked; "
                                     "nothing was changed: run the command again")
                before = {n: await q.sums(conn, q.live_rel(n, p)) for n, p in neighbours}
                await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(kept)))
                for w in work:
                    if w["table"] in created:  # dropped since the backup: back with the backup's bound
                        await conn.execute(units_sql.create_statement(created[w["table"]]))
                        await units_sql.owner_like_parent(conn, created[w["table"]])
                    report.append(await _replace(conn, w, q.in_schema(shadow, w["table"]), q.in_schema(kept, w["table"])))
                    if w["table"] in attached:  # detached since the backup: its rows replaced, attached again
                        await conn.execute(units_sql.attach_statement(attached[w["table"]]))
                moved = [f"re-created {c}" for c in created] + [f"re-attached {a}" for a in attached]
                for fk in fks:
                    unvalidated_inbound = fk["parent"] in replaced and fk["child"] not in replaced and not fk["validated"]
                    count, sample = await q.orphans(
                        conn, fk, q.live_rel(fk["child"], fk["child_partitioned"]),
                        q.live_rel(fk["parent"], fk["parent_partitioned"]),
                        q.in_schema(kept, fk["parent"]) if unvalidated_inbound and fk["parent"] in tables else None)
                    if count:
                        raise StepFailed(f"{UNCHANGED}: " + orphan_line(fk, count, sample, "live"))
                for w in work:
                    extra, missing = await q.differences(conn, q.live_rel(w["table"]), q.in_schema(shadow, w["table"]),
                                                         q.backup_columns(ctx, w["table"]))
                    if extra or missing:
                        raise StepFailed(f"{w['table']} would differ from the backup ({extra:,} row(s) not in it, "
                                         f"{missing:,} missing); {UNCHANGED}")
                layout = await units_sql.layout_problems(conn, units)
                if layout:
                    raise StepFailed(f"the partitions would not be laid out as in the backup ({'; '.join(layout)}); "
                                     f"{UNCHANGED}")
                for n, p in neighbours:
                    if await q.sums(conn, q.live_rel(n, p)) != before[n]:
                        raise StepFailed(f"{n}, which was not named, would have changed; {UNCHANGED}")
                # Sequences belong to the named tables (a partitioned table's, not its partitions').
                owners = [(w["table"], False) for w in work if w["unit"] is None] + [(u["name"], True) for u in units]
                for table, partitioned in owners:
                    for column, sequence in await q.owned_sequences(conn, table):
                        value = await q.raise_sequence(conn, q.live_rel(table, partitioned), column, sequence)
                        if value is not None:
                            raised.append(f"{sequence} → {value}")
        except psycopg.errors.LockNotAvailable:
            raise StepFailed(f"could not lock {', '.join(ctx.facts.get('named', tables))} within {LOCK_TIMEOUT}: other "
                             "sessions were using them. Nothing was changed; run the command again when they are "
                             "quieter (or stop the app)") from None
        except psycopg.Error as exc:
            raise StepFailed(f"the swap failed and was {UNCHANGED}: {str(exc).splitlines()[0]}") from None
    await ctx.remember({**facts_update(swap=Swap.DONE), "swap_report": report, "sequences_raised": raised})
    return StepOutcome(
        f"one transaction committed: {'; '.join(report)}; the replaced rows are kept in schema {kept}; "
        + (f"partitions {', '.join(moved)} with the backup's bounds; " if moved else "")
        + f"{len(fks)} foreign key(s) re-checked, no orphans; each table equals the backup row by row; "
        f"{len(neighbours)} linked table(s) unchanged"
        + (f"; sequences raised: {', '.join(raised)}" if raised else "; no sequence needed raising"))


async def _replace(conn: psycopg.AsyncConnection, w: dict, shadow: sql.Identifier, keep_as: sql.Identifier) -> str:
    live = q.ident(w["table"])
    saved = (await conn.execute(sql.SQL("CREATE TABLE {} AS SELECT * FROM ONLY {}").format(keep_as, live))).rowcount
    deleted = (await conn.execute(sql.SQL("DELETE FROM ONLY {}").format(live))).rowcount
    for c in w["add"]:  # on the emptied table: no rewrite, and NOT NULL holds at once
        await conn.execute(sql.SQL("ALTER TABLE ONLY {} ADD COLUMN {} {}{}{}").format(
            live, sql.Identifier(c["name"]), sql.SQL(c["type"]),
            sql.SQL(" DEFAULT {}").format(sql.SQL(c["default"])) if c["default"] else sql.SQL(""),
            sql.SQL(" NOT NULL") if c["not_null"] else sql.SQL("")))
    inserted = (await conn.execute(sql.SQL("INSERT INTO {} ({}) {}SELECT {} FROM {}").format(
        live, q.cols(w["insert"]), sql.SQL("OVERRIDING SYSTEM VALUE " if w["override"] else ""),
        q.cols(w["insert"]), shadow))).rowcount
    if saved != deleted or inserted != w["backup_rows"]:
        raise StepFailed(f"{w['table']}: kept {saved:,}, deleted {deleted:,}, inserted {inserted:,} of "
                         f"{w['backup_rows']:,} rows; {UNCHANGED}")
    return f"{w['table']} {deleted:,} → {inserted:,} rows" + (f" (+{len(w['add'])} column(s))" if w["add"] else "")


def orphan_line(fk: dict, count: int, sample: list[str], whose: str) -> str:
    more = "…" if count > len(sample) else ""
    return (f"ORPHANS {fk['child']}: {count:,} {whose} row(s) would reference {fk['parent']}"
            f"({', '.join(fk['parent_cols'])}) values it would not have (constraint {fk['name']}; "
            f"{', '.join(fk['child_cols'])} = {', '.join(sample)}{more})")


async def verify(ctx: RunContext) -> StepOutcome:
    """After COMMIT: each table's rows equal the backup's, row by row over the backup's columns."""
    lines = []
    async with await pg.connect(ctx.environment) as conn:
        await q.prepare(conn)
        for w in ctx.facts["work"]:
            columns, shadow = q.backup_columns(ctx, w["table"]), q.in_schema(q.shadow_schema(ctx), w["table"])
            live_sum, backup_sum = (await q.sums(conn, q.live_rel(w["table"]), columns),
                                    await q.sums(conn, shadow, columns))
            extra, missing = await q.differences(conn, q.live_rel(w["table"]), shadow, columns)
            if live_sum != backup_sum or extra or missing:
                raise StepFailed(f"{w['table']} differs from the backup after the swap ({extra:,} row(s) not in it, "
                                 f"{missing:,} missing): has something written to it since the swap committed?")
            if w.get("unit") is None:
                lines.append(f"{w['table']} {w['backup_rows']:,} rows × {len(columns)} columns")
        units = ctx.facts.get("units", [])
        layout = await units_sql.layout_problems(conn, units)
        if layout:
            raise StepFailed(f"the partitions are not laid out as in the backup after the swap: {'; '.join(layout)}")
    lines += [f"{u['name']} {sum(w['backup_rows'] for w in ctx.facts['work'] if w.get('unit') == u['name']):,} rows in "
              f"{len(u['leaves'])} partition(s), each partition's rows and bound as in the backup" for u in units]
    replaced = {*ctx.facts["tables"], *(u["name"] for u in units)}
    linked = len({n for fk in ctx.facts["fks"] for n in (fk["child"], fk["parent"])} - replaced)
    return StepOutcome(f"equal to the backup row by row: {', '.join(lines)}; the {linked} table(s) linked by foreign "
                       "keys were checked unchanged inside the swap transaction; no other table was written")


async def cleanup(ctx: RunContext) -> StepOutcome:
    await drop_shadow(ctx)
    return StepOutcome(f"schema {q.shadow_schema(ctx)} dropped; schema {q.replaced_schema(ctx)} is kept: it holds the "
                       "rows the tables had before the swap (the way back)")


async def drop_shadow(ctx: RunContext) -> None:
    async with await pg.connect(ctx.environment) as conn:
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(q.shadow_schema(ctx))))
    await ctx.remember({"shadow_created": False})


def _unit_lines(units: list[dict]) -> list[str]:
    """What the preview says of each partitioned table: one unit, and every change to its layout."""
    lines = []
    for u in units:
        lines.append(f"`{u['name']}` is partitioned: its {len(u['leaves'])} partition(s) are restored as one unit, each "
                     "partition's rows directly into it (every row back in the partition the backup had it in)")
        lines += [f"Re-create partition `{c['name']}` of `{c['parent']}` {c['bound']} (dropped since the backup); it "
                  "gets its partitioned table's columns, indexes, keys and triggers" for c in u["create"]]
        lines += [f"Re-attach `{a['name']}` to `{a['parent']}` {a['bound']} (a table of its own since the backup), after "
                  "its rows are replaced" for a in u["attach"]]
        if u["live_only"]:
            lines.append(f"Empty the partition(s) the backup lacks, keeping them: {', '.join(u['live_only'])}")
    return lines


def _rows_line(work: list[dict], units: list[dict]) -> str:
    lines = [f"{w['table']}: {w['live_rows']:,} → {w['backup_rows']:,}" for w in work if w.get("unit") is None]
    for u in units:
        mine = [w for w in work if w.get("unit") == u["name"]]
        lines.append(f"{u['name']} ({len(u['leaves'])} partitions): {sum(w['live_rows'] for w in mine):,} → "
                     f"{sum(w['backup_rows'] for w in mine):,}")
    return "\n".join(lines)


def preview(ctx: RunContext) -> ApprovalPreview:
    work, kept, env, backup = ctx.facts["work"], q.replaced_schema(ctx), ctx.environment, q.backup_of(ctx)
    units = ctx.facts.get("units", [])
    named = ctx.facts.get("named") or [w["table"] for w in work]
    names = ", ".join(f"`{t}`" for t in named)
    added = [f"`{w['table']}`: " + ", ".join(f"{c['name']} {c['type']}" for c in w["add"]) for w in work if w["add"]]
    live_only = [f"`{w['table']}`: {', '.join(w['live_only'])}" for w in work if w["live_only"] and w.get("unit") is None]
    live_only += [f"`{u['name']}`: {', '.join(c)}" for u in units
                  for c in [next((w["live_only"] for w in work if w.get("unit") == u["name"] and w["live_only"]), [])] if c]
    checked = ctx.facts["fks_checked"]
    not_back = [o for u in units for o in u.get("own_objects", [])]
    actions = [
        f"In one transaction, lock {names} against writes (waiting at most {LOCK_TIMEOUT})",
        f"Copy their current rows into schema `{kept}` (kept: the way back)",
        *_unit_lines(units),
        *([f"Re-add the backup's columns: {'; '.join(added)}"] if added else []),
        ("Replace their rows with the backup's, triggers off for this transaction only "
         "(`session_replication_role = replica`: no cascade, no trigger fires)"),
        (f"Re-check all {len(checked)} foreign key(s) in and out, compare each table with the backup row by row "
         "and the linked tables with their state before; any difference rolls everything back"),
        "Raise the tables' own sequences to their highest id if needed (never lower them), then commit",
    ]
    facts = [
        ("Target", env.target), ("Backup", f"{backup.path.parent.name} ({backup.created:%Y-%m-%d %H:%M} UTC)"),
        ("Rows live → backup", _rows_line(work, units)),
        ("Foreign keys checked", f"{len(checked)}, none orphaned:\n" + "\n".join(checked[:12])
         + ("\n…" if len(checked) > 12 else "")),
        ("Current rows kept in", f"`{kept}`"),
        ("Live-only columns kept", "; ".join(live_only) + " (their default in the backup's rows)" if live_only else "none"),
        ("Triggers not fired", ", ".join(ctx.facts.get("quiet_triggers") or []) or "none"),
        *([("Not re-created with the partitions", ", ".join(not_back))] if not_back else []),
        ("Other tables", "not touched"),
        ("Requested by", f"<@{ctx.run.requested_by}>"),
    ]
    return ApprovalPreview(
        title=f"Restore {len(named)} table(s) of {env.name} from the backup", actions=tuple(actions), facts=tuple(facts),
        confirm=(f"Replace the rows of {', '.join(named)} with the backup's? "
                 f"Their current rows are kept in {kept}.")[:300])


async def reconcile(ctx: RunContext) -> None:
    """Read from the catalog whether the swap committed: its transaction created the replaced schema."""
    if "tables" not in ctx.facts:
        return  # preflight did not pass: nothing was created
    try:
        async with await pg.connect(ctx.environment) as conn:
            kept = await pg.scalar(conn, "SELECT count(c.oid) FROM pg_namespace n LEFT JOIN pg_class c ON "
                                   "c.relnamespace = n.oid WHERE n.nspname = %s GROUP BY n.oid", (q.replaced_schema(ctx),))
            shadow = bool(await pg.scalar(conn, "SELECT 1 FROM pg_namespace WHERE nspname = %s", (q.shadow_schema(ctx),)))
        scratch = ctx.facts.get("scratch_db")
        if scratch:
            async with await pg.admin(ctx.environment) as conn:
                scratch = scratch if await pg.database_exists(conn, scratch) else None
    except Exception:
        await ctx.remember(facts_update(swap=Swap.UNKNOWN))
        return
    await ctx.remember({**facts_update(swap=Swap.DONE if kept is not None else Swap.NOT_DONE),
                        "shadow_created": shadow, "scratch_db": scratch})


async def abort(ctx: RunContext) -> str:
    """Drop the shadow schema and the scratch database unless the swap committed (then the shadow is kept)."""
    swap = RunFacts.of(ctx.facts).swap
    if swap is Swap.UNKNOWN:
        return "Nothing was cleaned up: the server could not be asked where the tables stand."
    if swap is Swap.DONE:
        return (f"The shadow schema {q.shadow_schema(ctx)} (the backup's rows) is kept for comparison; drop it when "
                "done." if ctx.facts.get("shadow_created") else "")
    done = []
    if ctx.facts.get("shadow_created"):
        await drop_shadow(ctx)
        done.append(f"The shadow schema {q.shadow_schema(ctx)} was dropped.")
    if ctx.facts.get("scratch_db"):
        async with await pg.admin(ctx.environment) as conn:
            await pg.drop_database(conn, ctx.facts["scratch_db"])
        await ctx.remember({"scratch_db": None})
        done.append("The scratch database was dropped.")
    return " ".join(done)


def outcome(ctx: RunContext, state: RunState, failed_step: str | None) -> RunOutcome:
    db, kept, facts = ctx.environment.database, q.replaced_schema(ctx), ctx.facts
    tables = ", ".join(f"`{t}`" for t in facts.get("named") or facts.get("tables", [])) or "the named tables"
    swap = RunFacts.of(facts).swap
    if swap is Swap.UNKNOWN:
        return RunOutcome(f"Unknown: the server did not answer. If schema `{kept}` exists in `{db}`, the swap committed "
                       f"and {tables} hold the backup's rows; otherwise they are untouched.",
                       "Check the server, then look for that schema (`\\dn rollback_*`) before doing anything else.")
    if swap is Swap.DONE:
        done = (f"{tables} in `{db}` hold the backup's rows; the rows they had are kept in schema `{kept}`; "
                "the other tables kept their rows.")
        way_back = (f"To undo: in one transaction with `SET LOCAL session_replication_role = replica`, DELETE the rows "
                    f"and INSERT them back from `{kept}`"
                    + (" (detach the re-attached partitions and drop the re-created ones first)"
                       if any(u["create"] or u["attach"] for u in facts.get("units", [])) else "")
                    + f". Drop `{kept}` once it is no longer needed.")
        if state is RunState.SUCCEEDED:
            return RunOutcome(done, f"Check the application, then press Mark resolved. {way_back}")
        return RunOutcome(f"The swap committed: {done}", f"Read the ❌ step (it ran after the swap). {way_back}")
    advice = "Fix what the ❌ step reports, then run the command again."
    if facts.get("also_restore"):
        together = ",".join(t.removeprefix("public.") for t in [*(facts.get("named") or facts["tables"]),
                                                                 *facts["also_restore"]])
        advice = (f"The backup's rows cannot go back alone. Restore the linked tables with them "
                  f"(`/rollback tables {ctx.environment.name} {together}`), or fix the rows listed first.")
    left = [f"schema `{q.shadow_schema(ctx)}` (a copy of the backup's rows)"] if facts.get("shadow_created") else []
    left += [f"scratch database `{facts['scratch_db']}`"] if facts.get("scratch_db") else []
    leftovers = f" Left behind, safe to drop: {' and '.join(left)}." if left else ""
    return RunOutcome(f"Nothing was changed: {tables} in `{db}` are untouched.{leftovers}",
                   advice if state.failed else "")
