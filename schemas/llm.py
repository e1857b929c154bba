"""LLM request events on telemetry.events.v1 (seed 002's schema, on our common envelope).

Data-quality rules from seed 002: latency_ms in [0, 120000], tokens in [0, 200000], error_type null iff ok.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field, model_validator

from schemas.envelope import MODEL_CONFIG, Envelope
from schemas.rules import inconsistent
from schemas.types import Id, Label, Name

MAX_LATENCY_MS = 120_000
MAX_TOKENS = 200_000

LlmRequestName = Literal["llm.request.completed"]
# ok plus the failure kinds seed 002 lists (timeouts, rate limits, 5xx / model errors, cancellations).
LlmStatus = Literal["ok", "error", "timeout", "rate_limited", "cancelled"]


class Experiment(BaseModel):
    """A/B or canary assignment."""

    model_config = MODEL_CONFIG

    name: Label = Field(description="Experiment name")
    variant: Label = Field(description="Variant, e.g. A, B, canary")


class Client(BaseModel):
    """The calling client."""

    model_config = MODEL_CONFIG

    app: Label = Field(description="Client application, e.g. web, cli")
    os: Label = Field(description="Client OS, e.g. macos")


class LlmRequestEvent(Envelope):
    """One LLM request as seed 002 describes it.

    Rule: error_type is null when status is ok and set otherwise (inconsistent).
    """

    FAMILY: ClassVar[str] = "llm_request"
    SYSTEM: ClassVar[str] = "llm"

    event_name: LlmRequestName = Field(description="llm.request.completed")
    session_id: Id = Field(description="Session id")
    request_id: Id = Field(description="Request id")
    model_id: Name = Field(description="Model id, e.g. gpt-oss-1")
    model_version: Name = Field(description="Model version")
    prompt_version: Name = Field(description="Prompt template version")
    experiment: Experiment | None = Field(default=None, description="Experiment assignment, if any")
    latency_ms: int = Field(ge=0, le=MAX_LATENCY_MS, description="End-to-end latency")
    tokens_in: int = Field(ge=0, le=MAX_TOKENS, description="Input tokens")
    tokens_out: int = Field(ge=0, le=MAX_TOKENS, description="Output tokens")
    status: LlmStatus = Field(description="ok, error, timeout, rate_limited or cancelled")
    error_type: Label | None = Field(default=None, description="Error class; null iff status is ok")
    region: Label = Field(description="Serving region, e.g. eu-central")
    client: Client = Field(description="Calling client")
    checkpoint_id: Name | None = Field(default=None, description="Fine-tuned checkpoint served, if any")

    @model_validator(mode="after")
    def _error_iff_not_ok(self) -> LlmRequestEvent:
        if self.status == "ok" and self.error_type is not None:
            raise inconsistent("error_type", "must be null when status is ok")
        if self.status != "ok" and self.error_type is None:
            raise inconsistent("error_type", f"required when status is {self.status}")
        return self
