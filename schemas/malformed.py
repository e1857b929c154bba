"""Canonical malformed records: for a family and a reason, one record that `validate` rejects with that reason.

Shared by the tests and the simulator, so every malformed kind the simulator makes is known to map to its code.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from schemas.examples import EXAMPLES, example
from schemas.reasons import Reason
from schemas.registry import FAMILIES, topics_for_family
from schemas.types import MAX_LABELS
from schemas.validate import MAX_RECORD_BYTES

UNKNOWN_TOPIC = "no_such_topic"


def _dump(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


# Family-specific defects: family -> field overrides (applied to the family's first example).
_OUT_OF_RANGE: dict[str, dict[str, Any]] = {
    "xumi_load": {"bytes": -1},
    "xumi_task": {"attempt": 0},
    "pbac_politics": {"policy_version": 0},
    "asset_transfer": {"duration_ms": -5},
    "wkf_cpu": {"units": 0},
    "wkf_gpu": {"seconds": -1.5},
    "kuber_cpu": {"credits": -0.01},
    "kuber_gpu": {"units": 4096},
    "llm_request": {"latency_ms": 120_001},
    "sdk_metric": {"value": 2.0**61},
}
_BAD_ENUM: dict[str, dict[str, Any]] = {
    "wkf_task": {"event_type": "TaskPaused"},
    "pbac_access": {"decision": "maybe"},
    "pbac_service": {"status": "fine"},
    "asset_access": {"action": "rename"},
    "asset_transfer": {"direction": "sideways"},
    "wkf_cpu": {"resource": "tpu"},
    "wkf_gpu": {"resource": "tpu"},
    "kuber_cpu": {"resource": "tpu"},
    "kuber_gpu": {"resource": "tpu"},
    "llm_request": {"status": "maybe"},
    "sdk_metric": {"status": "done"},
}
_INCONSISTENT: dict[str, dict[str, Any]] = {
    "xumi_load": {"duration_ms": 5},  # example 0 is a *.start
    "xumi_task": {"error_type": "cuda_oom"},  # example 0 is queued
    "wkf_task": {"event_type": "TaskFailed"},  # example 0 is wkf.task.started
    "pbac_service": {"action": "update"},  # example 0 is pbac.service.loaded
    "asset_transfer": {"error_type": "timeout"},  # example 0 is completed
    "wkf_cpu": {"resource": "gpu"},
    "wkf_gpu": {"resource": "cpu"},
    "kuber_cpu": {"resource": "gpu"},
    "kuber_gpu": {"resource": "cpu"},
    "llm_request": {"error_type": "boom"},  # example 0 is ok
    "sdk_metric": {"value": None},  # example 0 names a metric
}
# Open families take any well-formed name, so theirs is another family's (reserved) name.
_UNKNOWN_EVENT_NAME: dict[str, dict[str, Any]] = {
    "sdk_metric": {"event_name": "xumi.task.started"},
}
_PER_FAMILY: dict[Reason, dict[str, dict[str, Any]]] = {
    Reason.OUT_OF_RANGE: _OUT_OF_RANGE,
    Reason.BAD_ENUM: _BAD_ENUM,
    Reason.INCONSISTENT: _INCONSISTENT,
    Reason.UNKNOWN_EVENT_NAME: _UNKNOWN_EVENT_NAME,  # overrides the generic kind for these families
}


def _valid(family: str) -> dict[str, Any]:
    return example(family)


# Reasons every family can produce, built from the envelope alone.
_GENERIC: dict[Reason, Callable[[str], bytes | None]] = {
    Reason.NULL_VALUE: lambda f: None,  # a tombstone: a Kafka record without a value
    # the record itself is fine; the topic is not
    Reason.UNKNOWN_TOPIC: lambda f: _dump(_valid(f)),
    # a producer dumping a whole document into one field: caught by size before any field check
    Reason.OVERSIZE: lambda f: _dump({**_valid(f), "host_name": "h" * (MAX_RECORD_BYTES + 1)}),
    Reason.NOT_JSON: lambda f: _dump(_valid(f))[:40],  # truncated mid-record
    Reason.NOT_OBJECT: lambda f: _dump([_valid(f)]),  # a batch sent where one event belongs
    Reason.MISSING_FIELD: lambda f: _dump(example(f, tenant_id=...)),
    Reason.UNKNOWN_FIELD: lambda f: _dump(example(f, prompt="tell me a story")),
    Reason.WRONG_TYPE: lambda f: _dump(example(f, tenant_id=42)),
    Reason.BAD_EVENT_NAME: lambda f: _dump(example(f, event_name=EXAMPLES[f][0]["event_name"].upper())),
    Reason.UNKNOWN_EVENT_NAME: lambda f: _dump(
        example(f, event_name=f"{FAMILIES[f].SYSTEM}.unknown_component.happened")
    ),
    Reason.BAD_UUID: lambda f: _dump(example(f, event_id="not-a-uuid")),
    Reason.BAD_TIMESTAMP: lambda f: _dump(example(f, ts="2026-02-21T12:00:00")),  # no offset
    Reason.FIELD_TOO_LONG: lambda f: _dump(example(f, vm_type="x" * 65)),
    Reason.CARDINALITY: lambda f: _dump(example(f, labels={f"k{i}": "v" for i in range(MAX_LABELS + 1)})),
}


def kinds(family: str) -> tuple[Reason, ...]:
    """The reasons `malformed` can produce for a family (all generic ones plus the family's own rules)."""
    return tuple(r for r in Reason if r in _GENERIC or family in _PER_FAMILY.get(r, {}))


def malformed(reason: Reason, family: str) -> tuple[str, bytes | None]:
    """(topic, raw record) that `validate(topic, raw)` rejects with `reason`; KeyError if the family
    has no such defect (e.g. out_of_range on a family without numbers: see `kinds`)."""
    topic = topics_for_family(family)[0]
    overrides = _PER_FAMILY.get(reason, {}).get(family)
    if overrides is None and reason in _GENERIC:
        raw = _GENERIC[reason](family)
        return (UNKNOWN_TOPIC if reason is Reason.UNKNOWN_TOPIC else topic), raw
    if overrides is None:
        raise KeyError(f"family {family!r} has no {reason.value} defect; it has {[k.value for k in kinds(family)]}")
    return topic, _dump(example(family, **overrides))
