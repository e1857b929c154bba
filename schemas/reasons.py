"""Machine-readable reason codes for rejected records, and the deterministic mapping from pydantic errors.

The DLQ stores `Reason.value`; dashboards and the simulator's ground truth count by it, so values never change.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Mapping


class Reason(str, Enum):
    """Why a record was rejected. One code per record: the first error in validation order wins."""

    # Whole-record reasons, decided before or instead of field validation.
    NULL_VALUE = "null_value"  # a Kafka record without a value (a tombstone): no event at all
    UNKNOWN_TOPIC = "unknown_topic"  # topic has no event family (not a source topic of the catalogue)
    OVERSIZE = "oversize"  # raw record larger than MAX_RECORD_BYTES
    NOT_JSON = "not_json"  # not UTF-8 JSON (syntax error, empty, truncated, trailing garbage)
    NOT_OBJECT = "not_object"  # valid JSON, but the top level is not an object
    # Field reasons.
    MISSING_FIELD = "missing_field"  # a required field is absent, null, or an empty id
    UNKNOWN_FIELD = "unknown_field"  # a field the family does not define (models forbid extras)
    WRONG_TYPE = "wrong_type"  # JSON type differs from the schema's (e.g. "5" for an integer)
    BAD_EVENT_NAME = "bad_event_name"  # event_name breaks seed 001's naming rules
    UNKNOWN_EVENT_NAME = "unknown_event_name"  # well-formed name, but not one of the family's names
    BAD_UUID = "bad_uuid"  # a string that is not a UUID
    BAD_TIMESTAMP = "bad_timestamp"  # unparseable, no UTC offset, or outside [2000, 2100)
    OUT_OF_RANGE = "out_of_range"  # number outside its bounds, or not finite
    BAD_ENUM = "bad_enum"  # value not in a field's closed set (status, decision, direction, ...)
    FIELD_TOO_LONG = "field_too_long"  # string over its maximum length (cardinality guard on labels too)
    CARDINALITY = "cardinality"  # a map with too many entries (labels)
    INCONSISTENT = "inconsistent"  # fields disagree (error_type on an ok request, event_type vs event_name)


class JobReason(str, Enum):
    """Why the pipeline refused a record the schema accepts: decided by the job or the loader, not by `validate`,
    as they depend on the clock or on the pipeline's own code. Stored in the DLQ beside the Reason values."""

    FUTURE_TIMESTAMP = "future_timestamp"  # ts or Kafka timestamp further ahead of the job's clock than allowed
    INTERNAL_ERROR = "internal_error"  # handling the record raised (a bug to fix); the message names the exception
    CLICKHOUSE_REJECTED = "clickhouse_rejected"  # the loader's insert: ClickHouse refused the row


# pydantic-core error type -> reason. Custom errors raised by our own validators use the reason's value as
# their error type, so they map through Reason(value) and need no entry here.
_BY_PYDANTIC_TYPE: Mapping[str, Reason] = {
    "json_invalid": Reason.NOT_JSON,
    "json_type": Reason.NOT_JSON,
    "missing": Reason.MISSING_FIELD,
    "string_too_short": Reason.MISSING_FIELD,  # every min_length here is 1: an empty id or name means absent
    "extra_forbidden": Reason.UNKNOWN_FIELD,
    "uuid_parsing": Reason.BAD_UUID,
    "uuid_version": Reason.BAD_UUID,
    "greater_than": Reason.OUT_OF_RANGE,
    "greater_than_equal": Reason.OUT_OF_RANGE,
    "less_than": Reason.OUT_OF_RANGE,
    "less_than_equal": Reason.OUT_OF_RANGE,
    "finite_number": Reason.OUT_OF_RANGE,
    "int_parsing_size": Reason.OUT_OF_RANGE,
    "literal_error": Reason.BAD_ENUM,
    "enum": Reason.BAD_ENUM,
    "string_too_long": Reason.FIELD_TOO_LONG,
    "too_long": Reason.CARDINALITY,  # dict/list max_length
    # The JSON value has the wrong shape. Listed for the reader; anything unmapped falls back to WRONG_TYPE.
    **{
        t: Reason.WRONG_TYPE
        for t in ("string_type", "int_type", "float_type", "bool_type", "dict_type", "list_type", "model_type",
                  "model_attributes_type", "uuid_type", "int_from_float", "int_parsing", "float_parsing",
                  "bool_parsing", "string_unicode", "none_required")
    },
}

# Top-level errors of these types mean the JSON document itself is not an object.
_ROOT_NOT_OBJECT = frozenset({"model_type", "model_attributes_type", "dict_type"})

_REASON_VALUES = frozenset(r.value for r in Reason)


def field_path(loc: tuple[Any, ...]) -> str | None:
    """Dotted field path of a pydantic error location (`experiment.name`, `labels.team`); None for the root."""
    return ".".join(str(p) for p in loc) if loc else None


def reason_for(error: Mapping[str, Any]) -> Reason:
    """Map one pydantic error dict (from `ValidationError.errors()`) to a reason, deterministically.

    Rules, in order:
    1. an error whose type is a Reason value (our custom validators) maps to that reason;
    2. at the root: json_invalid -> not_json, a non-object document -> not_object;
    3. a field given as JSON null where null is not allowed -> missing_field (null carries no value);
    4. the table above; anything else -> wrong_type.
    """
    etype = error["type"]
    if etype in _REASON_VALUES:
        return Reason(etype)
    loc = error.get("loc", ())
    if not loc and etype in _ROOT_NOT_OBJECT:
        return Reason.NOT_OBJECT
    if loc and etype != "missing" and "input" in error and error["input"] is None:
        return Reason.MISSING_FIELD
    return _BY_PYDANTIC_TYPE.get(etype, Reason.WRONG_TYPE)
