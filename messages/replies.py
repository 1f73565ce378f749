"""Replies to the person who typed a command or clicked a button (ephemeral: only they see them)."""

from __future__ import annotations

from messages.blocks import SlackMessage, context, mention, section
from messages.views import StatusLine


def _reply(text: str, *extra: str) -> SlackMessage:
    blocks = [section(text)] + ([context(*extra)] if extra else [])
    return SlackMessage(" ".join([text, *extra]), blocks)


def help_message(verbs: list[tuple[str, str, str]], environments: list[str], outreach: list[str] = ()) -> SlackMessage:
    """`verbs`: (usage, what it does, who may) of every verb, in order (actions/verbs.py); `outreach`:
    whether incidents are paged and mailed (a line each). The verbs go in as many sections as Slack's
    3,000 characters a section need; the fallback text lists the usages only, so it is never cut short."""
    lines = [f"• `{usage}` — {what} _({who})_" for usage, what, who in verbs]
    sections, current = [], "*rollback-bot* verbs:"
    for line in lines:
        if len(current) + 1 + len(line) > 2900:
            sections.append(current)
            current = line
        else:
            current += "\n" + line
    sections.append(current)
    where = ("Environments: " + (", ".join(f"`{e}`" for e in environments) or "none configured") + ". "
             + " ".join(f"{line}." for line in outreach)).strip()
    text = "rollback-bot verbs:\n" + "\n".join(usage for usage, _, _ in verbs) + "\n" + where
    return SlackMessage(text, [section(s) for s in sections] + [context(where)])


def unknown_verb(verb: str, verbs: list[str]) -> SlackMessage:
    known = ", ".join(f"`{v}`" for v in verbs)
    return _reply(f"I don't know the verb `{verb}`. Verbs: {known}.", "Try `/rollback help`.")


def usage_error(usage: str | None, problem: str) -> SlackMessage:
    """`usage` is None for what a button started (a remedy): there is no usage to show."""
    if usage is None:
        return _reply(f"{problem}.", "Nothing was started.")
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


def status_message(lines: list[StatusLine], undelivered: list[str] = (), prepared: list[str] = ()) -> SlackMessage:
    """`undelivered`: a line per page or mail that was given up or is being tried again; `prepared`: a line
    per prepared copy."""
    trouble = ("\n\n*Not delivered*\n" + "\n".join(f"• ⚠️ {line}" for line in undelivered)) if undelivered else ""
    trouble += ("\n\n*Prepared rollbacks*\n" + "\n".join(f"• 🛟 {line}" for line in prepared)) if prepared else ""
    if not lines:
        return _reply("No open incidents and no running rollbacks." + trouble)
    rows = []
    for line in lines:
        run = (f"run {line.run_id}: {line.run_state}" + (f", step: {line.current_step}" if line.current_step else "")
               + (f", requested by {mention(line.requested_by)}" if line.requested_by else "")) if line.run_id else "no run"
        rows.append(f"• *{line.incident_id}* · `{line.environment}` · {line.alert_status} since "
                    f"{line.declared_at:%Y-%m-%d %H:%M} UTC — {run}")
    return _reply("*Open incidents*\n" + "\n".join(rows) + trouble)


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
