"""Replies to the person who typed a command or clicked a button (ephemeral: only they see them)."""

from __future__ import annotations

from messages.blocks import SlackMessage, context, mention, section
from messages.views import StatusLine

# verb -> (usage, what it does). The README's verb list is written from the same text.
VERBS: dict[str, tuple[str, str]] = {
    "full": ("/rollback full <env>",
             "Full rollback (runbook Scenario 1): restore the newest backup aside, ask an approver, swap it in, "
             "restart the app, run smoke checks, post RESOLVED and the incident report. Operators only."),
    "assess": ("/rollback assess <env>",
               "Open an incident without acting and ask the runbook's question: CRITICAL (propose the full rollback), "
               "MINOR (continue and fix) or UNSURE (pause and page the approvers). Operators and approvers."),
    "declare": ("/rollback declare <env> [text]",
                "Declare an incident without a rollback; the text is shown on the alert. Operators and approvers."),
    "report": ("/rollback report <incident>",
               "Write the incident report again from the audit trail and post it to the incident's channel."),
    "backup": ("/rollback backup <env>",
               "Take a backup now (pg_dump -Fc, the runbook's layout) with a manifest of row counts and checksums."),
    "diff": ("/rollback diff <env>",
             "Compare the live schema with the newest backup: views, indexes, functions, tables, columns. Read-only."),
    "views": ("/rollback views <env> [v1,v2]",
              "Drop the views live has and the backup lacks (or the ones named); dependents listed, no CASCADE."),
    "indexes": ("/rollback indexes <env> [i1,i2]", "Drop the indexes live has and the backup lacks (or the ones named)."),
    "columns": ("/rollback columns <env>",
                "Re-add the columns the migration dropped, with their type, default and data from the backup."),
    "tables": ("/rollback tables <env> t1,t2",
               "Restore those tables' rows and columns from the backup (runbook Scenario 2); others keep their rows."),
    "rerun": ("/rollback rerun <env> <migration>",
              "Drop what one migration creates and run it again, in one transaction (Scenario 3)."),
    "app": ("/rollback app <env> [release]",
            "Deploy the previous (or named) release of the application and check it (Scenario 4)."),
    "diagnose": ("/rollback diagnose <env>",
                 "Read-only health report (runbook Part 8): long queries, lock waits, connectivity, disk, foreign-key "
                 "orphans, statistics and indexes; each finding has a fix button that asks an approver."),
    "watch": ("/rollback watch <env> [minutes|stop]",
              "While a migration runs, post long queries, lock waits, hung sessions and lost connections (default "
              "30 minutes; stops by itself)."),
    "restore-quarantine": ("/rollback restore-quarantine <env> <incident>",
                           "Put back, exactly, the foreign-key orphans an incident moved into rollback_quarantine."),
    "cleanup": ("/rollback cleanup <env>",
                "Drop the restored copies that interrupted or failed runs left behind (never live, never a kept "
                "failed copy), after an approval."),
    "status": ("/rollback status", "Open incidents and running rollbacks, with their current step."),
    "help": ("/rollback help", "This list."),
}


def _reply(text: str, *extra: str) -> SlackMessage:
    blocks = [section(text)] + ([context(*extra)] if extra else [])
    return SlackMessage(" ".join([text, *extra]), blocks)


def help_message(environments: list[str]) -> SlackMessage:
    lines = [f"• `{usage}` — {what}" for usage, what in VERBS.values()]
    return _reply("*rollback-bot* verbs:\n" + "\n".join(lines),
                  "Environments: " + (", ".join(f"`{e}`" for e in environments) or "none configured") + ".")


def unknown_verb(verb: str) -> SlackMessage:
    known = ", ".join(f"`{v}`" for v in VERBS)
    return _reply(f"I don't know the verb `{verb}`. Verbs: {known}.", "Try `/rollback help`.")


