"""PBAC audit families (seed 001): access decisions, policy changes and service messages.

Topics pbac_access, pbac_politics, pbac_service; all go to ClickHouse's append-only audit log unenriched.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints, model_validator

from schemas.envelope import Envelope
from schemas.rules import inconsistent
from schemas.types import Id, Label, Name, Text

# Resources are paths or URNs (e.g. project/p1/models/m2), longer than ids.
Resource = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Decision = Literal["allow", "deny"]

PbacAccessName = Literal["pbac.access.checked"]
PbacPolicyName = Literal["pbac.policy.created", "pbac.policy.updated", "pbac.policy.deleted"]
PbacServiceName = Literal["pbac.service.updated", "pbac.service.loaded", "pbac.service.reloaded"]

ACTION_FOR_SERVICE_NAME: dict[str, str] = {
    "pbac.service.updated": "update",
    "pbac.service.loaded": "load",
    "pbac.service.reloaded": "reload",
}


class PbacAccessEvent(Envelope):
    """Who accessed what, and what the policy engine decided."""

    FAMILY: ClassVar[str] = "pbac_access"
    SYSTEM: ClassVar[str] = "pbac"

    event_name: PbacAccessName = Field(description="pbac.access.checked")
    subject: Id = Field(description="Who asked: a user or service account id")
    resource: Resource = Field(description="What was asked for (path or URN)")
    action: Label = Field(description="Requested action as the policy names it, e.g. read, models:invoke")
    decision: Decision = Field(description="allow or deny")
    policy_id: Id | None = Field(default=None, description="Policy that decided; absent for default deny")
    reason: Text | None = Field(default=None, description="Why, as the engine explains it")


class PbacPolicyEvent(Envelope):
    """A policy created, updated or deleted (topic pbac_politics)."""

    FAMILY: ClassVar[str] = "pbac_politics"
    SYSTEM: ClassVar[str] = "pbac"

    event_name: PbacPolicyName = Field(description="pbac.policy.{created|updated|deleted}")
    policy_id: Id = Field(description="Policy id")
    policy_version: int = Field(ge=1, le=2**31 - 1, description="Policy version after the change")
    changed_by: Id = Field(description="Who made the change")
    change_summary: Text = Field(description="What changed, for the audit trail")


class PbacServiceEvent(Envelope):
    """A PBAC service message: policy bundle updates, loads and reloads.

    Rule: action matches event_name (updated/update, loaded/load, reloaded/reload), else inconsistent.
    """

    FAMILY: ClassVar[str] = "pbac_service"
    SYSTEM: ClassVar[str] = "pbac"

    event_name: PbacServiceName = Field(description="pbac.service.{updated|loaded|reloaded}")
    service: Name = Field(description="Service instance that reports")
    action: Literal["update", "load", "reload"] = Field(description="What the service did")
    status: Literal["ok", "warning", "error"] = Field(description="Outcome")
    message: Text = Field(default="", description="Free text")

    @model_validator(mode="after")
    def _agree(self) -> PbacServiceEvent:
        if ACTION_FOR_SERVICE_NAME[self.event_name] != self.action:
            raise inconsistent("action", f"{self.action} does not match event_name {self.event_name}")
        return self
