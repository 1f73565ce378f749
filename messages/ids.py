"""Action ids and button values: the contract between the blocks we send and the clicks we get.

A button's value is a small model as JSON, so a click is self-describing (which incident, which
approval) and idempotent: deciding the same approval twice finds it already decided.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class ActionId(StrEnum):
    APPROVE = "approval-approve"
    DENY = "approval-deny"
    SEVERITY_CRITICAL = "severity-critical"
    SEVERITY_MINOR = "severity-minor"
    SEVERITY_UNSURE = "severity-unsure"
    START_FULL = "start-full-rollback"
    CARRY_OVER = "carry-over"  # after a full rollback: start the gated carry-over of the rows inserted after the backup
    ESCALATE = "incident-escalate"
    RESOLVE = "incident-resolve"
    EDIT_REPORT = "report-edit"
    RUN_AGAIN = "run-again"  # an interrupted run: start the same plan again in the same incident
    CLEAN_UP = "clean-up"
    RETRY_APP = "retry-app"  # the swap is done but the application did not come back: start and check it again  # leftover restored copies: start the gated `cleanup` plan
    REMEDY = "remedy"  # + "-<n>": a diagnose finding's fix; starts a gated `remedy` run
    CHECKLIST_PREFIX = "checklist-"  # + group key: one checkboxes element per group
    SIGN_OFF_PREFIX = "signoff-"  # + role key: one button per sign-off role


class CallbackId(StrEnum):
    REPORT_MODAL = "incident-report"


class ApprovalButton(BaseModel):
    """The value of the Approve and Deny buttons."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    incident: str = Field(max_length=40)
    approval: str = Field(max_length=40)  # the approval's unguessable id


class IncidentButton(BaseModel):
    """The value of every incident-level button (escalate, resolve, severity, sign-off, …)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    incident: str = Field(max_length=40)


class RemedyButton(BaseModel):
    """The value of a remedy button on a diagnose report: enough to start the gated fix."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    environment: str = Field(max_length=40)
    kind: str = Field(max_length=20)
    target: dict[str, str | int] = Field(max_length=4)


class RunButton(BaseModel):
    """The value of the buttons on an interrupted run's message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    incident: str = Field(max_length=40)
    run: str = Field(max_length=60)


class EnvironmentButton(BaseModel):
    """The value of the clean-up button the bot posts at start-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    environment: str = Field(max_length=40)
