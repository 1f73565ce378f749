"""The carry-over's gated step: the rows `carry_over.find` chose, written into live in one transaction.

Inserts and updates are read from the failed database and written with the tables' own triggers and rules
off (`quiet_writes`), foreign keys on, parents first. Each row is written under a savepoint: a row that would
break a constraint is not written, and is kept whole — as jsonb, with PostgreSQL's reason — in
`rollback_quarantine.carried_over`, once. An update is written only where live's row still hashes to the
backup's version, checked in the same statement, so a row the application changed between the preview and
the approval is kept aside, never overwritten.
"""

from __future__ import annotations

import json

from psycopg import errors, sql

from actions.engine.plan import RunContext, StepOutcome
from actions.postgres import server as pg
from actions.postgres.catalog import qualified, stable_session
from actions.postgres.quiet_writes import quiet

KEEP = """
CREATE SCHEMA IF NOT EXISTS rollback_quarantine;
CREATE TABLE IF NOT EXISTS rollback_quarantine.carried_over (
    id bigserial PRIMARY KEY,
    incident_id text NOT NULL,
    source_table text NOT NULL,       -- schema.table the row could not be written into
    row_key text NOT NULL,            -- its primary key, as ROW(key)::text
    reason text NOT NULL,             -- why: the constraint it would break, as PostgreSQL said it, or live's change
    kept_at timestamptz NOT NULL DEFAULT now(),
    row_data jsonb NOT NULL,          -- the row as the failed database has it
    UNIQUE (incident_id, source_table, row_key)
);
"""
CHANGED_SINCE = "live changed this row after the rollback: it no longer holds the backup's version, so it is not overwritten"
SHOWN = 6  # rows kept aside named in the step's line


async def carry(ctx: RunContext) -> StepOutcome:
    env, work, failed_db = ctx.environment, ctx.facts["carry"], ctx.facts["failed_db"]
    incident_id = ctx.facts["from_incident"]
    inserted, updated, kept = {}, {}, []
    async with await pg.connect(env, failed_db, read_only=True) as failed, await pg.connect(env) as live:
        await stable_session(failed)
        await stable_session(live)  # the update's check hashes live's row as the backup's hash was made
        async with live.transaction(), quiet(live, [w["table"] for w in work]):
            for w in work:
                inserted[w["table"]] = updated[w["table"]] = 0
                writes = [(k, _insert(w), None) for k in [*w["inserts"], *w["taken"]]]
                if any(c not in w["key"] for c in w["columns"]):  # a table of key columns only has no update
                    writes += [(k, _update(w), backup_hash) for k, backup_hash in w["updates"].items()]
                rows = dict(await _rows(failed, w, [*(k for k, _, _ in writes), *w["changed"]]))
                for key_text, statement, backup_hash in writes:
                    row = rows[key_text]
                    reason = None
                    try:
                        async with live.transaction():  # a savepoint: one row's failure is only that row's
                            params = (json.dumps(row),) if backup_hash is None else (json.dumps(row), backup_hash)
                            cursor = await live.execute(statement, params)
                    except (errors.IntegrityError, errors.DataError) as broke:
                        reason = str(broke).splitlines()[0]
                    else:
                        if backup_hash is None:
                            inserted[w["table"]] += cursor.rowcount
                        elif cursor.rowcount:
                            updated[w["table"]] += cursor.rowcount
                        else:
                            reason = CHANGED_SINCE
                    if reason:
                        await _keep_aside(live, incident_id, w["table"], key_text, reason, row)
                        kept.append(f"{w['table']} {key_text}: {reason}")
                for key_text in w["changed"]:
                    await _keep_aside(live, incident_id, w["table"], key_text, CHANGED_SINCE, rows[key_text])
                    kept.append(f"{w['table']} {key_text}: {CHANGED_SINCE}")
                await _advance_sequences(live, w["table"])
    done, changed = sum(inserted.values()), sum(updated.values())
    listing = "; ".join(f"{t} +{inserted[t]:,} ~{updated[t]:,}" for t in inserted if inserted[t] or updated[t])
    note = (f"; {len(kept)} row(s) not written, kept in rollback_quarantine.carried_over: "
            + "; ".join(kept[:SHOWN]) + (" …" if len(kept) > SHOWN else "")) if kept else ""
    return StepOutcome(f"{done:,} rows inserted" + (f" and {changed:,} updated" if changed else "")
                       + f" in live ({listing or 'none'}), in one transaction, the tables' triggers off{note}",
                       {"carried": inserted, "updated_rows": updated, "kept_aside": len(kept)})


