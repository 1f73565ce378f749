"""Part 10 of the runbook, post-incident actions, as data: the checklist's groups and items."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChecklistGroup:
    key: str
    title: str
    items: tuple[tuple[str, str], ...]  # (item key, text)
    remind: str | None = None  # which reminder covers it: "immediate" (after 1 h) or "day" (after 24 h)


CHECKLIST = (
    ChecklistGroup("immediate", "Immediate (within 1 hour)", (
        ("verify_systems", "Verify all systems operational"),
        ("notify_stakeholders", "Notify stakeholders of resolution"),
        ("backup_current_state", "Create backup of current state"),
        ("document_timeline", "Document incident timeline"),
    ), remind="immediate"),
    ChecklistGroup("short_term", "Short-term (within 24 hours)", (
        ("root_cause_analysis", "Conduct root cause analysis"),
        ("preventive_measures", "Identify preventive measures"),
        ("update_runbooks", "Update runbooks with learnings"),
        ("share_report", "Share incident report with team"),
    ), remind="day"),
    ChecklistGroup("long_term", "Long-term (before next attempt)", (
        ("implement_prevention", "Implement preventive measures"),
        ("monitoring", "Add additional monitoring/alerts"),
        ("migration_procedures", "Update migration procedures"),
        ("training", "Schedule team training/review"),
    )),
)
GROUPS = {group.key: group for group in CHECKLIST}
ITEMS = {key: text for group in CHECKLIST for key, text in group.items}


def unchecked(group: ChecklistGroup, state: dict[str, dict]) -> list[str]:
    """The texts of the group's items nobody has ticked (or that were unticked)."""
    return [text for key, text in group.items if not state.get(key, {}).get("checked")]
