"""The validator: raw Kafka bytes -> Valid(event) or Invalid(reason, field, message), never raising on bad input.

Runs once per record in the job's single Python hop, so the happy path is one dict lookup plus pydantic-core's
Rust JSON parse; the Python-level work is in the few cross-field rules and on the error path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Union

import pydantic_core
from pydantic import ValidationError

from schemas.envelope import Envelope
from schemas.naming import classify_name
from schemas.reasons import Reason, field_path, reason_for
from schemas.registry import _MODEL_BY_TOPIC

# Seed 002 asks for size guards; 64 KiB is far above any real event (the biggest, with a 2 KiB error
# message, is ~3 KiB) and well under Kafka's 1 MiB default message size.
MAX_RECORD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Valid:
    """A record that passed: its topic and the parsed event (a family model instance)."""

    topic: str
    event: Envelope
    ok: ClassVar[bool] = True

    @property
    def family(self) -> str:
        return self.event.FAMILY


@dataclass(frozen=True, slots=True)
class Invalid:
    """A rejected record: one machine-readable reason, the dotted field path if any, and a message for humans."""

    topic: str
    reason: Reason
    field: str | None
    message: str
    ok: ClassVar[bool] = False


Result = Union[Valid, Invalid]


class InvalidEventError(ValueError):
    """Raised by `parse` (the raising variant of `validate`); carries the Invalid."""

    def __init__(self, invalid: Invalid) -> None:
        super().__init__(f"{invalid.reason.value}: {invalid.message}")
        self.invalid = invalid


def classify_error(exc: ValidationError, model: type[Envelope] | None = None) -> tuple[Reason, str | None, str]:
    """(reason, field path, message) for a pydantic ValidationError: the first error wins.

    pydantic reports field errors in the model's declaration order (envelope first, then the family's
    fields), then unknown fields, then - only if all fields passed - the cross-field rules. So the winner
    does not depend on the JSON key order. `model` sharpens event_name errors into bad/unknown names.
    """
    first = exc.errors(include_url=False)[0]
    reason = reason_for(first)
    loc = first.get("loc", ())
    field = field_path(loc)
    message = first.get("msg", "")
    if loc == ("event_name",) and reason is Reason.BAD_ENUM and model is not None:
        # event_name is a Literal of the family's names; tell malformed names from other families' names.
        named = classify_name(first.get("input"), model.SYSTEM, model.EVENT_NAMES)
        if named is not None:
            reason, message = named
            return reason, field, message
    # Cross-field rules name their field in the error context; a sub-model's rule (loc = its path) names
    # the field inside it, so the path is joined: context.ram_used_bytes.
    ctx = first.get("ctx") or {}
    rule_field = ctx.get("field") if isinstance(ctx.get("field"), str) else None
    if field is None:
        return reason, rule_field, message
    if rule_field is not None and reason is Reason.INCONSISTENT:
        return reason, f"{field}.{rule_field}", f"{field}.{message}"
    return reason, field, f"{field}: {message}"


def validate(topic: str, raw: bytes | bytearray | memoryview | str | None) -> Result:
    """Validate one record from `topic`. Never raises on bad input.

    Check order (the first failing check decides the reason): null_value (a Kafka tombstone), unknown_topic,
    oversize, JSON (not_json / not_object), fields in declaration order, unknown fields, then cross-field rules.
    """
    if raw is None:
        return Invalid(topic, Reason.NULL_VALUE, None, "the Kafka record has no value (a tombstone); events are never null")
    model = _MODEL_BY_TOPIC.get(topic)
    if model is None:
        return Invalid(topic, Reason.UNKNOWN_TOPIC, None, f"topic {topic!r} carries no known event family")
    if isinstance(raw, str):
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: cannot be UTF-8 on the wire
            return Invalid(topic, Reason.NOT_JSON, None, "text is not encodable as UTF-8")
    elif isinstance(raw, memoryview):  # pydantic-core takes str / bytes / bytearray only
        raw = raw.tobytes()
    if len(raw) > MAX_RECORD_BYTES:
        return Invalid(topic, Reason.OVERSIZE, None, f"record is {len(raw)} bytes, max {MAX_RECORD_BYTES}")
    try:
        # strict: JSON types must match the schema exactly ("5" is not an int, 5.0 is not an int).
        return Valid(topic, model.model_validate_json(raw, strict=True))
    except ValidationError as exc:
        reason, field, message = classify_error(exc, model)
        return Invalid(topic, reason, field, message)


def validate_obj(topic: str, obj: Any) -> Result:
    """Validate a decoded JSON value (dict) exactly as `validate` would validate its JSON encoding."""
    try:
        raw = pydantic_core.to_json(obj)
    except pydantic_core.PydanticSerializationError as exc:
        return Invalid(topic, Reason.NOT_JSON, None, f"not JSON-serialisable: {exc}")
    return validate(topic, raw)


def parse(topic: str, raw: bytes | bytearray | memoryview | str) -> Envelope:
    """Like `validate`, but return the event or raise InvalidEventError (for tests and tools, not the job)."""
    result = validate(topic, raw)
    if isinstance(result, Invalid):
        raise InvalidEventError(result)
    return result.event


def to_json(event: Envelope) -> bytes:
    """Canonical JSON of an event: every field (nulls included), ts as ISO-8601 UTC milliseconds with Z."""
    return event.model_dump_json().encode()


def to_dict(event: Envelope, *, json_compatible: bool = True) -> dict[str, Any]:
    """Event as a dict. json_compatible: strings for event_id and ts (as in to_json); otherwise UUID and
    aware UTC datetime objects (for Parquet / ClickHouse writers that want native types)."""
    return event.model_dump(mode="json" if json_compatible else "python")

