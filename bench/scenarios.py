"""The two references the bot is measured against, on the same dump and the same broken state.

- baseline: the runbook's Scenario 1 as written, with the same human delay before its typed
  "YES" (Step 4) as the bot gets before its Approve click (DESIGN, "Benchmark method");
- raw: ``createdb`` + ``pg_restore -j <cores>`` into it, the machine's limit for this dump.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.probes import Probes
from bench.setup import Workbench, drop, reset_live, run
from demo.backup import pg_command_args
from demo.flag_app import FlagFileApp

STEP7_SQL = """
SELECT 'Products' as table_name, COUNT(*) as row_count FROM products
UNION ALL SELECT 'Sales', COUNT(*) FROM sales
UNION ALL SELECT 'Customers', COUNT(*) FROM customers
UNION ALL SELECT 'Tickets', COUNT(*) FROM tickets
UNION ALL SELECT 'Contracts', COUNT(*) FROM contracts
UNION ALL SELECT 'Job Works', COUNT(*) FROM job_works
ORDER BY table_name;
SELECT COUNT(*) as denormalized_fields_count FROM information_schema.columns
WHERE table_name IN ('sales', 'tickets', 'job_works')
  AND column_name IN ('customer_name', 'assigned_to_name', 'product_name', 'customer_email', 'customer_phone');
SELECT COUNT(*) as view_count FROM pg_views WHERE schemaname = 'public';
"""


class ScenarioFailed(RuntimeError):
    pass


def _libpq(wb: Workbench, dbname: str) -> tuple[list[str], dict[str, str]]:
    args, env, _ = pg_command_args(wb.dsn(dbname))
    return args, env


async def _check(label: str, *argv: str, env: dict[str, str]) -> float:
    code, out, seconds = await run(*argv, env=env)
    if code != 0:
        raise ScenarioFailed(f"{label} failed with exit code {code}:\n{out}")
    return seconds


async def _psql(wb: Workbench, dbname: str, command: str) -> tuple[int, str, float]:
    args, env = _libpq(wb, dbname)
    return await run("psql", *args, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-d", dbname, "-c", command, env=env)


async def baseline(wb: Workbench, app: FlagFileApp, approval_delay: float) -> dict:
    """Scenario 1, Steps 2-9, timed from the decision to roll back to the smoke check passing."""
    await reset_live(wb)
    args, env = _libpq(wb, "postgres")
    log = wb.root / "rollback_restore.log"
    async with Probes(wb.dsn(), app.health_url) as probes, aiohttp.ClientSession() as http:
        started = time.perf_counter()
        await _check("Step 2 (stop the application)", *app.stop_argv, env={})
        dump = max(wb.backup_root.glob("*/staging_full_backup.dump"), key=lambda p: p.stat().st_mtime)  # Step 3
        await asyncio.sleep(approval_delay)  # Step 4: the human reads the prompt and types YES
        await _drop_as_written(wb)
        code, out, _ = await _psql(wb, "postgres", f'CREATE DATABASE "{wb.live}" OWNER postgres;')  # Step 5
        if code != 0:
            raise ScenarioFailed(f"Step 5 failed:\n{out}")
        # Step 6: single job "for reliability", --verbose into a log as the runbook tees it
        code, out, restore_s = await run("pg_restore", *args, "-d", wb.live, "--verbose", str(dump), env=env)
        log.write_text(out)
        if code != 0:
            raise ScenarioFailed(f"Step 6 (pg_restore) failed with exit code {code}:\n{out}")
        code, out, _ = await _psql(wb, wb.live, STEP7_SQL)  # Step 7
        if code != 0:
            raise ScenarioFailed(f"Step 7 failed:\n{out}")
        await _check("Step 8 (start the application)", *app.start_argv, env={})
        # The runbook sleeps 10 s before its health check; polling instead favours the baseline.
        await _wait_for(http, app.health_url, timeout=60)
        await _wait_for(http, app.sales_url, timeout=10)  # Step 9: the smoke check must pass
        total = time.perf_counter() - started
    return {"total_s": total, "restore_s": restore_s, "mb_per_s": wb.dump_bytes / 1e6 / restore_s,
            **probes.downtime()}


async def _drop_as_written(wb: Workbench) -> None:
    """Step 4's plain DROP DATABASE. The probe's brief connections can make it fail with
    "being accessed by other users"; an operator would simply run it again, so it is retried."""
    for _ in range(100):
        code, out, _ = await _psql(wb, "postgres", f'DROP DATABASE IF EXISTS "{wb.live}";')
        if code == 0:
            return
        if "being accessed by other users" not in out:
            raise ScenarioFailed(f"Step 4 (DROP DATABASE) failed:\n{out}")
        await asyncio.sleep(0.02)
    raise ScenarioFailed("Step 4 (DROP DATABASE) kept failing: the database stayed in use")


async def _wait_for(http: aiohttp.ClientSession, url: str, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while True:
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status == 200:
                    return
                status = resp.status
        except aiohttp.ClientError as exc:
            status = repr(exc)
        if time.perf_counter() > deadline:
            raise ScenarioFailed(f"{url} did not answer 200 within {timeout} s (last: {status})")
        await asyncio.sleep(0.1)


async def raw_parallel(wb: Workbench, app: FlagFileApp, jobs: int) -> dict:
    """``createdb`` + ``pg_restore -j jobs``; the restore is timed, and createdb on its own.

    The two probes run here too, as they do in every other scenario: on 2 cores their ~20 new
    connections a second cost a few percent, and the bot's overhead over the raw restore should
    measure the bot, not the probes."""
    name = f"{wb.prefix}_raw"
    args, env = _libpq(wb, name)
    await reset_live(wb)  # the same start as every other scenario: a fresh copy, written out
    await drop(wb.admin_dsn, name)
    try:
        async with Probes(wb.dsn(), app.health_url):
            createdb_s = await _check("createdb", "createdb", *args, name, env=env)
            restore_s = await _check("pg_restore -j", "pg_restore", *args, "-d", name, f"--jobs={jobs}",
                                     str(wb.dump), env=env)
    finally:
        await drop(wb.admin_dsn, name)
    # total: what the bot's restore step must do too (a fresh database, then the restore) and
    # what the ratios compare with; restore_s: pg_restore alone, the machine's limit for the dump.
    return {"total_s": createdb_s + restore_s, "restore_s": restore_s, "createdb_s": createdb_s,
            "mb_per_s": wb.dump_bytes / 1e6 / restore_s}
