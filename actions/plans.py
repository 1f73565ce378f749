"""Every scenario the bot can run, by verb."""

from __future__ import annotations

from actions import app_restart, app_rollback, cleanup, columns_rollback, drop_objects, full_rollback, quarantine, remedies, rerun, tables_rollback
from actions.plan import PlanSpec

PLANS: dict[str, PlanSpec] = {
    "full": PlanSpec("full", "Full rollback", lambda env, args: full_rollback.build_plan(env.stop_app), level=3),
    "views": drop_objects.VIEWS_SPEC,
    "indexes": drop_objects.INDEXES_SPEC,
    "columns": columns_rollback.SPEC,
    "tables": tables_rollback.SPEC,
    "rerun": rerun.SPEC,
    "app": app_rollback.SPEC,
    "remedy": remedies.SPEC,  # started by a diagnose report's buttons, not typed
    "restore-quarantine": quarantine.RESTORE_SPEC,
    "cleanup": cleanup.SPEC,
    "restart": app_restart.SPEC,  # from the button on a full rollback whose application did not come back
}
