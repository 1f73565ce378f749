"""`rollback-bot`: serve the Slack app, print the audit trail, show status."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict
from importlib.metadata import version as package_version
from pathlib import Path

import psycopg
from pydantic import SecretStr

from actions.config import ConfigError, Settings, load_settings
from actions.service import Ledger
from bot.credentials import CredentialsError, load_credentials

DEMO_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at exit: a closed pipe must be met inside this try
        return code
    except BrokenPipeError:
        # The reader went away (`rollback-bot audit --json | head`): stop quietly, as Unix tools do,
        # with the status a process killed by SIGPIPE has; nothing more is written to the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="rollback-bot", description="Roll back a failed PostgreSQL migration from Slack, safely.")
    parser.add_argument("--version", action="version", version=f"rollback-bot {package_version('rollback-bot')}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the Slack app (Socket Mode, or HTTP with --http)")
    serve.add_argument("--config", required=True, help="the TOML configuration file")
    serve.add_argument("--http", action="store_true", help="serve POST /slack/events over HTTP instead of Socket Mode")
    serve.add_argument("--port", type=int, default=3000, help="HTTP port (default 3000)")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP address to bind (default 127.0.0.1)")
    serve.add_argument("--health-port", type=int, default=None,
                       help="Socket Mode: serve /healthz, /readyz and /metrics on this port (in HTTP mode they are "
                            "on --port)")
    serve.add_argument("--log-format", choices=["text", "json"], default="text",
                       help="text for a terminal, json for one object per line (default text)")
    serve.add_argument("--log-level", default="INFO", type=str.upper,
                       choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], help="default INFO")

    local = sub.add_parser("local", help="the bot plus a Slack-like workspace in the browser (no Slack app needed)")
    local.add_argument("--config", default=None, help="the TOML configuration file (default: the demo's)")
    local.add_argument("--port", type=int, default=3000, help="the workspace's port (default 3000)")
    local.add_argument("--no-browser", action="store_true", help="do not open a browser")
    local.add_argument("--demo", action="store_true", help="set up the demo first (same as `rollback-bot demo`)")

    demo = sub.add_parser("demo", help="a broken CRM database, its backup and a stand-in app; then the local workspace")
    demo.add_argument("--clean", action="store_true", help="remove everything the demo created")
    demo.add_argument("--state", default="rollback-demo", help="the demo's folder (default ./rollback-demo)")
    demo.add_argument("--admin-dsn", default=os.environ.get("ROLLBACK_DEMO_ADMIN_DSN", DEMO_ADMIN_DSN),
                      help=f"a PostgreSQL superuser DSN (default {DEMO_ADMIN_DSN} or $ROLLBACK_DEMO_ADMIN_DSN)")
    demo.add_argument("--db", default="rollback_demo", help="the demo database's name (default rollback_demo)")
    demo.add_argument("--rows", type=int, default=300_000, help="about how many rows (default 300000)")
    demo.add_argument("--port", type=int, default=3000, help="the workspace's port (default 3000)")
    demo.add_argument("--no-browser", action="store_true", help="do not open a browser")
    demo.add_argument("--setup-only", action="store_true", help="set up, print, and exit without serving")

    prepare = sub.add_parser("prepare", help="before a migration: a backup now, restored aside and verified, so "
                                             "that a full rollback is an approval and a swap")
    prepare.add_argument("--config", required=True)
    prepare.add_argument("environment")

    backup = sub.add_parser("backup", help="take a backup now (pg_dump -Fc, the runbook's layout, with a manifest)")
    backup.add_argument("--config", required=True)
    backup.add_argument("environment")

    audit = sub.add_parser("audit", help="print the audit trail, or check its hash chain (audit verify)")
    audit.add_argument("check", nargs="?", choices=["verify"], help="verify: check the hash chain, row by row")
    audit.add_argument("--config", required=True)
    audit.add_argument("--incident", help="only this incident (INC-…)")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")

    status = sub.add_parser("status", help="open incidents and running rollbacks")
    status.add_argument("--config", required=True)
    status.add_argument("--json", action="store_true")

    args = parser.parse_args(argv)
    if args.command == "demo" or (args.command == "local" and (args.demo or args.config is None)):
        return _demo(args)
    try:
        settings = load_settings(args.config, outreach_secrets=args.command != "local")
        if args.command == "serve":
            return _serve(settings, args)
        if args.command == "local":
            return _local(settings, args)
        if args.command == "backup":
            return _backup(settings, args.environment)
        if args.command == "prepare":
            return _prepare(settings, args.environment)
    except (ConfigError, CredentialsError) as problem:
        print(f"rollback-bot: {problem}", file=sys.stderr)
        return 2
    with Ledger(settings) as ledger:
        return _audit(ledger, args) if args.command == "audit" else _status(ledger, args)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from bot.app import redactor_for
    from bot.logs import configure_logging  # imported here: only serving needs Bolt and aiohttp
    from bot.server import BotRuntime, run_until_stopped

    credentials = load_credentials(http=args.http)
    configure_logging(redactor_for(settings, credentials), args.log_level, args.log_format)
    runtime = BotRuntime(settings, credentials, socket_mode=not args.http)
    return asyncio.run(run_until_stopped(runtime, http=args.http, host=args.host, port=args.port,
                                         health_port=args.health_port))


def _local(settings: Settings, args: argparse.Namespace, hint: str = "") -> int:
    from bot.app import redactor_for
    from bot.credentials import SlackCredentials
    from bot.local import run_local
    from bot.logs import configure_logging

    configure_logging(redactor_for(settings, SlackCredentials(SecretStr("xoxb-"), None, None, "")))
    asyncio.run(run_local(settings, port=args.port, open_browser=not args.no_browser, hint=hint))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from demo.sandbox import DemoSpec, clean_demo, create_demo, stop_standin

    spec = DemoSpec(state=Path(getattr(args, "state", "rollback-demo")),
                    admin_dsn=getattr(args, "admin_dsn", DEMO_ADMIN_DSN), dbname=getattr(args, "db", "rollback_demo"),
                    rows=getattr(args, "rows", 300_000))
    try:
        if getattr(args, "clean", False):
            removed = asyncio.run(clean_demo(spec))
            print("\n".join(removed) if removed else "nothing to remove: no demo here")
            return 0
        print(f"Preparing the demo in {spec.state.resolve()} …", flush=True)
        summary = asyncio.run(create_demo(spec))
    except (psycopg.OperationalError, RuntimeError) as problem:
        print(f"rollback-bot: demo: {str(problem).splitlines()[0]}", file=sys.stderr)
        return 2
    print("\n".join(f"  {line}" for line in summary.lines))
    print("Remove everything the demo made with: rollback-bot demo --clean" + (
        f" --state {args.state}" if getattr(args, "state", "rollback-demo") != "rollback-demo" else ""))
    if getattr(args, "setup_only", False):
        return 0
    hint = ("Try it: as olivia (operator) type  /rollback full demo  — then switch to alice (approver) and press "
            "Approve. The Pager & mail panel shows what the bot paged and mailed. Ctrl-C stops the workspace.")
    try:
        return _local(load_settings(spec.config), args, hint)
    finally:
        asyncio.run(stop_standin(spec))


def _backup(settings: Settings, environment: str) -> int:
    import readable
    from actions.terminal import backup_from_terminal

    if environment not in settings.environments:
        print(f"rollback-bot: no environment {environment!r} in {settings.config_path} "
              f"(configured: {', '.join(settings.environments)})", file=sys.stderr)
        return 2
    env = settings.environments[environment]
    result = asyncio.run(backup_from_terminal(settings, environment))
    if isinstance(result, str):
        print(f"rollback-bot: backup of {environment} failed: {result}", file=sys.stderr)
        return 1
    print(f"{result.path} ({readable.size(result.size)}, {readable.duration(result.seconds)}); manifest {result.manifest.name}: "
          f"{result.tables} tables, {result.rows:,} rows")
    for old in result.beyond_keep:
        print(f"beyond keep_backups={env.keep_backups}, kept: {old.path.parent.name}")
    return 0


def _prepare(settings: Settings, environment: str) -> int:
    from actions.terminal import prepare_from_terminal

    if environment not in settings.environments:
        print(f"rollback-bot: no environment {environment!r} in {settings.config_path} "
              f"(configured: {', '.join(settings.environments)})", file=sys.stderr)
        return 2
    result = asyncio.run(prepare_from_terminal(settings, environment, lambda line: print(line, flush=True)))
    if isinstance(result, str):
        print(f"rollback-bot: prepare of {environment} failed: {result}", file=sys.stderr)
        return 1
    print(f"Rollback ready: {result.database} holds {result.backup_path}, verified at "
          f"{result.ready_at:%Y-%m-%d %H:%M:%S} UTC; a full rollback of {environment} now swaps it in")
    return 0


def _audit(ledger: Ledger, args: argparse.Namespace) -> int:
    if args.check == "verify":
        return _verify(ledger)
    events = ledger.audit_events(args.incident)
    if args.incident and not events:
        print(f"rollback-bot: no audit events for incident {args.incident}", file=sys.stderr)
        return 1
    for event in events:
        if args.json:
            print(json.dumps({**asdict(event), "at": event.at.isoformat()}, ensure_ascii=False))
        else:
            where = " ".join(x for x in (event.incident_id, event.environment) if x)
            detail = " ".join(f"{k}={v}" for k, v in event.detail.items() if v not in (None, ""))
            print(f"{event.at:%Y-%m-%d %H:%M:%S}  {event.actor:<10} {event.action:<22} {event.outcome:<8} {where}  {detail}".rstrip())
    return 0


def _verify(ledger: Ledger) -> int:
    """Exit 0 when every row's hash matches; otherwise name the first row that does not, exit 1."""
    check = ledger.verify_audit()
    if check.ok:
        head = f"; head: row {check.head_seq}, {check.head}" if check.head else ""
        print(f"audit chain OK: {check.rows} rows{head}")
        return 0
    print(f"audit chain BROKEN at row {check.first_bad_seq}: {check.problem}. "
          f"The {check.rows} rows before it are intact (last good: row {check.head_seq}, {check.head}).",
          file=sys.stderr)
    return 1


def _status(ledger: Ledger, args: argparse.Namespace) -> int:
    rows = [{"incident": row.incident_id, "environment": row.environment, "status": row.alert_status,
             "declared_at": row.declared_at.isoformat(), "run": row.run_id, "run_state": row.run_state,
             "step": row.current_step, "requested_by": row.requested_by}
            for row in ledger.status()]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("No open incidents and no running rollbacks.")
    for row in [] if args.json else rows:
        run = (f"{row['run']} {row['run_state']}" + (f", step: {row['step']}" if row["step"] else "")) if row["run"] else "no run"
        print(f"{row['incident']}  {row['environment']:<12} {row['status']:<14} since {row['declared_at'][:19]}  {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
