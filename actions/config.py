"""The configuration file: one TOML document validated by pydantic.

Relative paths are resolved against the config file's folder, so a config can be moved together
with its backups and audit database. Secrets (DSNs with passwords) come from the file or from an
environment variable named by `dsn_env`; both end up as `SecretStr` and are never printed.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from psycopg.conninfo import conninfo_to_dict
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

ENVIRONMENT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")


class ConfigError(Exception):
    """The configuration cannot be used; `str()` is one line per problem, naming file and key."""


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return value


HttpUrlText = Annotated[str, AfterValidator(_http_url)]  # kept as text: the URL is used exactly as written


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SmokeCheck(_Strict):
    """One HTTP check run after the application is back (the runbook's Step 9)."""

    url: HttpUrlText
    status: int = Field(200, ge=100, le=599)
    method: Literal["GET", "HEAD", "POST"] = "GET"
    bearer_env: str | None = None  # environment variable holding a bearer token, never the token
    timeout_seconds: float = Field(10.0, gt=0)


class Environment(_Strict):
    """One database environment that can be rolled back (`[environments.<name>]`)."""

    name: str = ""
    dsn: SecretStr | None = None
    dsn_env: str | None = None
    backup_dir: Path
    backup_name: str = "{env}_full_backup.dump"
    stop: list[list[str]] = Field(default_factory=list)
    start: list[list[str]] = Field(default_factory=list)
    stop_app: Literal["immediately", "at_swap"] = "immediately"
    health_url: str | None = None
    health_timeout_seconds: float = Field(120.0, gt=0)
    smoke: list[SmokeCheck] = Field(default_factory=list)
    restore_jobs: int = Field(2, ge=1, le=64)
    maintenance_db: str = "postgres"
    command_timeout_seconds: float = Field(300.0, gt=0)
    keep_backups: int = Field(7, ge=1)  # older backups are listed by /rollback backup, never deleted silently
    migrations_dir: Path | None = None  # for /rollback rerun: the migration files (*.sql)
    deploy: list[list[str]] = Field(default_factory=list)  # for /rollback app: argv lists, "{ref}" substituted
    previous_release: list[str] | None = None  # argv printing the previous release (last line), for /rollback app
    long_query_seconds: float = Field(120.0, gt=0)  # runbook Part 2: "Long-running query (> 2 minutes)"
    hung_minutes: float = Field(10.0, gt=0)  # runbook Contingency 1: "No Progress for 10+ minutes"
    watch_poll_seconds: float = Field(5.0, gt=0)  # /rollback watch polls this often
    check_timeout_seconds: float = Field(20.0, gt=0)  # each /rollback diagnose check's time limit

    @field_validator("stop", "start", "deploy")
    @classmethod
    def _argv_lists(cls, value: list[list[str]]) -> list[list[str]]:
        for argv in value:
            if not argv or not argv[0]:
                raise ValueError("expected a list of non-empty argv lists, e.g. [[\"systemctl\", \"stop\", \"app\"]]")
        return value

    @model_validator(mode="after")
    def _one_dsn_source(self) -> Environment:
        if (self.dsn is None) == (self.dsn_env is None):
            raise ValueError("expected exactly one of `dsn` or `dsn_env`")
        return self

    @property
    def resolved_dsn(self) -> SecretStr:
        """The DSN, from the file or from the variable `dsn_env` names (checked at load time)."""
        if self.dsn is not None:
            return self.dsn
        return SecretStr(os.environ[self.dsn_env or ""])

    @property
    def database(self) -> str:
        """The live database's name, taken from the DSN."""
        return conninfo_to_dict(self.resolved_dsn.get_secret_value())["dbname"]

    @property
    def target(self) -> str:
        """`host:port/dbname` for messages: the DSN without user or password."""
        params = conninfo_to_dict(self.resolved_dsn.get_secret_value())
        host = params.get("host") or params.get("hostaddr") or "localhost"
        return f"{host}:{params.get('port') or 5432}/{params['dbname']}"


SIGNOFF_ROLES = {"dba": "Database Administrator", "lead_dev": "Lead Developer", "manager": "Operations Manager"}


class BotConfig(_Strict):
    """The `[bot]` table."""

    audit_db: Path = Path("rollback-audit.sqlite")
    reports_dir: Path | None = None  # default: `reports/` beside the audit database
    logs_dir: Path | None = None  # default: `logs/` beside the audit database
    incident_channel: str = Field(min_length=1)
    operators: list[str] = Field(min_length=1)
    approvers: list[str] = Field(min_length=1)
    two_person_rule: bool = True
    approval_ttl_seconds: float = Field(900.0, gt=0)  # a pending approval expires this long after the run waits on it
    update_interval_seconds: float = Field(300, ge=0.2)
    # Slack's pace per channel: chat.postMessage about once a second, with short bursts.
    slack_posts_per_second: float = Field(1.0, gt=0, le=100)
    slack_post_burst: int = Field(3, ge=1, le=100)
    create_channel: bool = False  # a channel per incident: inc-<yyyymmdd>-<env>-<nnnn>
    prepared_ttl_hours: float = Field(24, gt=0)  # a prepared copy older than this is flagged and offered for removal
    notify_channels: list[str] = Field(default_factory=list)  # also told when an incident opens
    # Sign-off roles (the runbook's Approval & Sign-Off) -> who may sign; default: the approvers.
    signoffs: dict[str, list[str]] = Field(default_factory=dict)
    required_signoffs: list[str] = Field(default_factory=lambda: list(SIGNOFF_ROLES))
    remind_immediate_after_seconds: float = Field(3600, gt=0)  # Part 10: "within 1 hour"
    remind_day_after_seconds: float = Field(86400, gt=0)  # Part 10: "within 24 hours"

    @field_validator("operators", "approvers")
    @classmethod
    def _slack_ids(cls, value: list[str]) -> list[str]:
        return _check_ids(value)

    @field_validator("signoffs")
    @classmethod
    def _signoff_roles(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for role, members in value.items():
            if role not in SIGNOFF_ROLES:
                raise ValueError(f"unknown sign-off role {role!r}: expected one of {', '.join(SIGNOFF_ROLES)}")
            _check_ids(members)
        return value

    @field_validator("required_signoffs")
    @classmethod
    def _required_roles(cls, value: list[str]) -> list[str]:
        unknown = [r for r in value if r not in SIGNOFF_ROLES]
        if unknown:
            raise ValueError(f"unknown sign-off role(s) {', '.join(unknown)}: expected {', '.join(SIGNOFF_ROLES)}")
        return value

    def signers(self, role: str) -> list[str]:
        """Who may sign off as `role` (user or usergroup ids)."""
        return self.signoffs.get(role) or self.approvers


def _check_ids(value: list[str]) -> list[str]:
    for entry in value:
        if not re.fullmatch(r"[UWS][A-Z0-9]{2,}", entry):
            raise ValueError(f"expected Slack user ids (U…/W…) or usergroup ids (S…), got {entry!r}")
    return value


class _Delivery(_Strict):
    """How hard a page or a mail is tried: `tries` attempts, pausing `retry_seconds`, doubling each time."""

    tries: int = Field(5, ge=1, le=20)
    retry_seconds: float = Field(2.0, gt=0, le=600)
    timeout_seconds: float = Field(10.0, gt=0, le=120)  # one attempt's limit


class PagingConfig(_Delivery):
    """`[paging]`: PagerDuty through its Events API v2. The integration key is read from the environment."""

    pagerduty_routing_key_env: str = "PAGERDUTY_ROUTING_KEY"
    pagerduty_url: HttpUrlText = "https://events.pagerduty.com/v2/enqueue"
    page_at_level: int = Field(3, ge=1, le=3)

    @property
    def routing_key(self) -> SecretStr:
        """The integration key, from the variable named by `pagerduty_routing_key_env` (checked at load time)."""
        return SecretStr(os.environ.get(self.pagerduty_routing_key_env, ""))


class EmailConfig(_Delivery):
    """`[email]`: the incident's mail through SMTP. The login comes from the environment, if any."""

    smtp_host: str = Field(min_length=1)
    smtp_port: int | None = Field(None, ge=1, le=65535)  # default: 465 with ssl, 587 with starttls, else 25
    starttls: bool = False
    ssl: bool = False  # implicit TLS from the first byte (port 465)
    ca_file: Path | None = None  # a private CA to trust besides the system's (a company relay)
    username_env: str | None = None
    password_env: str | None = None
    sender: str = Field(pattern=r"^[^@\s<>]+@[^@\s<>]+$")
    recipients: list[str] = Field(min_length=1)
    email_at_level: int = Field(2, ge=1, le=3)
    email_updates: bool = False
    timeout_seconds: float = Field(15.0, gt=0, le=120)

    @field_validator("recipients")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not re.fullmatch(r"[^@\s<>,]+@[^@\s<>,]+", address):
                raise ValueError(f"expected plain mail addresses (dba-team@example.com), got {address!r}")
        return value

    @model_validator(mode="after")
    def _one_tls_mode(self) -> EmailConfig:
        if self.starttls and self.ssl:
            raise ValueError("choose one of `starttls = true` (port 587) or `ssl = true` (port 465), not both")
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("set both `username_env` and `password_env`, or neither (a relay without login)")
        return self

    @property
    def port(self) -> int:
        return self.smtp_port or (465 if self.ssl else 587 if self.starttls else 25)

    @property
    def username(self) -> str | None:
        return os.environ.get(self.username_env) if self.username_env else None

    @property
    def password(self) -> SecretStr | None:
        return SecretStr(os.environ.get(self.password_env, "")) if self.password_env else None


class LocalConfig(_Strict):
    """`[local]`: how `rollback-bot local` shows the configured people in its browser workspace."""

    users: dict[str, str] = Field(default_factory=dict)  # user id -> display name
    usergroups: dict[str, list[str]] = Field(default_factory=dict)  # usergroup id -> member user ids


class Settings(_Strict):
    """The whole configuration file, with paths resolved."""

    bot: BotConfig
    environments: dict[str, Environment] = Field(min_length=1)
    local: LocalConfig = Field(default_factory=LocalConfig)
    paging: PagingConfig | None = None  # without it nothing is paged
    email: EmailConfig | None = None  # without it nothing is mailed
    config_path: Path = Path("rollback-bot.toml")

    @property
    def reports_dir(self) -> Path:
        return self.bot.reports_dir or self.bot.audit_db.parent / "reports"

    @property
    def logs_dir(self) -> Path:
        return self.bot.logs_dir or self.bot.audit_db.parent / "logs"


def load_settings(path: str | os.PathLike[str], *, outreach_secrets: bool = True) -> Settings:
    """Read and validate a config file; raise ConfigError naming the file, the key and the fix.
    `outreach_secrets=False` skips checking the paging and mail secrets in the environment: the local
    workspace points both at its own stand-ins and makes up their credentials."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found (pass --config FILE; see README, 'Configuration')")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        settings = Settings.model_validate({**raw, "config_path": path})
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(path, error) for error in exc.errors())) from None
    problems = list(_environment_problems(path, settings))
    problems += list(_outreach_problems(path, settings)) if outreach_secrets else []
    if problems:
        raise ConfigError("\n".join(problems))
    return _resolved(settings, path.resolve().parent)


def _describe(path: Path, error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"]
    if error["type"] == "missing":
        message = "required key is missing"
    elif error["type"] == "extra_forbidden":
        message = "unknown key (check the spelling against the README's configuration reference)"
    found = error.get("input")
    shown = "" if error["type"] in ("missing", "extra_forbidden") or isinstance(found, (dict, SecretStr)) else f", got {found!r}"
    if key.endswith(".dsn"):
        shown = ""  # a DSN may hold a password
    return f"{path}: {key}: {message}{shown}"


def _environment_problems(path: Path, settings: Settings):
    for name, env in settings.environments.items():
        if not ENVIRONMENT_NAME.fullmatch(name):
            yield (f"{path}: environments.{name}: environment names must match {ENVIRONMENT_NAME.pattern} "
                   "(lowercase letters, digits, - and _), because they appear in file and database names")
            continue
        if env.dsn_env is not None and not os.environ.get(env.dsn_env):
            yield f"{path}: environments.{name}.dsn_env: environment variable {env.dsn_env} is not set (expected a PostgreSQL DSN)"
            continue
        try:
            params = conninfo_to_dict(env.resolved_dsn.get_secret_value())
        except Exception:  # psycopg raises ProgrammingError with the DSN in the text: keep it out
            yield f"{path}: environments.{name}.dsn: not a valid PostgreSQL connection string"
            continue
        if not params.get("dbname"):
            yield f"{path}: environments.{name}.dsn: expected the database name in the DSN (…/crm_staging)"


def _outreach_problems(path: Path, settings: Settings):
    """The paging and mail secrets must be in the environment when the bot starts, not found missing mid-incident."""
    if settings.paging is not None:
        name = settings.paging.pagerduty_routing_key_env
        if not os.environ.get(name):
            yield (f"{path}: paging.pagerduty_routing_key_env: environment variable {name} is not set "
                   "(expected the integration key of a PagerDuty service's Events API v2 integration)")
        elif not re.fullmatch(r"[A-Za-z0-9]{32}", os.environ[name]):
            yield (f"{path}: paging.pagerduty_routing_key_env: {name} is not an Events API v2 integration key "
                   "(expected its 32 letters and digits, from the service's Integrations tab)")
    if settings.email is not None:
        for key in ("username_env", "password_env"):
            name = getattr(settings.email, key)
            if name is not None and not os.environ.get(name):
                yield f"{path}: email.{key}: environment variable {name} is not set (expected the SMTP login's {key[:-4]})"
        ca_file = settings.email.ca_file
        if ca_file is not None and not (ca_file if ca_file.is_absolute() else path.resolve().parent / ca_file).is_file():
            yield f"{path}: email.ca_file: {ca_file} is not a file (expected a PEM bundle of the CA to trust)"


def _resolved(settings: Settings, base: Path) -> Settings:
    def absolute(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else base / p)

    bot = settings.bot.model_copy(update={
        "audit_db": absolute(settings.bot.audit_db),
        "reports_dir": absolute(settings.bot.reports_dir),
        "logs_dir": absolute(settings.bot.logs_dir),
    })
    environments = {
        name: env.model_copy(update={"name": name, "backup_dir": absolute(env.backup_dir),
                                     "migrations_dir": absolute(env.migrations_dir)})
        for name, env in settings.environments.items()
    }
    email = settings.email and settings.email.model_copy(update={"ca_file": absolute(settings.email.ca_file)})
    return settings.model_copy(update={"bot": bot, "environments": environments, "email": email})
