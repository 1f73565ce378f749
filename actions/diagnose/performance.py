"""Diagnose check: what makes queries slow after a migration (Contingency 5, "Performance
Degradation Post-Migration"): missing or stale planner statistics, invalid indexes, and the
indexes and views the newest backup's manifest lists that are missing live."""

from __future__ import annotations

import asyncio

import readable
from actions.backups.files import BackupProblem, newest_backup
from actions.backups.manifest import load_manifest
from actions.diagnose.base import Check, CheckOutcome, Context, age
from actions.diagnose.model import Finding, Remedy, RemedyKind, Status

CONTINGENCY_5 = ("Contingency 5 — Performance Degradation: ANALYZE/VACUUM the tables, REINDEX invalid indexes, "
                 "recreate missing indexes (/rollback diff lists them); if still slow, roll back the indexes.")
STALE_SHARE, STALE_ROWS = 0.10, 1000  # changed rows since the last analyze: > 10% of live rows and > 1000
DEAD_SHARE = 0.20  # dead rows above 20% of live rows: VACUUM rather than ANALYZE

_USER = "{s} NOT IN ('information_schema') AND {s} NOT LIKE 'pg\\_%%' AND {s} NOT LIKE 'rollback\\_%%'"

STATISTICS_SQL = f"""
SELECT schemaname, relname, n_live_tup, n_dead_tup, n_mod_since_analyze,
       extract(epoch FROM now() - greatest(last_analyze, last_autoanalyze))::float8
  FROM pg_stat_user_tables
 WHERE {_USER.format(s='schemaname')}
   AND ((last_analyze IS NULL AND last_autoanalyze IS NULL AND n_live_tup > 0)
        OR (n_mod_since_analyze > %(share)s * n_live_tup AND n_mod_since_analyze > %(rows)s))
 ORDER BY n_live_tup DESC, 1, 2"""

INVALID_INDEXES_SQL = f"""
SELECT n.nspname, ci.relname, ct.relname, pg_get_indexdef(i.indexrelid), p.pid
  FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid JOIN pg_class ct ON ct.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = ci.relnamespace
  LEFT JOIN pg_stat_progress_create_index p ON p.index_relid = i.indexrelid
 WHERE NOT i.indisvalid AND {_USER.format(s='n.nspname')}
 ORDER BY 1, 2"""

LIVE_OBJECTS_SQL = """
SELECT n.nspname || '.' || c.relname, c.relkind IN ('i', 'I')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('i', 'I', 'v', 'm')"""


def statistics_finding(schema: str, table: str, live: int, dead: int, changed: int,
                       analyzed_ago: float | None) -> Finding:
    name = f"{schema}.{table}"
    if analyzed_ago is None:
        text = f"{name} was never analyzed ({readable.count(live, 'live row')})"
    else:
        text = (f"{name} has stale statistics: {readable.count(changed, 'row')} changed since the last analyze "
                f"{age(analyzed_ago)} ago ({changed / max(live, 1):.0%} of {live:,} live rows)")
    if dead > DEAD_SHARE * live:
        return Finding(f"{text}; {readable.count(dead, 'dead row')} ({dead / max(live, 1):.0%})",
                       Remedy(RemedyKind.VACUUM, {"table": name}, f"VACUUM {name}"))
    return Finding(text, Remedy(RemedyKind.ANALYZE, {"table": name}, f"ANALYZE {name}"))


async def performance(ctx: Context) -> CheckOutcome:
    cursor = await ctx.db.execute(STATISTICS_SQL, {"share": STALE_SHARE, "rows": STALE_ROWS})
    tables = [statistics_finding(*row) for row in await cursor.fetchall()]
    cursor = await ctx.db.execute(INVALID_INDEXES_SQL)
    invalid = []
    for schema, index, table, definition, building in await cursor.fetchall():
        name = f"{schema}.{index}"
        if building is not None:
            invalid.append(Finding(f"{name} on {schema}.{table} is being built by pid {building} "
                                   f"(not valid until it finishes): {readable.first_line(definition, 200)}"))
        else:
            invalid.append(Finding(f"{name} on {schema}.{table} is INVALID (a failed CREATE INDEX CONCURRENTLY?): "
                                   f"{readable.first_line(definition, 200)}",
                                   Remedy(RemedyKind.REINDEX, {"index": name}, f"REINDEX {name}")))
    missing, source = await _missing_objects(ctx)
    parts = [f"{readable.count(len(tables), 'table')} with missing or stale statistics" if tables else "",
             f"{readable.count(len(invalid), 'invalid index', 'invalid indexes')}" if invalid else "",
             f"{len(missing)} of the backup's indexes and views missing live" if missing else ""]
    parts = [p for p in parts if p]
    findings = tuple(invalid + tables + missing)  # invalid indexes first: they get the fix buttons first
    if not findings:
        return CheckOutcome(Status.OK, f"Statistics current, no invalid index; {source}")
    return CheckOutcome(Status.WARN, "; ".join(parts) + ("" if missing else f" ({source})"), findings)


async def _missing_objects(ctx: Context) -> tuple[list[Finding], str]:
    """The indexes and views the newest backup's manifest lists and the live database lacks."""
    try:
        backup = await asyncio.to_thread(newest_backup, ctx.env)
    except BackupProblem:
        return [], "no backup to compare indexes and views with"
    manifest = await asyncio.to_thread(load_manifest, backup.path)
    if manifest is None:
        return [], f"the newest backup ({backup.path.parent.name}) has no manifest to compare indexes and views with"
    cursor = await ctx.db.execute(LIVE_OBJECTS_SQL)
    live_indexes, live_views = set(), set()
    for name, is_index in await cursor.fetchall():
        (live_indexes if is_index else live_views).add(name)
    findings = []
    for name, index in sorted(manifest.catalog.top_level_indexes().items()):  # a partition's goes with its parent's
        if name not in live_indexes:
            findings.append(Finding(f"index {name} on {index['table']} is in the backup ({backup.path.parent.name}) "
                                    f"but missing live: {readable.first_line(index['definition'], 200)}"))
    for name in sorted(manifest.catalog.views):
        if name not in live_views:
            findings.append(Finding(f"view {name} is in the backup ({backup.path.parent.name}) but missing live"))
    checked = len(manifest.catalog.top_level_indexes()) + len(manifest.catalog.views)
    return findings, f"{readable.count(checked, 'index and view', 'indexes and views')} of the backup's manifest checked"


CHECKS = (Check("performance", "Performance", CONTINGENCY_5, performance),)
