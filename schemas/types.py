"""Shared field types: bounded strings, counters, durations and the UTC millisecond timestamp.

Bounds are the size and cardinality guards of seed 002: nothing unbounded reaches Kafka, Parquet or ClickHouse.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer, PlainValidator, StringConstraints, WithJsonSchema
from pydantic_core import PydanticCustomError

from schemas.reasons import Reason

# --- strings -------------------------------------------------------------------------------------------
# Ids are keys for joins and group-bys, so they must be non-empty; 128 fits UUIDs, ARNs and slugs.
Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# Names of things (models, versions, checkpoints, services): non-empty, same bound as ids.
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# Low-cardinality labels (vm_type, storage_type, region, error_type): short, since each distinct value
# becomes a dimension in ClickHouse and Grafana. Free text here (e.g. a prompt) is the classic
# cardinality bug seed 002 warns about.
Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]
OptionalLabel = Annotated[str, StringConstraints(max_length=64)]  # may be empty: "unknown"
HostName = Annotated[str, StringConstraints(max_length=253)]  # DNS limit; may be empty when unknown
# Human text (error messages, change summaries) is stored, never grouped by; bounded so one record
# cannot blow the 64 KiB budget.
Text = Annotated[str, StringConstraints(max_length=2048)]

MAX_LABELS = 16
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
LabelValue = Annotated[str, StringConstraints(max_length=128)]
# null is read as "no labels": Go's encoding/json writes a nil map as null, and seed 001's PBAC, asset and
# workflow producers are Go/.NET services.
# (Field before BeforeValidator: the other order makes pydantic emit "maxLength" instead of
# "maxProperties" in the JSON Schema.)
Labels = Annotated[
    dict[LabelKey, LabelValue],
    Field(max_length=MAX_LABELS),
    BeforeValidator(lambda v: {} if v is None else v),
]

# --- numbers -------------------------------------------------------------------------------------------
MAX_BYTES = 2**50  # 1 PiB: larger sizes are producer bugs (e.g. a negative value read as unsigned)
MAX_DURATION_MS = 7 * 24 * 3600 * 1000  # a week: longer loads or transfers are clock bugs
ByteCount = Annotated[int, Field(ge=0, le=MAX_BYTES)]
DurationMs = Annotated[int, Field(ge=0, le=MAX_DURATION_MS)]

# --- timestamps ----------------------------------------------------------------------------------------
# Epoch milliseconds are accepted as integers only. The window [2000, 2100) is wide enough for any real
# event and replay, and rejects epoch *seconds* sent by mistake (they land in January 1970).
TS_MIN = datetime(2000, 1, 1, tzinfo=timezone.utc)
TS_MAX = datetime(2100, 1, 1, tzinfo=timezone.utc)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS_MIN = int((TS_MIN - _EPOCH) / timedelta(milliseconds=1))
_MS_MAX = int((TS_MAX - _EPOCH) / timedelta(milliseconds=1))
_MAX_TS_TEXT = 64


def _bad_ts(message: str, **ctx: Any) -> PydanticCustomError:
    return PydanticCustomError(Reason.BAD_TIMESTAMP.value, message, ctx or None)


def parse_ts(value: Any) -> datetime:
    """Parse ISO-8601 with Z or an offset, epoch milliseconds (int), or an aware datetime.

    Returns an aware UTC datetime truncated to the millisecond (truncated, not rounded, so a value never
    moves into the next second or window). Naive times are refused: their zone is a guess.
    """
    if isinstance(value, str):
        if len(value) > _MAX_TS_TEXT:
            raise _bad_ts("timestamp text longer than {n} characters", n=_MAX_TS_TEXT)
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise _bad_ts("not an ISO-8601 timestamp: {v}", v=value[:_MAX_TS_TEXT]) from None
    elif isinstance(value, bool):  # bool is an int subclass; true is not a time
        raise PydanticCustomError(Reason.WRONG_TYPE.value, "timestamp must be a string or an integer")
    elif isinstance(value, int):
        if not _MS_MIN <= value < _MS_MAX:
            raise _bad_ts("epoch milliseconds {v} outside [2000-01-01, 2100-01-01)", v=value)
        return _EPOCH + timedelta(milliseconds=value)
    elif isinstance(value, datetime):
        dt = value
    elif value is None:
        raise PydanticCustomError(Reason.MISSING_FIELD.value, "timestamp is null")
    else:
        raise PydanticCustomError(Reason.WRONG_TYPE.value, "timestamp must be a string or an integer")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise _bad_ts("timestamp has no UTC offset (use Z or +hh:mm)")
    if dt.tzinfo is not timezone.utc:
        dt = dt.astimezone(timezone.utc)
    if not TS_MIN <= dt < TS_MAX:
        raise _bad_ts("timestamp outside [2000-01-01, 2100-01-01)")
    if dt.microsecond % 1000:
        dt = dt.replace(microsecond=dt.microsecond - dt.microsecond % 1000)
    return dt


def format_ts(dt: datetime) -> str:
    """ISO-8601 UTC with exactly three fractional digits and Z, e.g. 2026-02-21T12:34:56.789Z."""
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"


def ts_to_millis(dt: datetime) -> int:
    """Epoch milliseconds of a parsed timestamp (for Kafka record timestamps and Flink event time)."""
    return (dt - _EPOCH) // timedelta(milliseconds=1)


UtcMillis = Annotated[
    datetime,
    PlainValidator(parse_ts),
    # Only JSON output is a string; Python dumps keep the datetime for Parquet/ClickHouse writers.
    PlainSerializer(format_ts, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                # pattern: the offset that makes a time unambiguous (Z, +hh, +hh:mm, ...), as parse_ts requires
                {"type": "string", "format": "date-time", "maxLength": _MAX_TS_TEXT,
                 "pattern": r"(Z|[+-]\d{2}(:?\d{2}(:?\d{2}(\.\d+)?)?)?)$"},
                {"type": "integer", "minimum": _MS_MIN, "exclusiveMaximum": _MS_MAX},
            ],
            "description": "UTC instant: ISO-8601 with Z or an offset, or epoch milliseconds; "
            "normalised to UTC, millisecond precision, serialised as YYYY-MM-DDTHH:MM:SS.mmmZ",
        }
    ),
]
