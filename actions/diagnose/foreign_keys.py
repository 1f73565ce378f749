"""Diagnose check: rows whose foreign key points at nothing (Contingency 4, "FK Constraint Violations").

Every foreign key of the database is read from pg_constraint — composite keys included, nothing
hard-coded — and checked with one anti-join each, under MATCH SIMPLE semantics: a row with a
NULL in its key references nothing and is not an orphan. Each constraint's query gets the time the
check has left, so a big database yields the constraints checked so far instead of nothing.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

import readable
from actions.diagnose.base import Check, CheckOutcome, Context, error_line, limit_statements
from actions.diagnose.model import Finding, Remedy, RemedyKind, Status
from actions.postgres.foreign_keys import ForeignKey
from actions.postgres.foreign_keys import foreign_keys as catalog_foreign_keys

CONTINGENCY_4 = ("Contingency 4 — FK Constraint Violations: move the orphan rows aside (the bot copies them into "
                 "rollback_quarantine before deleting them) or restore from the backup.")
SAMPLE = 5
MARGIN_SECONDS = 0.3  # stop starting new constraints this close to the time limit: report what was found


def orphans_query(fk: ForeignKey) -> sql.Composed:
    """Count the rows of the child whose complete key has no parent, and the first few by primary key."""
    keys = fk.primary_key or ["ctid"]
    sample = [sql.SQL("{} AS {}").format(sql.Identifier("c", k), sql.Identifier(f"k{i}")) for i, k in enumerate(keys)]
    aliases = [sql.Identifier(f"k{i}") for i in range(len(keys))]
    return sql.SQL("""
WITH orphans AS (SELECT {sample} FROM {child} AS c WHERE {orphan})
SELECT (SELECT count(*) FROM orphans),
       ARRAY(SELECT ARRAY[{texts}] FROM (SELECT * FROM orphans ORDER BY {order} LIMIT {limit}) AS s)""").format(
        sample=sql.SQL(", ").join(sample), child=sql.Identifier(*fk.child), orphan=fk.orphan_condition("c"),
        texts=sql.SQL(", ").join(sql.SQL("{}::text").format(a) for a in aliases),
        order=sql.SQL(", ").join(aliases), limit=sql.Literal(SAMPLE))


def sample_text(fk: ForeignKey, rows: list[list[str]]) -> str:
    keys = fk.primary_key or ["ctid"]
    values = [r[0] if len(r) == 1 else "(" + ", ".join(r) + ")" for r in rows]
    label = keys[0] if len(keys) == 1 else "(" + ", ".join(keys) + ")"
    return f"{label} {', '.join(values)}"


def finding(fk: ForeignKey, orphans: int, sample: list[list[str]]) -> Finding:
    more = ", …" if orphans > len(sample) else ""
    not_valid = " (constraint NOT VALID)" if not fk.validated else ""
    text = (f"{fk.name}: {readable.count(orphans, 'orphan row')} in {'.'.join(fk.child)} ({', '.join(fk.columns)}) "
            f"with no {'.'.join(fk.parent)} ({', '.join(fk.parent_columns)}){not_valid} — e.g. {sample_text(fk, sample)}{more}")
    return Finding(text, Remedy(RemedyKind.QUARANTINE, {"constraint": fk.name},
                                f"Quarantine {orphans:,} orphans ({fk.constraint_name})"))


async def foreign_keys(ctx: Context) -> CheckOutcome:
    keys = await catalog_foreign_keys(ctx.db)
    findings: list[Finding] = []
    notes: list[Finding] = []
    total = checked = 0
    for n, fk in enumerate(keys):
        if ctx.remaining() < MARGIN_SECONDS * 2:
            notes.append(Finding(f"{readable.count(len(keys) - n, 'foreign key')} not checked within the "
                                 f"{ctx.timeout:g} s limit (from {fk.name} on)"))
            break
        await limit_statements(ctx.db, ctx.deadline, MARGIN_SECONDS)
        try:
            cursor = await ctx.db.execute(orphans_query(fk))
        except psycopg.errors.LockNotAvailable:
            notes.append(Finding(f"{fk.name} not checked: {'.'.join(fk.child)} or {'.'.join(fk.parent)} is locked by another "
                                 "session (see Lock waits)"))
            continue
        except psycopg.errors.QueryCanceled as exc:
            notes.append(Finding(f"{fk.name} and {readable.count(len(keys) - n - 1, 'other')} not checked: "
                                 f"{error_line(exc)} (time limit {ctx.timeout:g} s)"))
            break
        orphans, sample = await cursor.fetchone()
        checked += 1
        if orphans:
            total += orphans
            findings.append(finding(fk, orphans, sample))
    if findings:
        summary = (f"{len(findings)} of {readable.count(len(keys), 'foreign key')} have orphan rows "
                   f"({readable.count(total, 'row')} in all)")
        status = Status.FAIL
    elif notes:
        summary, status = f"No orphan rows in the {checked} of {readable.count(len(keys), 'foreign key')} checked", Status.WARN
    else:
        summary, status = f"No orphan rows ({readable.count(len(keys), 'foreign key')} checked)", Status.OK
    hint = None if findings or not notes else ("Contingency 4 — FK Constraint Violations: some foreign keys could "
                                               "not be checked; run the diagnosis again once the locks are gone.")
    return CheckOutcome(status, summary, tuple(findings + notes), hint)


CHECKS = (Check("foreign_keys", "Foreign keys", CONTINGENCY_4, foreign_keys),)
