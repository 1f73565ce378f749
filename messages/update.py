"""The scheduled status update: where the incident stands now, and what comes next."""

from __future__ import annotations

from messages.blocks import SlackMessage, context, section
from messages.views import UpdateView
from readable import duration


def status_update(view: UpdateView) -> SlackMessage:
    lines = [f"🔄 *STATUS UPDATE* · `{view.incident_id}` · {view.environment} · {view.at:%H:%M:%S} UTC",
             f"*Status:* {view.status} · level {view.level} · application impact {view.impact} · "
             f"open for {duration(view.elapsed_seconds)}"]
    if view.current_step:
        state = "waiting for approval" if view.waiting_for_approval else f"running for {duration(view.step_seconds)}"
        lines.append(f"*Now:* {view.current_step} ({state})")
    elif view.decision:
        lines.append(f"*Now:* {view.decision}")
    else:
        lines.append("*Now:* no rollback is running")
    if view.progress_total:
        percent = 100 * view.progress_done / view.progress_total
        eta = (f", restore ETA {view.eta_at:%H:%M:%S} UTC (in {duration((view.eta_at - view.at).total_seconds())})"
               if view.eta_at else ", ETA once the rate is known")
        lines.append(f"*Restore progress:* {percent:.0f}% ({view.progress_done} of {view.progress_total} items){eta}")
    if view.upcoming:
        lines.append("*Next:* " + " → ".join(view.upcoming[:4]) + (" → …" if len(view.upcoming) > 4 else ""))
    note = f"Next update in {duration(view.next_update_seconds)}."
    return SlackMessage("\n".join(lines + [note]).replace("*", ""), [section("\n".join(lines)), context(note)])
