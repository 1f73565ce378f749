"""``python -m bench``: build the CRM, run every scenario, print the table, write the JSON.

    python -m bench [--scale 30] [--repeat 3] [--approval-delay 30] [--json FILE] [--update-docs]

Every database it creates is named ``rbbench_<random>…`` and dropped at the end, also on a
failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench import docs
from bench.botrun import BotFailed, bot_scenario, prepared_scenario, quiet_logs
from bench.report import summarise, table
from bench.responsive import responsiveness
from bench.scenarios import ScenarioFailed, baseline, raw_parallel
from bench.setup import ROWS_PER_SCALE, build, drop_all, machine, new_workbench
from demo.flag_app import READS_DROPPED_COLUMN, FlagFileApp

HERE = Path(__file__).resolve().parent


def parse(argv: list[str] | None) -> argparse.Namespace:
    cores = len(os.sched_getaffinity(0))
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--scale", type=float, default=30, help=f"CRM size in units of {ROWS_PER_SCALE:,} rows (default 30)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions of each timing; medians are reported")
    p.add_argument("--approval-delay", type=float, default=30, help="seconds before Approve / the typed YES")
    p.add_argument("--jobs", type=int, default=cores, help=f"pg_restore jobs for raw and bot (default: cores = {cores})")
    p.add_argument("--commands", type=int, default=200, help="slash commands for the ack latency")
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--update-interval", type=float, default=1.0, help="update_interval_seconds for the jitter run")
    p.add_argument("--min-updates", type=int, default=10, help="status updates to collect for the jitter")
    p.add_argument("--json", type=Path, default=HERE / "results.json", help="where to write all figures")
    p.add_argument("--update-docs", action="store_true", help="put the table into docs/PERFORMANCE.md")
    p.add_argument("--admin-dsn", default=os.environ.get("BENCH_PG_ADMIN_DSN",
                                                         "postgresql://postgres@127.0.0.1:5432/postgres"))
    return p.parse_args(argv)


def say(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def measure(args: argparse.Namespace, wb, app: FlagFileApp) -> dict:
    scenarios: dict[str, list[dict]] = {k: [] for k in ("baseline", "raw", "bot_immediately", "bot_at_swap",
                                                        "bot_prepared")}
    errors: list[str] = []
    for rep in range(1, args.repeat + 1):
        # interleaved, so a noisy minute on a shared machine hits every scenario alike
        runs = {"baseline": lambda: baseline(wb, app, args.approval_delay),
                "raw": lambda: raw_parallel(wb, app, args.jobs),
                "bot_immediately": lambda: bot_scenario(wb, app, stop_app="immediately", jobs=args.jobs,
                                                        approval_delay=args.approval_delay),
                "bot_at_swap": lambda: bot_scenario(wb, app, stop_app="at_swap", jobs=args.jobs,
                                                    approval_delay=args.approval_delay, carry_over=True),
                "bot_prepared": lambda: prepared_scenario(wb, app, jobs=args.jobs)}
        for name, start in runs.items():
            result = await _attempt(name, start, errors)
            scenarios[name].append(result)
            say(f"run {rep}/{args.repeat} {name}: total {result['total_s']:.2f} s, restore "
                f"{result['restore_s']:.2f} s, downtime {result.get('downtime_s', 0):.2f} s")
    say(f"responsiveness: {args.commands} × /rollback status, {args.concurrency} at a time, during a restore")
    resp = await responsiveness(wb, app, jobs=args.jobs, commands=args.commands, concurrency=args.concurrency,
                                interval=args.update_interval, min_updates=args.min_updates)
    return {"scenarios": scenarios, "responsiveness": resp, "errors": errors}


async def _rebuild(wb, rows: int) -> dict:
    await drop_all(wb.admin_dsn, wb.prefix)  # what a server restart left half-built
    await build(wb, rows)
    return {}


async def _attempt(name: str, start, errors: list[str], attempts: int = 3) -> dict:
    """Run a scenario, again if it failed: the PostgreSQL server is shared with other test runs
    (some fill a tablespace on purpose), so a failure is recorded, shown, and retried."""
    for attempt in range(1, attempts + 1):
        try:
            return await start()
        except (BotFailed, ScenarioFailed, psycopg.Error, TimeoutError) as exc:
            errors.append(f"{name} attempt {attempt}: {exc}")
            say(f"{name} failed (attempt {attempt}/{attempts}): {str(exc)[:2000]}")
            if attempt == attempts:
                raise


async def main(args: argparse.Namespace) -> int:
    quiet_logs()
    task = asyncio.current_task()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)  # same cleanup as Ctrl-C
    root = Path(tempfile.mkdtemp(prefix="rbbench-"))
    wb = new_workbench(args.admin_dsn, root)
    app = None
    try:
        info = await machine(args.admin_dsn)
        rows = int(args.scale * ROWS_PER_SCALE)
        say(f"building a CRM of ~{rows:,} rows as {wb.live}, its backup and the broken migration")
        await _attempt("build", lambda: _rebuild(wb, rows), [])
        say(f"built {wb.rows:,} rows, {wb.db_bytes / 1e6:.0f} MB; dump {wb.dump_bytes / 1e6:.1f} MB; {wb.build_seconds}")
        app = FlagFileApp(root, wb.dsn(), READS_DROPPED_COLUMN)  # the smoke check fails until the rollback
        await app.start()
        results = {"params": {"scale": args.scale, "repeat": args.repeat, "approval_delay": args.approval_delay,
                              "jobs": args.jobs, "commands": args.commands, "concurrency": args.concurrency,
                              "update_interval": args.update_interval},
                   "machine": info, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                   "workbench": {"prefix": wb.prefix, "rows": wb.rows, "db_mb": wb.db_bytes / 1e6, "dump_mb": wb.dump_bytes / 1e6,
                                 "build_s": wb.build_seconds},
                   **await measure(args, wb, app)}
        summary = summarise(results)
        results["summary"] = summary
        text = table(results, summary)
        print(text)
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
        say(f"figures written to {args.json}")
        if args.update_docs:
            say(f"table written to {docs.update(results, text)}")
        return 0
    finally:
        if app is not None:
            await app.stop()
        dropped = await drop_all(args.admin_dsn, wb.prefix)
        shutil.rmtree(root, ignore_errors=True)
        say(f"dropped {len(dropped)} database(s) of this run")


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(parse(None))))
    except KeyboardInterrupt:
        sys.exit(130)
