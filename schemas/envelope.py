"""The envelope every event family shares: identity, name, time and the tenant/user/project context.

Family models subclass `Envelope`, narrow `event_name` to their own names, and add their fields after these.
"""

from __future__ import annotations

import typing
from datetime import datetime, timezone
from typing import Any, ClassVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field

from schemas.naming import EVENT_NAME_RE, SYSTEMS, system_of
from schemas.types import HostName, Id, Labels, OptionalLabel, UtcMillis

# Why extra="forbid": the seeds do not say, and an unknown field is far more often a producer bug (a typo,
# a renamed field, a prompt pasted into the wrong place) than a deliberate extension. Adding a field is a
# schema change: add it here, regenerate the JSON Schema, and consumers see it in review.
# Why frozen: an event is a fact; nobody downstream may edit it in place (use model_copy for variants).
# Dedup by event_id, not by hashing instances (labels is a dict, so instances are not hashable).
# Construction from Python is pydantic's lax mode (ergonomic: "uuid strings", dict sub-objects); parsing
# from the wire (`schemas.validate`) is strict JSON, so "5" is never an integer there.
MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Envelope(BaseModel):
    """Fields common to every event. Subclasses set FAMILY and SYSTEM and narrow `event_name`."""

    model_config = MODEL_CONFIG

    FAMILY: ClassVar[str] = ""
    SYSTEM: ClassVar[str] = ""
    EVENT_NAMES: ClassVar[frozenset[str]] = frozenset()  # derived from the event_name Literal
    # An open family (the SDK's sdk_metric) takes any well-formed name its producers choose; its event_name
    # validator applies the naming rules itself, and EVENT_NAMES stays empty.
    OPEN_NAMES: ClassVar[bool] = False

    event_id: UUID = Field(description="Unique id of this event (UUID); the dedup key downstream")
    event_name: str = Field(description="system.component.action[.note], lowercase (seed 001)")
    ts: UtcMillis = Field(description="When the event happened (UTC, millisecond precision)")
    tenant_id: Id = Field(description="Tenant (TENANT_ID)")
    node_id: Id = Field(description="Node the producer runs on (NODE_ID)")
    vm_type: OptionalLabel = Field(description="VM instance type (VM_TYPE), e.g. NV6; empty if unknown")
    host_name: HostName = Field(description="Host name (HOST_NAME); empty if unknown")
    user_id: Id = Field(description="User the event is attributed to")
    project_id: Id = Field(description="Project the event is attributed to")
    department_id: Id = Field(description="Department the event is attributed to")
    labels: Labels = Field(
        default_factory=dict,
        description="Optional low-cardinality tags (at most 16; keys up to 64, values up to 128 characters); "
        "null reads as {}",
        json_schema_extra={"type": ["object", "null"]},  # the schema states what the validator accepts
    )

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if not cls.FAMILY or cls.OPEN_NAMES:
            return
        # One source of truth: the family's names are the Literal on event_name. Checked at import so a
        # misspelt name fails every test run rather than rejecting live traffic.
        names = frozenset(typing.get_args(cls.model_fields["event_name"].annotation))
        if not names:
            raise TypeError(f"{cls.__name__}: event_name must be a Literal of the family's names")
        if cls.SYSTEM not in SYSTEMS:
            raise TypeError(f"{cls.__name__}: unknown system {cls.SYSTEM!r}")
        for name in names:
            if EVENT_NAME_RE.fullmatch(name) is None or system_of(name) != cls.SYSTEM:
                raise TypeError(f"{cls.__name__}: event name {name!r} breaks the naming rules")
        cls.EVENT_NAMES = names

    @classmethod
    def build(cls, **fields: Any) -> typing.Self:
        """Construct with a fresh random event_id and ts=now unless given (for SDKs and ad-hoc producers).

        Deterministic producers (the simulator) pass both explicitly.
        """
        fields.setdefault("event_id", uuid4())
        fields.setdefault("ts", datetime.now(timezone.utc))
        return cls(**fields)
