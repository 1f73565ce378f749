"""`rollback-bot`: serve the Slack app, print the audit trail, show status."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict

from actions.config import ConfigError, Settings, load_settings
from actions.store import Store
from bot.credentials import CredentialsError, load_credentials


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rollback-bot", description="Roll back a failed PostgreSQL migration from Slack, safely.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the Slack app (Socket Mode, or HTTP with --http)")
    serve.add_argument("--config", required=True, help="the TOML configuration file")
    serve.add_argument("--http", action="store_true", help="serve POST /slack/events over HTTP instead of Socket Mode")
    serve.add_argument("--port", type=int, default=3000, help="HTTP port (default 3000)")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP address to bind (default 127.0.0.1)")

    audit = sub.add_parser("audit", help="print the audit trail")
    audit.add_argument("--config", required=True)
    audit.add_argument("--incident", help="only this incident (INC-…)")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")

    status = sub.add_parser("status", help="open incidents and running rollbacks")
    status.add_argument("--config", required=True)
    status.add_argument("--json", action="store_true")

    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        if args.command == "serve":
            return _serve(settings, args)
    except (ConfigError, CredentialsError) as problem:
        print(f"rollback-bot: {problem}", file=sys.stderr)
        return 2
    store = Store(settings.bot.audit_db)
    try:
        return _audit(store, args) if args.command == "audit" else _status(store, args)
    finally:
        store.close()


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from bot.logs import configure_logging  # imported here: only serving needs Bolt and aiohttp
    from bot.server import BotRuntime, run_until_stopped
    from bot.app import redactor_for

    credentials = load_credentials(http=args.http)
    configure_logging(redactor_for(settings, credentials))
    runtime = BotRuntime(settings, credentials, socket_mode=not args.http)
    asyncio.run(run_until_stopped(runtime, http=args.http, host=args.host, port=args.port))
    return 0


def _audit(store: Store, args: argparse.Namespace) -> int:
    events = store.audit_events(args.incident)
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


def _status(store: Store, args: argparse.Namespace) -> int:
    rows = [{"incident": incident.id, "environment": incident.environment, "status": incident.alert_status.value,
             "declared_at": incident.declared_at.isoformat(), "run": run and run.id,
             "run_state": run and run.state.value, "step": step, "requested_by": run and run.requested_by}
            for incident, run, step in store.overview()]
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
