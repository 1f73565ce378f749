"""The service's typed answers as the replies the person who typed or clicked sees (ephemeral)."""

from __future__ import annotations

import readable
from actions.config import Settings
from actions.results import (
    AlreadyDecided,
    AlreadyRunning,
    ApprovalNotFound,
    Decided,
    Declared,
    Help,
    IncidentNotFound,
    InvalidArguments,
    NotPossible,
    PrepareStarted,
    Problem,
    Recorded,
    Refused,
    ReportRegenerated,
    Started,
    StatusReport,
    UnknownEnvironment,
    UnknownVerb,
    WatchOff,
    WatchOn,
)
from actions.status import BackupTaken, Diagnosis, DiffReport, StatusRow
from bot import presenters
from messages import diff as diff_message
from messages import replies
from messages.blocks import SlackMessage
from messages.diagnose import diagnosis_message
from messages.views import StatusLine
from readable import duration


class Public:
    """A reply the whole channel sees (a diagnose report, whose fix buttons others may use)."""

    def __init__(self, message: SlackMessage):
        self.message = message


def reply(answer, settings: Settings) -> SlackMessage | Public | None:
    """The message for an answer; None for one that needs no reply (a decision: the approval
    message itself is updated for everyone)."""
    match answer:
        case Started(incident=incident, run=run, title=title):
            return replies.started(title, run.environment, incident.id, incident.channel)
        case InvalidArguments(reason=reason, usage=usage):
            return replies.usage_error(usage, reason)
        case AlreadyRunning(incident=incident, run=run, current_step=step):
            return replies.already_running(run.environment, incident.id, run.requested_by, step, incident.channel)
        case Refused(reason=reason, allowed=allowed):
            return replies.refused(reason, list(allowed))
        case UnknownEnvironment(environment=environment, known=known):
            return replies.unknown_environment(environment, list(known))
        case UnknownVerb(verb=verb, known=known):
            return replies.unknown_verb(verb, list(known))
        case Help(verbs=verbs, environments=environments, outreach=outreach):
            return replies.help_message(list(verbs), list(environments), list(outreach))
        case Declared(incident=incident, new=new):
            return replies.declared(incident.id, incident.environment, incident.channel, new)
        case ReportRegenerated(incident=incident):
            return replies.report_posted(incident.id, incident.channel)
        case IncidentNotFound(incident_id=incident_id):
            return replies.unknown_incident(incident_id)
        case NotPossible(reason=reason):
            return replies.not_possible(reason)
        case Problem(text=text):
            return replies.problem(text)
        case Recorded(note=note):
            return replies.note(note)
        case Decided():
            return None
        case AlreadyDecided(approval=approval):
            return replies.decision_too_late(approval.state.value, approval.decided_by)
        case ApprovalNotFound():
            return replies.approval_not_found()
        case DiffReport():
            return diff_message.schema_diff(answer.environment, answer.database, answer.backup, answer.source,
                                            answer.diff)
        case BackupTaken():
            env = settings.environments[answer.environment]
            return diff_message.backup_taken(env.name, str(answer.path.relative_to(env.backup_dir.parent)),
                                             readable.size(answer.size), answer.seconds, answer.tables, answer.rows,
                                             [b.path.parent.name for b in answer.beyond_keep], env.keep_backups)
        case Diagnosis():
            return Public(diagnosis_message(answer))
        case WatchOn(environment=environment, minutes=minutes, channel=channel):
            return replies.note(f"👀 Started watching `{environment}` for {duration(minutes * 60)}; alerts go to "
                                f"<#{channel}>. It stops by itself; to end it sooner: `/rollback watch {environment} stop`.")
        case WatchOff(environment=environment, channel=channel, seconds=None):
            return replies.note(f"Stopping the watch of `{environment}`; its summary will be posted in <#{channel}>.")
        case WatchOff(environment=environment, channel=channel, seconds=seconds, reason=reason):
            # The reason says who stopped it, or that its time ran out just before the stop arrived.
            return replies.note(f"🏁 The watch of `{environment}` ended after {duration(seconds)}: {reason}. "
                                f"Its summary is posted in <#{channel}>.")
        case StatusReport(rows=rows, undelivered=undelivered, prepared=prepared):
            return replies.status_message([status_line(row) for row in rows],
                                          [presenters.undelivered_line(u) for u in undelivered],
                                          [presenters.prepared_line(p) for p in prepared])
        case PrepareStarted(copy=copy, channel=channel):
            return replies.note(f"🛟 Preparing a rollback of `{copy.environment}`: a backup now, restored into "
                                f"`{copy.database}` and verified. Follow it in <#{channel}>; it says *Rollback ready* "
                                "when a full rollback is an approval and a swap.")
    raise TypeError(f"no reply for {answer!r}")


def status_line(row: StatusRow) -> StatusLine:
    return StatusLine(incident_id=row.incident_id, environment=row.environment, alert_status=row.alert_status,
                      declared_at=row.declared_at, run_id=row.run_id, run_state=row.run_state,
                      current_step=row.current_step, requested_by=row.requested_by)


async def tell(respond, message: SlackMessage | None) -> None:
    """An ephemeral answer to the person who clicked; the message they clicked stays as it is."""
    if message is not None:
        await respond(text=message.text, blocks=message.blocks, response_type="ephemeral", replace_original=False)