def usage_error(verb: str, problem: str) -> SlackMessage:
    if verb not in VERBS:  # started by a button (a remedy), not typed: no usage to show
        return _reply(f"{problem}.", "Nothing was started.")
    usage, _ = VERBS[verb]
    return _reply(f"{problem}. Usage: `{usage}`.", "Nothing was started.")


def unknown_environment(environment: str, known: list[str]) -> SlackMessage:
    listed = ", ".join(f"`{e}`" for e in known)
    return _reply(f"There is no environment `{environment}` in the configuration. Configured: {listed}.",
                  "Nothing was started.")


def refused(reason: str, allowed: list[str]) -> SlackMessage:
    who = ", ".join(mention(a) for a in allowed) or "nobody is configured"
    return _reply(f"🚫 Not done: {reason}.", f"Who may: {who}. This attempt was recorded in the audit trail.")


def already_running(environment: str, incident_id: str, requested_by: str, step: str | None, channel: str) -> SlackMessage:
    where = f" (now: {step})" if step else ""
    return _reply(f"A rollback of `{environment}` is already running: *{incident_id}*{where}, requested by "
                  f"{mention(requested_by)}. Follow it in <#{channel}>.", "Only one rollback per environment runs at a time.")


def started(plan_title: str, environment: str, incident_id: str, channel: str) -> SlackMessage:
    return _reply(f"Started the {plan_title.lower()} of `{environment}`: *{incident_id}*. Follow it in <#{channel}>.",
                  "An approver will be asked before anything live changes.")


def decision_too_late(state: str, decided_by: str | None) -> SlackMessage:
    by = f" by {mention(decided_by)}" if decided_by and decided_by != "bot" else ""
    return _reply(f"This approval was already {state}{by}; your click changed nothing.")


def approval_not_found() -> SlackMessage:
    return _reply("I don't know this approval (the button may be from another installation or tampered with); "
                  "nothing was done.")


def unknown_button() -> SlackMessage:
    return _reply("I don't know this button (it may be from an older version of the bot, or tampered with); "
                  "nothing was done.", "`/rollback status` lists the open incidents and running rollbacks.")


def internal_error(error_id: str) -> SlackMessage:
    return _reply(f"Something went wrong on my side (error id `{error_id}`); nothing was started.",
                  "The error id is in the bot's log.")


def status_message(lines: list[StatusLine]) -> SlackMessage:
    if not lines:
        return _reply("No open incidents and no running rollbacks.")
    rows = []
    for line in lines:
        run = (f"run {line.run_id}: {line.run_state}" + (f", step: {line.current_step}" if line.current_step else "")
               + (f", requested by {mention(line.requested_by)}" if line.requested_by else "")) if line.run_id else "no run"
        rows.append(f"• *{line.incident_id}* · `{line.environment}` · {line.alert_status} since "
                    f"{line.declared_at:%Y-%m-%d %H:%M} UTC — {run}")
    return _reply("*Open incidents*\n" + "\n".join(rows))


def note(text: str) -> SlackMessage:
    return _reply(text)


def not_possible(reason: str) -> SlackMessage:
    return _reply(f"Not done: {reason}.", "Nothing was changed.")


def unknown_incident(incident_id: str) -> SlackMessage:
    return _reply(f"There is no incident `{incident_id}`.", "`/rollback status` lists the open ones.")


def declared(incident_id: str, environment: str, channel: str, new: bool) -> SlackMessage:
    if new:
        return _reply(f"Declared *{incident_id}* for `{environment}`. Follow it in <#{channel}>.")
    return _reply(f"`{environment}` already has an open incident: *{incident_id}*. Follow it in <#{channel}>.",
                  "One open incident per environment; a rollback joins it.")


def report_posted(incident_id: str, channel: str) -> SlackMessage:
    return _reply(f"The report of *{incident_id}* was written again and posted in <#{channel}>.")


def problem(text: str) -> SlackMessage:
    return _reply(f"⚠️ {text}", "Nothing was changed.")
