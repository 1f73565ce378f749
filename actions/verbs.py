"""Every scenario the bot can run, by verb."""

from __future__ import annotations

from actions.engine.plan import PlanSpec
from actions.plans import app as app_rollback
from actions.plans import cleanup, quarantine, remedies, rerun
from actions.plans import columns as columns_rollback
from actions.plans import full as full_rollback
from actions.plans import objects as drop_objects
from actions.plans import restart as app_restart
from actions.plans.tables import plan as tables_rollback

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
