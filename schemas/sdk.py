"""The producer SDK's generic family sdk_metric (seed 004) on topic telemetry.metrics.v1: metric values,
milestones and status from any service, with the CPU / RAM / GPU context the SDK captures automatically.

Names are open: `<system>.<component>.<event or 'metric'>`, checked by seed 001's rules instead of a fixed list.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

from schemas.envelope import MODEL_CONFIG, Envelope
from schemas.naming import EVENT_NAME_RE, MAX_EVENT_NAME_LENGTH, classify_open_name
from schemas.rules import inconsistent
from schemas.types import ByteCount, Label

# The action the SDK uses when only metrics are emitted (no event given): `<system>.<component>.metric`.
METRIC_ACTION = "metric"
# A measurement beyond 2**60 (one exbi-unit) is a unit bug, e.g. an epoch in nanoseconds (about 1.7e18);
# NaN and infinities are refused by the model config.
MAX_METRIC_VALUE = float(2**60)
# One record carries a handful of metrics; each name becomes a map key in ClickHouse, so keep it bounded.
MAX_METRICS = 32
MAX_GPUS = 64  # larger than any single host (8-16 GPUs today)

MetricValue = Annotated[float, Field(ge=-MAX_METRIC_VALUE, le=MAX_METRIC_VALUE)]
# Seed 004's lifecycle words plus the ends a milestone can have; a closed set because dashboards group by it.
SdkStatus = Literal["started", "running", "completed", "failed", "cancelled"]
Percent = Annotated[float, Field(ge=0, le=100)]


@cache
def _reserved_names() -> dict[str, str]:
    # Imported late: the registry imports this module to list the families.
    from schemas.registry import EVENT_NAME_FAMILY

    return EVENT_NAME_FAMILY


def _check_open_name(value: str) -> str:
    problem = classify_open_name(value, _reserved_names())
    if problem is not None:
        reason, message = problem
        raise PydanticCustomError(reason.value, message)
    return value


def _name_schema(schema: dict[str, Any]) -> None:
    # What the validator checks, stated for JSON Schema users (patterns there are unanchored, hence ^...$).
    schema["maxLength"] = MAX_EVENT_NAME_LENGTH
    schema["pattern"] = f"^{EVENT_NAME_RE.pattern}$"
    schema["not"] = {"enum": sorted(_reserved_names())}


OpenEventName = Annotated[str, AfterValidator(_check_open_name)]


class GpuInfo(BaseModel):
    """One GPU as `nvidia-smi --query-gpu` reports it. Rule: memory used <= total (inconsistent)."""

    model_config = MODEL_CONFIG

    index: int = Field(ge=0, lt=1024, description="GPU index on the host")
    name: Label = Field(description="GPU model, e.g. NVIDIA A100-SXM4-80GB")
    utilization_percent: Percent | None = Field(default=None, description="GPU utilisation; null if not reported")
    memory_used_bytes: ByteCount | None = Field(default=None, description="GPU memory in use")
    memory_total_bytes: ByteCount | None = Field(default=None, description="GPU memory installed")

    @model_validator(mode="after")
    def _used_within_total(self) -> GpuInfo:
        used, total = self.memory_used_bytes, self.memory_total_bytes
        if used is not None and total is not None and used > total:
            raise inconsistent("memory_used_bytes", "exceeds memory_total_bytes")
        return self


class SystemContext(BaseModel):
    """Host state when the event was emitted. CPU and RAM are null where /proc is not available.

    Rule: ram_used_bytes <= ram_total_bytes (inconsistent).
    """

    model_config = MODEL_CONFIG

    cpu_percent: Percent | None = Field(default=None, description="Whole-host CPU busy share since the last sample")
    cpu_count: int | None = Field(default=None, ge=1, le=65536, description="Logical CPUs of the host")
    ram_used_bytes: ByteCount | None = Field(default=None, description="RAM in use (total - available)")
    ram_total_bytes: ByteCount | None = Field(default=None, description="RAM installed")
    gpus: list[GpuInfo] = Field(default_factory=list, max_length=MAX_GPUS, description="GPUs, when present")

    @model_validator(mode="after")
    def _used_within_total(self) -> SystemContext:
        used, total = self.ram_used_bytes, self.ram_total_bytes
        if used is not None and total is not None and used > total:
            raise inconsistent("ram_used_bytes", "exceeds ram_total_bytes")
        return self


class SdkMetricEvent(Envelope):
    """A metric, a set of metrics, or a milestone from the producer SDK (`Telemetry().emit(...)`).

    Rules (inconsistent): metric and value go together; an event named `*.metric` (metrics only, no
    milestone) carries a metric or metrics. Names of the closed families are reserved (unknown_event_name).
    """

    FAMILY: ClassVar[str] = "sdk_metric"
    SYSTEM: ClassVar[str] = ""  # any system: SDK users name their own service (seed 001 rule 2)
    OPEN_NAMES: ClassVar[bool] = True

    event_name: OpenEventName = Field(
        description="<system>.<component>.<event or 'metric'>[.note], lowercase (seed 001); not a name of "
        "another family",
        json_schema_extra=_name_schema,
    )
    metric: Label | None = Field(default=None, description="Name of a single metric, e.g. inference_latency")
    value: MetricValue | None = Field(default=None, description="Value of `metric`")
    metrics: dict[Label, MetricValue] = Field(
        default_factory=dict, max_length=MAX_METRICS, description="Several metrics at once: name -> value"
    )
    status: SdkStatus | None = Field(default=None, description="started, running, completed, failed or cancelled")
    context: SystemContext | None = Field(default=None, description="CPU / RAM / GPU state of the producing host")

    @model_validator(mode="after")
    def _carries_something(self) -> SdkMetricEvent:
        if self.metric is not None and self.value is None:
            raise inconsistent("value", "required when metric is set")
        if self.value is not None and self.metric is None:
            raise inconsistent("metric", "required when value is set")
        if self.event_name.split(".")[2] == METRIC_ACTION and self.metric is None and not self.metrics:
            raise inconsistent("metric", f"an event named *.{METRIC_ACTION} carries a metric or metrics")
        return self
