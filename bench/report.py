"""Medians, ratios, the targets of issues 9 and 17, and the table (Markdown, readable in a terminal too)."""

from __future__ import annotations

import statistics

LABELS = {"baseline": "runbook Scenario 1 (baseline)", "raw": "raw `createdb` + `pg_restore -j {jobs}`",
          "bot_immediately": "bot, `stop_app = \"immediately\"`", "bot_at_swap": "bot, `stop_app = \"at_swap\"`",
          "bot_prepared": "bot with a prepared copy (`at_swap`, Approve at once)"}
PROBE_INTERVAL_S = 0.1  # the downtime probes' resolution


def medians(reps: list[dict]) -> dict:
    """The median of every numeric figure over the repetitions (the machines are noisy)."""
    keys = {k for r in reps for k, v in r.items() if isinstance(v, int | float)}
    return {k: statistics.median(r[k] for r in reps if isinstance(r.get(k), int | float)) for k in keys}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarise(results: dict) -> dict:
    """Medians per scenario, the ratios, and each target with its verdict."""
    med = {name: medians(reps) for name, reps in results["scenarios"].items()}
    base, raw = med["baseline"], med["raw"]
    for name in ("bot_immediately", "bot_at_swap", "bot_prepared"):
        bot = med[name]
        bot["total_vs_baseline"] = _ratio(bot["total_s"], base["total_s"])
        bot["downtime_vs_baseline"] = _ratio(bot["downtime_s"], base["downtime_s"])
        # The raw reference is createdb + pg_restore -j (its total): the bot's restore step has to
        # create the database too. pg_restore against pg_restore is shown beside it.
        bot["restore_vs_raw"] = _ratio(bot["restore_s"], raw["total_s"])
        bot["work_vs_raw"] = _ratio(bot["work_s"], raw["total_s"])
        bot["ready_vs_raw"] = _ratio(bot["ready_s"], raw["total_s"])
        bot["pg_restore_vs_raw"] = _ratio(bot.get("pg_restore_s"), raw["restore_s"])
    resp, delay = results["responsiveness"], results["params"]["approval_delay"]
    swap, now, ready = med["bot_at_swap"], med["bot_immediately"], med["bot_prepared"]
    at = f" (approval delay {delay:g} s)"
    # Issue 17: the app is down for the swap window and its own restart (stop + start), no more; the
    # probes see in steps of PROBE_INTERVAL_S.
    restart = sum(ready.get(f"step_{k}_s", 0.0) for k in ("stop_app", "start_app")) + ready.get("swap_window_s", 0.0)
    over = ready["downtime_s"] - restart - PROBE_INTERVAL_S if ready.get("downtime_s") is not None else None
    targets = [
        ("downtime with at_swap ≤ 5% of the baseline's", swap["downtime_vs_baseline"], 0.05, "ratio"),
        ("total time, at_swap, ≤ 0.7 × the baseline's" + at, swap["total_vs_baseline"], 0.7, "ratio"),
        ("total time, immediately, ≤ 0.7 × the baseline's" + at, now["total_vs_baseline"], 0.7, "ratio"),
        ("restore step ≤ 1.10 × raw (createdb + pg_restore -j)", swap["restore_vs_raw"], 1.10, "ratio"),
        ("bot's pg_restore ≤ 1.10 × raw pg_restore", swap["pg_restore_vs_raw"], 1.10, "ratio"),
        ("request → verified copy ready ≤ 1.10 × raw", swap["ready_vs_raw"], 1.10, "ratio"),
        ("request → RESOLVED minus approval wait ≤ 1.10 × raw", swap["work_vs_raw"], 1.10, "ratio"),
        ("slash-command ack p99 ≤ 300 ms during a restore", resp["ack_p99_ms"], 300, "ms"),
        ("status-update jitter ≤ 2 s", resp["update_jitter_max_s"], 2.0, "s"),
        ("prepared: approval → app healthy < 2 s", ready.get("approved_to_healthy_s"), 2.0, "s"),
        ("prepared, Approve at once: request → RESOLVED ≤ 0.1 × the baseline's total", ready["total_vs_baseline"],
         0.1, "ratio"),
        ("prepared: downtime ≤ swap window + app stop and start (+ the probes' 0.1 s), excess", over, 0.0, "s"),
    ]
    return {"medians": med, "targets": [
        {"target": t, "measured": v, "limit": lim, "unit": u, "met": v is not None and v <= lim}
        for t, v, lim, u in targets]}


