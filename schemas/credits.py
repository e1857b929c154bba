"""Credit families (seed 001): CPU and GPU usage billed by the Workflow service and by Kubernetes.

Topics wkf_cpu, wkf_gpu, kuber_cpu, kuber_gpu, one family each; node and VM type come from the envelope.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from schemas.envelope import Envelope
from schemas.rules import inconsistent
from schemas.types import Id, Label

MAX_UNITS = 1024.0  # cores or GPUs in one record; more is a unit bug (millicores sent as cores)
MAX_SECONDS = 31 * 24 * 3600.0  # one record covers at most a month of usage


class CreditEvent(Envelope):
    """Shared fields of the four credit families (not a family itself).

    Rule: `resource` must be the family's resource (cpu on *_cpu topics, gpu on *_gpu), else inconsistent.
    """

    RESOURCE: ClassVar[str] = ""

    resource: Literal["cpu", "gpu"] = Field(description="cpu or gpu; must match the topic")
    units: float = Field(gt=0, le=MAX_UNITS, description="Cores (cpu) or GPUs (gpu) used")
    seconds: float = Field(gt=0, le=MAX_SECONDS, description="How long they were used")
    # Exact: the job reads the number's decimal text, never the double (pipeline/money.py), and refuses a value
    # finer than a micro-credit; the validator checks the bounds.
    credits: float = Field(ge=0, le=1e12, description="Credits charged for this usage: an exact decimal with at most "
                           "6 decimals (the job reads the JSON number's text, not a double, and refuses finer values)")
    task_id: Id | None = Field(default=None, description="Task the usage belongs to, if any")

    @model_validator(mode="after")
    def _resource_matches(self) -> CreditEvent:
        if self.resource != self.RESOURCE:
            raise inconsistent("resource", f"{self.resource} on a {self.RESOURCE} family ({self.FAMILY})")
        return self


class WkfCpuCreditEvent(CreditEvent):
    """Workflow CPU credits (topic wkf_cpu)."""

    FAMILY: ClassVar[str] = "wkf_cpu"
    SYSTEM: ClassVar[str] = "wkf"
    RESOURCE: ClassVar[str] = "cpu"

    event_name: Literal["wkf.cpu.charged"] = Field(description="wkf.cpu.charged")


class WkfGpuCreditEvent(CreditEvent):
    """Workflow GPU credits (topic wkf_gpu)."""

    FAMILY: ClassVar[str] = "wkf_gpu"
    SYSTEM: ClassVar[str] = "wkf"
    RESOURCE: ClassVar[str] = "gpu"

    event_name: Literal["wkf.gpu.charged"] = Field(description="wkf.gpu.charged")
    gpu_type: Label = Field(description="GPU model, e.g. a100_80gb")


class KuberCpuCreditEvent(CreditEvent):
    """Kubernetes CPU credits (topic kuber_cpu)."""

    FAMILY: ClassVar[str] = "kuber_cpu"
    SYSTEM: ClassVar[str] = "kuber"
    RESOURCE: ClassVar[str] = "cpu"

    event_name: Literal["kuber.cpu.charged"] = Field(description="kuber.cpu.charged")


class KuberGpuCreditEvent(CreditEvent):
    """Kubernetes GPU credits (topic kuber_gpu)."""

    FAMILY: ClassVar[str] = "kuber_gpu"
    SYSTEM: ClassVar[str] = "kuber"
    RESOURCE: ClassVar[str] = "gpu"

    event_name: Literal["kuber.gpu.charged"] = Field(description="kuber.gpu.charged")
    gpu_type: Label = Field(description="GPU model, e.g. a100_80gb")
