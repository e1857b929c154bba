"""XUMI families (seed 001): weights/checkpoint loads (topic xumi_load) and task lifecycle (topic xumi_task).

These feed the lifecycle join (keyed by task_id) and the Pipeline TD's load-vs-init-vs-inference breakdowns.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from schemas.envelope import Envelope
from schemas.rules import inconsistent, require_iff
from schemas.types import ByteCount, DurationMs, Id, Label, Name, Text

MIN_ATTEMPT, MAX_ATTEMPT = 1, 100  # a task's attempts; xumi_load names its attempt in labels["attempt"] too

XumiLoadName = Literal[
    "xumi.weights.load.start",
    "xumi.weights.load.finish",
    "xumi.checkpoint.load.start",
    "xumi.checkpoint.load.finish",
]

XumiTaskName = Literal[
    "xumi.task.queued",
    "xumi.task.started",
    "xumi.task.initialized",
    "xumi.task.finished",
    "xumi.task.failed",
]


class XumiLoadEvent(Envelope):
    """Base-model weights or a checkpoint being loaded.

    Rules: duration_ms and cache_hit are present on `*.finish` and absent on `*.start` (inconsistent).
    """

    FAMILY: ClassVar[str] = "xumi_load"
    SYSTEM: ClassVar[str] = "xumi"

    event_name: XumiLoadName = Field(description="xumi.{weights|checkpoint}.load.{start|finish}")
    task_id: Id | None = Field(default=None, description="Task the load serves, if any (loads may be warm-ups)")
    base_model: Name = Field(description="Base model whose weights (or checkpoint) are loaded")
    checkpoint_id: Name = Field(description="Checkpoint id (for weight loads: the base weights' id)")
    checkpoint_version: Name = Field(description="Checkpoint version")
    storage_type: Label = Field(description="Storage the load reads from (STORAGE_TYPE), e.g. nfs, s3, local_ssd")
    bytes: ByteCount = Field(description="Bytes to load (start) or loaded (finish)")
    duration_ms: DurationMs | None = Field(default=None, description="Load time; finish only")
    cache_hit: bool | None = Field(default=None, description="Served from the local cache; finish only")

    @model_validator(mode="after")
    def _finish_fields(self) -> XumiLoadEvent:
        finish = self.event_name.endswith(".finish")
        require_iff(self.duration_ms is not None, finish, "duration_ms", "event_name is *.load.finish")
        require_iff(self.cache_hit is not None, finish, "cache_hit", "event_name is *.load.finish")
        return self


class XumiTaskEvent(Envelope):
    """One step of a XUMI task's lifecycle; one task may run several attempts.

    Rules: error_type and error_message present iff failed; output_bytes present on finished only;
    checkpoint_id and checkpoint_version together or not at all (a base-model-only run has neither).
    """

    FAMILY: ClassVar[str] = "xumi_task"
    SYSTEM: ClassVar[str] = "xumi"

    event_name: XumiTaskName = Field(description="xumi.task.{queued|started|initialized|finished|failed}")
    task_id: Id = Field(description="Task id; the lifecycle join key")
    attempt: int = Field(ge=MIN_ATTEMPT, le=MAX_ATTEMPT, description="Attempt number, 1 for the first try")
    model: Name = Field(description="Base model")
    model_version: Name = Field(description="Base model version")
    checkpoint_id: Name | None = Field(default=None, description="Applied checkpoint, if any")
    checkpoint_version: Name | None = Field(default=None, description="Applied checkpoint's version")
    input_bytes: ByteCount = Field(description="Request input size")
    output_bytes: ByteCount | None = Field(default=None, description="Result size; finished only")
    error_type: Label | None = Field(default=None, description="Error class; failed only")
    error_message: Text | None = Field(default=None, description="Error text; failed only")

    @model_validator(mode="after")
    def _state_fields(self) -> XumiTaskEvent:
        if (self.checkpoint_id is None) != (self.checkpoint_version is None):
            raise inconsistent("checkpoint_version", "checkpoint_id and checkpoint_version go together")
        failed = self.event_name == "xumi.task.failed"
        require_iff(self.error_type is not None, failed, "error_type", "event_name is xumi.task.failed")
        require_iff(self.error_message is not None, failed, "error_message", "event_name is xumi.task.failed")
        finished = self.event_name == "xumi.task.finished"
        require_iff(self.output_bytes is not None, finished, "output_bytes", "event_name is xumi.task.finished")
        return self
