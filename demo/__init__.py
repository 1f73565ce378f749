"""A CRM-shaped sample database, its breaking Phase 4 migration, backups and exact comparison.

Used by the tests, by ``rollback-bot demo`` and by the benchmark:

- ``create_crm`` / ``drop_database``: a deterministic CRM of any size (demo.crm)
- ``apply_phase4_migration``: the runbook's views, indexes and column drops (demo.migration)
- ``take_backup``: ``pg_dump -Fc`` into ``<root>/<UTC stamp>/<env>_full_backup.dump`` (demo.backup)
- ``fingerprint`` / ``diff``: "is this database exactly that one?" (demo.fingerprint)
"""

from demo.backup import BackupError, take_backup
from demo.crm import CrmSummary, create_crm, database_dsn, drop_database
from demo.fingerprint import Fingerprint, diff, fingerprint
from demo.migration import MigrationAlreadyApplied, MigrationSummary, apply_phase4_migration

__all__ = [
    "BackupError",
    "CrmSummary",
    "Fingerprint",
    "MigrationAlreadyApplied",
    "MigrationSummary",
    "apply_phase4_migration",
    "create_crm",
    "database_dsn",
    "diff",
    "drop_database",
    "fingerprint",
    "take_backup",
]
