"""Workflow service task lifecycle (seed 001, MCP section): TaskStarted / TaskCompleted / TaskFailed (topic wkf_task).

The Workflow service starts XUMI processing; these events bracket a task from the orchestrator's side.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from schemas.envelope import Envelope
from schemas.rules import inconsistent
from schemas.types import HostName, Id

WkfTaskName = Literal["wkf.task.started", "wkf.task.completed", "wkf.task.failed"]
WkfEventType = Literal["TaskStarted", "TaskCompleted", "TaskFailed"]

# The seed's event types and our names are two spellings of one thing; they must agree.
EVENT_TYPE_FOR_NAME: dict[str, str] = {
    "wkf.task.started": "TaskStarted",
    "wkf.task.completed": "TaskCompleted",
    "wkf.task.failed": "TaskFailed",
}


class WkfTaskEvent(Envelope):
    """A Workflow task event. The seed's body: the initiating user (envelope user_id), the task id, and on
    TaskStarted the Kubernetes node running it.

    Rules: event_type matches event_name; k8s_node is required on TaskStarted (inconsistent otherwise).
    """

    FAMILY: ClassVar[str] = "wkf_task"
    SYSTEM: ClassVar[str] = "wkf"

    event_name: WkfTaskName = Field(description="wkf.task.{started|completed|failed}")
    event_type: WkfEventType = Field(description="The Workflow service's own event type")
    task_id: Id = Field(description="Model processing task id; the lifecycle join key")
    k8s_node: HostName | None = Field(default=None, description="Kubernetes node name; required on TaskStarted")

    @model_validator(mode="after")
    def _agree(self) -> WkfTaskEvent:
        if EVENT_TYPE_FOR_NAME[self.event_name] != self.event_type:
            raise inconsistent("event_type", f"{self.event_type} does not match event_name {self.event_name}")
        if self.event_type == "TaskStarted" and not self.k8s_node:
            raise inconsistent("k8s_node", "required on TaskStarted")
        return self