async def _keep_aside(live, incident_id: str, table: str, key_text: str, reason: str, row: dict) -> None:
    """Kept once: a second carry-over meets the same row and changes nothing (not even the id sequence, which
    ON CONFLICT DO NOTHING would advance). The table is made on the first row kept: a carry-over that kept
    nothing adds nothing to live but the rows."""
    await live.execute(KEEP)
    await live.execute(
        "INSERT INTO rollback_quarantine.carried_over (incident_id, source_table, row_key, reason, row_data) "
        "SELECT %s, %s, %s, %s, %s::jsonb WHERE NOT EXISTS (SELECT 1 FROM rollback_quarantine.carried_over "
        "WHERE incident_id = %s AND source_table = %s AND row_key = %s)",
        (incident_id, table, key_text, reason, json.dumps(row), incident_id, table, key_text))


async def _rows(failed, w: dict, keys: list[str]) -> list[tuple[str, dict]]:
    """(key text, the row's common columns as JSON) of `keys`, read from the failed database in one pass."""
    key = sql.SQL("ROW({})::text").format(sql.SQL(", ").join(map(sql.Identifier, w["key"])))
    cursor = await failed.execute(sql.SQL(
        "SELECT r.__key, to_jsonb(r) - '__key' FROM (SELECT {c}, {k} AS __key FROM {t}) AS r "
        "WHERE r.__key = ANY(%s)").format(
        c=sql.SQL(", ").join(map(sql.Identifier, w["columns"])), k=key, t=qualified(w["table"])), (keys,))
    return await cursor.fetchall()


def _insert(w: dict) -> sql.Composable:
    columns = sql.SQL(", ").join(map(sql.Identifier, w["columns"]))
    overriding = sql.SQL(" OVERRIDING SYSTEM VALUE") if w["identity_always"] else sql.SQL("")
    return sql.SQL("INSERT INTO {t} ({c}){o} SELECT {c} FROM jsonb_populate_record(NULL::{t}, %s::jsonb)").format(
        t=qualified(w["table"]), c=columns, o=overriding)


def _update(w: dict) -> sql.Composable:
    """One row to the failed database's values, where live's row still hashes (over the compared columns,
    as `writes_after` hashes them) to the backup's version: rowcount 0 says live changed it."""
    values = [c for c in w["columns"] if c not in w["key"]]
    return sql.SQL("UPDATE {t} AS t SET ({c}) = ROW({v}) FROM jsonb_populate_record(NULL::{t}, %s::jsonb) AS r "
                   "WHERE {match} AND hashtextextended(ROW({h})::text, 0) = %s").format(
        t=qualified(w["table"]), c=sql.SQL(", ").join(map(sql.Identifier, values)),
        v=sql.SQL(", ").join(sql.Identifier("r", c) for c in values),
        match=sql.SQL(" AND ").join(sql.SQL("{} = {}").format(sql.Identifier("t", k), sql.Identifier("r", k))
                                    for k in w["key"]),
        h=sql.SQL(", ").join(sql.Identifier("t", c) for c in w["hashed"]))


async def _advance_sequences(live, table: str) -> None:
    """Every sequence a column of `table` owns (serial, identity) past the largest value the column holds."""
    cursor = await live.execute(
        "SELECT a.attname, pg_get_serial_sequence(%s, a.attname) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "AND pg_get_serial_sequence(%s, a.attname) IS NOT NULL", (table, table, table))
    for column, sequence in await cursor.fetchall():
        await live.execute(sql.SQL(
            "SELECT setval(%s::regclass, greatest((SELECT coalesce(max({c}), 0) FROM {t}), "
            "coalesce(pg_sequence_last_value(%s::regclass), 0), 1), true)").format(
            c=sql.Identifier(column), t=qualified(table)), (sequence, sequence))