def _f(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(results: dict, summary: dict) -> str:
    p, wb = results["params"], results["workbench"]
    med = summary["medians"]
    lines = [
        f"CRM of {wb['rows']:,} rows ({wb['db_mb']:.0f} MB on disk), dump {wb['dump_mb']:.1f} MB (`pg_dump -Fc`); "
        f"scale {p['scale']}, medians of {p['repeat']} run(s), approval delay {p['approval_delay']:g} s, "
        f"restore jobs {p['jobs']}.", "",
        "| scenario | total s | downtime s | db down s | health down s | restore s | MB/s of dump "
        "| total ÷ baseline | downtime ÷ baseline | restore ÷ raw | ready ÷ raw | work ÷ raw |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in LABELS.items():
        m = med[name]
        lines.append(
            f"| {label.format(jobs=p['jobs'])} | {_f(m['total_s'])} | {_f(m.get('downtime_s'))} "
            f"| {_f(m.get('db_downtime_s'))} | {_f(m.get('health_downtime_s'))} | {_f(m['restore_s'])} "
            f"| {_f(m['mb_per_s'], 1)} | {_f(m.get('total_vs_baseline'))} | {_f(m.get('downtime_vs_baseline'), 3)} "
            f"| {_f(m.get('restore_vs_raw'))} | {_f(m.get('ready_vs_raw'))} | {_f(m.get('work_vs_raw'))} |")
    lines += ["", *_breakdown(med), "", *_prepared(med), "", *_writes(med), "", *_slack(med)]
    r = results["responsiveness"]
    lines += ["", "| responsiveness | value |", "|---|---:|",
              f"| `/rollback status` acks ({r['commands']} sent, {r['concurrency']} concurrent, "
              f"{r['sent_during_bot_restore']} during the bot's own restore, a raw restore throughout) "
              f"p50 / p95 / p99 / max ms | {_f(r['ack_p50_ms'], 0)} / {_f(r['ack_p95_ms'], 0)} / "
              f"{_f(r['ack_p99_ms'], 0)} / {_f(r['ack_max_ms'], 0)} |",
              f"| acks not 200 | {r['non_200']} |",
              f"| status updates at {r['update_interval_s']:g} s interval: count / median gap s | "
              f"{r['updates']} / {_f(r['update_gap_median_s'])} |",
              f"| update jitter: max / p95 of \\|gap − interval\\| s | {_f(r['update_jitter_max_s'], 3)} / "
              f"{_f(r['update_jitter_p95_s'], 3)} |",
              "", "| target (issues 9 and 17) | measured | met |", "|---|---:|:---:|"]
    for t in summary["targets"]:
        lines.append(f"| {t['target']} | {_f(t['measured'], 3)} {t['unit']} | {'met' if t['met'] else 'NOT met'} |")
    return "\n".join(lines)


STEP_COLUMNS = (("preflight", "preflight"), ("read_dump", "read the whole dump"), ("restore_aside", "restore step"),
                ("verify", "verify"), ("stop_app", "stop app"), ("swap", "swap"), ("start_app", "start app"),
                ("smoke", "smoke"))


def _prepared(med: dict) -> list[str]:
    """Issue 17: a prepared rollback side by side with the runbook and with the bot that restores."""
    p, base, swap = med["bot_prepared"], med["baseline"], med["bot_at_swap"]
    return ["| prepared rollback (medians) | prepare s (backup / restore) | request → RESOLVED s "
            "| approval → app healthy s | downtime s | swap window s |", "|---|---:|---:|---:|---:|---:|",
            f"| {LABELS['bot_prepared']} | {_f(p.get('prepare_s'))} ({_f(p.get('prepare_backup_s'))} / "
            f"{_f(p.get('prepare_restore_s'))}) | {_f(p['total_s'])} | {_f(p.get('approved_to_healthy_s'))} "
            f"| {_f(p.get('downtime_s'))} | {_f(p.get('swap_window_s'), 3)} |",
            f"| {LABELS['bot_at_swap']} (approval delay as above) | – | {_f(swap['total_s'])} "
            f"| {_f(swap.get('approved_to_healthy_s'))} | {_f(swap.get('downtime_s'))} | {_f(swap.get('swap_window_s'), 3)} |",
            f"| {LABELS['baseline']} | – | {_f(base['total_s'])} | – | {_f(base.get('downtime_s'))} | – |"]


def _writes(med: dict) -> list[str]:
    """Issue 18: counting the rows written after the backup, and carrying the inserted ones over."""
    m = med["bot_at_swap"]
    per_s = m.get("rows_compared_per_s")
    return ["| rows written after the backup (bot, at_swap; medians) | count s | rows compared | rows/s "
            "| sequential read of both databases s | count ÷ sequential read | carry-over: find / insert s "
            "| rows carried |", "|---|---:|---:|---:|---:|---:|---:|---:|",
            f"| count and carry-over of {_f(m.get('rows_carried'), 0)} rows inserted after the backup "
            f"| {_f(m.get('count_s'), 3)} | {_f(m.get('rows_compared'), 0)} | {_f(per_s, 0)} "
            f"| {_f(m.get('sequential_read_s'), 3)} | {_f(_ratio(m.get('count_s'), m.get('sequential_read_s')))} "
            f"| {_f(m.get('carry_find_s'), 3)} / {_f(m.get('carry_insert_s'), 3)} | {_f(m.get('rows_carried'), 0)} |"]


def _slack(med: dict) -> list[str]:
    """What the incident channel saw, with the fake Slack holding the bot to 1 post/s per channel (burst 3)."""
    lines = ["| at Slack's pace (1 post/s per channel, burst 3), medians | RESOLVED after the swap s | posts | 429s |",
             "|---|---:|---:|---:|"]
    for name in ("bot_immediately", "bot_at_swap"):
        m = med[name]
        lines.append(f"| {LABELS[name]} | {_f(m.get('resolved_after_swap_s'), 2)} | {_f(m.get('slack_posts'), 0)} "
                     f"| {_f(m.get('slack_429s'), 0)} |")
    return lines


def _breakdown(med: dict) -> list[str]:
    """Where the bot's time goes, step by step, beside the raw restore's own parts."""
    raw = med["raw"]
    lines = ["| where the time goes, s (medians) | " + " | ".join(label for _, label in STEP_COLUMNS)
             + " | pg_restore in the restore step | live closed during the swap |",
             "|---|" + "---:|" * (len(STEP_COLUMNS) + 2)]
    for name in ("bot_immediately", "bot_at_swap"):
        m = med[name]
        lines.append(f"| {LABELS[name]} | " + " | ".join(_f(m.get(f"step_{key}_s"), 3) for key, _ in STEP_COLUMNS)
                     + f" | {_f(m.get('pg_restore_s'), 3)} | {_f(m.get('swap_window_s'), 3)} |")
    lines.append(f"| raw: `createdb` {_f(raw.get('createdb_s'), 3)} s + `pg_restore` {_f(raw['restore_s'], 3)} s |"
                 + " |" * (len(STEP_COLUMNS) + 1))
    return lines
