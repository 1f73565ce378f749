"""Loading the configuration file: resolution of paths and secrets, and the errors people see."""

from __future__ import annotations

import pytest

from actions.config import ConfigError, load_settings
from support.cli import MINIMAL, config


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    settings = load_settings(config(tmp_path))
    assert settings.bot.audit_db == tmp_path / "rollback-audit.sqlite"
    assert settings.reports_dir == tmp_path / "reports"
    env = settings.environments["staging"]
    assert env.backup_dir == tmp_path / "_backups/staging"
    assert env.name == "staging" and env.database == "crm_staging" and env.stop_app == "immediately"
    assert env.target == "127.0.0.1:5432/crm_staging"  # no user, no password


def test_the_dsn_is_a_secret(tmp_path):
    env = load_settings(config(tmp_path)).environments["staging"]
    assert "s3cret-pw" not in repr(env) and "s3cret-pw" not in str(env.dsn)


def test_dsn_env_names_a_variable(tmp_path, monkeypatch):
    text = MINIMAL.replace('dsn = "postgresql://app:s3cret-pw@127.0.0.1:5432/crm_staging"', 'dsn_env = "STAGING_DSN"')
    monkeypatch.delenv("STAGING_DSN", raising=False)
    with pytest.raises(ConfigError, match="environments.staging.dsn_env: environment variable STAGING_DSN is not set"):
        load_settings(config(tmp_path, text))
    monkeypatch.setenv("STAGING_DSN", "postgresql://app:pw@db.internal:6432/crm")
    env = load_settings(config(tmp_path, text)).environments["staging"]
    assert env.database == "crm" and env.target == "db.internal:6432/crm"


def test_exactly_one_dsn_source(tmp_path):
    text = MINIMAL.replace('backup_dir =', 'dsn_env = "X"\nbackup_dir =')
    with pytest.raises(ConfigError, match="expected exactly one of `dsn` or `dsn_env`") as error:
        load_settings(config(tmp_path, text))
    assert "s3cret-pw" not in str(error.value)


def test_not_toml(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config(tmp_path, "[bot\n"))


def test_every_problem_gets_its_own_line(tmp_path):
    text = MINIMAL.replace('operators = ["U0OPS1"]', 'operators = []').replace('approvers = ["U0DBA1"]', 'approvers = "U0DBA1"')
    with pytest.raises(ConfigError) as error:
        load_settings(config(tmp_path, text))
    lines = str(error.value).splitlines()
    assert len(lines) == 2 and all(line.startswith(str(tmp_path)) for line in lines)
