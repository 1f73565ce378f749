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


class ApprovalButton(BaseModel):
    """The value of the Approve and Deny buttons."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    incident: str = Field(max_length=40)
    approval: str = Field(max_length=40)  # the approval's unguessable id
