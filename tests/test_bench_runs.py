"""`python -m bench` runs end to end on a tiny CRM and reports every figure.

Not a timed test: nothing here depends on how fast anything was (issue 9: benchmarks print
figures and never fail CI on speed). It keeps the bench from rotting: every scenario ran, every
figure and ratio is a number, every target has a verdict, and every database it made is gone.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from pathlib import Path

from support.harness import database_names

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("baseline", "raw", "bot_immediately", "bot_at_swap", "bot_prepared")


async def test_the_bench_runs_and_reports_every_figure(tmp_path):
    out = tmp_path / "results.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench", "--scale", "1", "--repeat", "1", "--approval-delay", "1",
        "--commands", "10", "--concurrency", "5", "--min-updates", "2", "--json", str(out),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=300)
    table = stdout.decode()
    assert proc.returncode == 0, stderr.decode()[-3000:]

    results = json.loads(out.read_text())
    medians = results["summary"]["medians"]
    for name in SCENARIOS:
        assert len(results["scenarios"][name]) == 1, name
        restored = "prepare_restore_s" if name == "bot_prepared" else "restore_s"  # prepared: restored beforehand
        assert medians[name]["total_s"] > 0 and medians[name][restored] > 0, name
    for name in ("bot_immediately", "bot_at_swap"):
        bot = medians[name]
        for key in ("total_vs_baseline", "downtime_vs_baseline", "restore_vs_raw", "ready_vs_raw", "work_vs_raw",
                    "pg_restore_vs_raw", "step_preflight_s", "step_restore_aside_s", "step_verify_s", "swap_window_s"):
            assert isinstance(bot.get(key), float) and math.isfinite(bot[key]), (name, key, bot.get(key))
    assert "step_read_dump_s" in medians["bot_immediately"] and "step_read_dump_s" not in medians["bot_at_swap"]
    for key in ("count_s", "rows_compared_per_s", "sequential_read_s", "carry_find_s", "carry_insert_s"):
        assert isinstance(medians["bot_at_swap"].get(key), float), key
    assert medians["bot_at_swap"]["rows_carried"] == 1000 and medians["bot_at_swap"]["rows_compared"] > 0
    for key in ("prepare_s", "prepare_backup_s", "approved_to_healthy_s", "total_vs_baseline", "downtime_s"):
        value = medians["bot_prepared"].get(key)
        assert isinstance(value, float) and math.isfinite(value), (key, value)
    resp = results["responsiveness"]
    assert resp["commands"] == 10 and resp["non_200"] == 0 and resp["updates"] >= 2
    targets = results["summary"]["targets"]
    assert len(targets) == 12 and all(isinstance(t["met"], bool) and t["measured"] is not None for t in targets)

    # The printed table has a row per scenario, the breakdown and the verdicts.
    for label in ("runbook Scenario 1 (baseline)", "raw `createdb` + `pg_restore -j", 'bot, `stop_app = "immediately"`',
                  'bot, `stop_app = "at_swap"`', "where the time goes", "slash-command ack p99",
                  "bot with a prepared copy", "prepared rollback (medians)", "rows written after the backup"):
        assert label in table, label
    verdicts = [line for line in table.splitlines()
                if line.endswith(("| met |", "| NOT met |")) and not line.startswith("| target")]
    assert len(verdicts) == len(targets)

    assert await database_names(results["workbench"]["prefix"]) == set()  # everything it made was dropped
