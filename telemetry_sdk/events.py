"""Turns an `emit(...)` call into a validated record: which family, which topic, which key, the canonical bytes.

A full event name of a closed family (xumi.task.started) builds that family; a short name (model_load_start)
or metrics alone become the open family sdk_metric, named `<system>.<component>.<event or 'metric'>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from pydantic import ValidationError

import schemas
from schemas import EVENT_NAME_FAMILY, FAMILIES, Envelope, Invalid, Reason, SdkMetricEvent
from schemas.naming import SEGMENT
from schemas.sdk import METRIC_ACTION
from telemetry_sdk.context import ENV_OF_FIELD, SystemSampler
from telemetry_sdk.errors import EventRefused

SDK_FAMILY = SdkMetricEvent.FAMILY
TOPIC_OF_FAMILY: dict[str, str] = {family: schemas.topics_for_family(family)[0] for family in FAMILIES}
_SEGMENT_RE = re.compile(SEGMENT)
# Context fields a caller may set per Telemetry and override per emit.
CALLER_FIELDS = ("user_id", "project_id", "department_id")


@dataclass(frozen=True, slots=True)
class Record:
    """One event ready for a backend: its topic, Kafka key, timestamp (epoch ms), canonical JSON and model."""

    topic: str
    key: str
    ts_ms: int
    value: bytes
    event: Envelope

    @property
    def event_id(self) -> str:
        return str(self.event.event_id)

    @property
    def event_name(self) -> str:
        return self.event.event_name


def check_segment(what: str, value: str) -> str:
    """system and component become event name segments, so they follow seed 001's rules."""
    if not isinstance(value, str) or _SEGMENT_RE.fullmatch(value) is None:
        raise ValueError(f"{what}={value!r} must be lowercase [a-z][a-z0-9_]* (it becomes part of event names, "
                         "seed 001's naming rules)")
    return value


def key_of(event: Envelope) -> str:
    """Kafka key: the task id where the event has one (a task's lifecycle stays ordered in one partition for
    the lifecycle join), else the user id (a user's events stay ordered, as the simulator keys them)."""
    task_id = getattr(event, "task_id", None)
    return task_id if isinstance(task_id, str) and task_id else event.user_id


def _hint(field: str | None) -> str:
    if field in ENV_OF_FIELD:
        return f"; set {ENV_OF_FIELD[field]} in the environment or pass {field}= to Telemetry(...)"
    if field in CALLER_FIELDS:
        return f"; pass {field}= to Telemetry(...) or to emit(...)"
    return ""


class EventBuilder:
    """Builds records for one producer (system, component) with its context; stateless apart from the
    sampler's cache, so one builder serves any number of threads or tasks."""

    def __init__(
        self,
        system: str,
        component: str,
        context: Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
        sampler: SystemSampler | None = None,
    ) -> None:
        self.system = check_segment("system", system)
        self.component = check_segment("component", component)
        self.context = dict(context)
        self.labels = dict(labels or {})
        self.sampler = sampler

    def resolve(self, event: str | None) -> tuple[str, str]:
        """(event_name, family) for emit's `event` argument; raises EventRefused for an unknown full name."""
        if event is None:
            name = f"{self.system}.{self.component}.{METRIC_ACTION}"
        elif not isinstance(event, str):
            raise self._refused(Reason.WRONG_TYPE, "event_name", f"event must be a string, got {type(event).__name__}",
                                SDK_FAMILY, None)
        elif event.count(".") >= 2 and not event.startswith(f"{self.system}.{self.component}."):
            # A full name must be a closed family's: a near miss (xumi.task.start) is a typo, not a new event.
            if event in EVENT_NAME_FAMILY:
                return event, EVENT_NAME_FAMILY[event]
            raise self._refused(
                Reason.UNKNOWN_EVENT_NAME if schemas.is_well_formed(event) else Reason.BAD_EVENT_NAME,
                "event_name",
                f"event {event!r} is not an event of any family; pass a short name (e.g. model_load_start), which "
                f"becomes {self.system}.{self.component}.<event>",
                SDK_FAMILY, event,
            )
        else:
            name = event if event.count(".") >= 2 else f"{self.system}.{self.component}.{event}"
        # A short name can land on a family's name (system xumi, component task, event started).
        return name, EVENT_NAME_FAMILY.get(name, SDK_FAMILY)

    def build(
        self,
        event: str | None = None,
        metric: str | None = None,
        value: float | None = None,
        metrics: Mapping[str, float] | None = None,
        status: str | None = None,
        **fields: Any,
    ) -> Record:
        """A validated record, or EventRefused with the reason the pipeline would give (nothing is sent)."""
        name, family = self.resolve(event)
        model = FAMILIES[family]
        topic = TOPIC_OF_FAMILY[family]
        data: dict[str, Any] = {**self.context, **fields, "event_name": name}
        if self.labels:
            data["labels"] = {**self.labels, **(fields.get("labels") or {})}
        # Only what was given: a closed family has no metric fields (passing one is unknown_field), and
        # llm_request has a status of its own.
        given = {"metric": metric, "value": value, "metrics": metrics, "status": status}
        data.update({k: v for k, v in given.items() if v is not None})
        if family == SDK_FAMILY and self.sampler is not None and "context" not in fields:
            data["context"] = self.sampler.sample()
        data = {k: v for k, v in data.items() if v is not None or k in fields}
        try:
            built = model.build(**data)
        except ValidationError as exc:
            reason, field, message = schemas.classify_error(exc, model)
            raise self._refused(reason, field, message, family, name) from None
        except TypeError as exc:  # e.g. a non-string key in metrics
            raise self._refused(Reason.WRONG_TYPE, None, str(exc), family, name) from None
        raw = schemas.to_json(built)
        # The wire check the job will run (size guard, strict JSON types): what passes here passes there.
        result = schemas.validate(topic, raw)
        if isinstance(result, Invalid):
            raise EventRefused(result, name, _hint(result.field))
        return Record(topic, key_of(built), schemas.ts_to_millis(built.ts), raw, built)

    def _refused(self, reason: Reason, field: str | None, message: str, family: str, name: str | None) -> EventRefused:
        return EventRefused(Invalid(TOPIC_OF_FAMILY[family], reason, field, message), name, _hint(field))
