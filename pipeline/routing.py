"""Validate and route one raw Kafka record: a DLQ record with its reason, or one wide typed row per valid event.

The wide row carries everything downstream needs after deduplication: the envelope, the usage metrics the
event contributes to its 10 s window, audit columns, the task join key and the canonical JSON. Plain Python;
udfs/route.py adapts it to Flink.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import schemas
from pipeline import money, sketch
from pipeline.chtime import datetime_text

WINDOW_MS = 10_000
DIMS = ("tenant_id", "department_id", "project_id", "user_id", "model", "model_version", "checkpoint_id",
        "checkpoint_version")
# The usage metrics one event contributes, named as usage_10s names them (sql/clickhouse/migrations/0003_usage.sql).
INT_METRICS = ("requests", "errors", "tokens_in", "tokens_out", "loads", "load_cache_hits", "load_bytes",
               "load_ms_sum", "audit_events", "access_denied", "transfers", "transfer_bytes")
FLOAT_METRICS = ("latency_ms_sum",)
# Credits and allocated unit-seconds: exact, as integer micro-units (pipeline/money.py), None where the event
# carries none, so the job's decimal sums only do work for the events that have some.
MONEY_METRICS = ("wkf_cpu_seconds", "wkf_gpu_seconds", "wkf_credits", "kuber_cpu_seconds", "kuber_gpu_seconds",
                 "kuber_credits", "credits")
# Families whose events go to the audit log: access decisions, policy and service changes, asset access, and
# uploads / downloads of assets (seed 001's asset storage audit).
AUDIT_TOPICS = frozenset({"pbac_access", "pbac_politics", "pbac_service", "asset_access", "asset_transfer"})
TASK_TOPICS = frozenset({"xumi_task", "xumi_load", "wkf_task"})

# (name, kind) of the wide row, in order; kinds: str, int, float, micros (a nullable 64-bit integer of
# micro-units), and str? / int? for nullable.
ROW_FIELDS: tuple[tuple[str, str], ...] = (
    ("topic", "str"), ("event_id", "str"), ("event_name", "str"), ("ts_ms", "int"), ("window_start_ms", "int"),
    *((d, "str") for d in DIMS),
    ("node_id", "str"), ("host_name", "str"), ("vm_type", "str"),
    *((m, "int") for m in INT_METRICS),
    *((m, "float") for m in FLOAT_METRICS),
    *((m, "micros") for m in MONEY_METRICS),
    ("error_type", "str?"), ("latency_bucket", "int?"),
    ("subject", "str"), ("action", "str"), ("resource", "str"), ("decision", "str"), ("policy_id", "str"),
    ("task_id", "str?"), ("event_json", "str"),
    ("lane", "int"),  # ON_TIME, CORRECTION or LATE: which path the event takes after deduplication
)
ROW_NAMES = tuple(name for name, _ in ROW_FIELDS)
_ZERO_METRICS = {**{m: 0 for m in INT_METRICS}, **{m: 0.0 for m in FLOAT_METRICS}, **{m: None for m in MONEY_METRICS}}


# Lanes of a valid event. ON_TIME: its slice window is still open. CORRECTION: its slice already fired, yet its
# window is within the allowed lateness, so it is written as a usage delta of its own. LATE: past the allowed
# lateness; its window is closed for billing, so it goes to the lake and late_events but not into usage.
ON_TIME, CORRECTION, LATE = 0, 1, 2


# A DLQ record keeps at most this many of the original bytes, plus the length and SHA-256 of the whole, so it
# stays far below what its topic accepts (Kafka's 1 MiB default) whatever was produced.
DLQ_PAYLOAD_BYTES = 16 * 1024
DLQ_MESSAGE_CHARS = 1024
# The JSON DLQ record is never larger than this: the payload at its worst (base64 of DLQ_PAYLOAD_BYTES, as
# escaped text is never kept when base64 is shorter), a message of control characters escaped to six bytes
# each, and the position, reason and times.
DLQ_RECORD_MAX_BYTES = 4 * DLQ_PAYLOAD_BYTES // 3 + 6 * DLQ_MESSAGE_CHARS + 2048


@dataclass(frozen=True)
class Rejected:
    reason: str
    message: str


def future_timestamp(ts_ms: int, record_ts_ms: int, now_ms: int, max_clock_skew_ms: int) -> Rejected | None:
    """Why a valid event is refused for its time: its ts or its Kafka timestamp (which drives the job's slices
    and watermark) lies further ahead of the job's clock than producers' clocks may drift. Such a record would
    wait in a window that cannot fire before that time comes, invisible until then."""
    limit = now_ms + max_clock_skew_ms
    for what, value in (("ts", ts_ms), ("Kafka timestamp", record_ts_ms)):
        if value > limit:
            return Rejected(schemas.JobReason.FUTURE_TIMESTAMP.value, f"{what} {datetime_text(value)} is {value - now_ms} ms ahead of the job's "
                                                f"clock, more than the allowed skew of {max_clock_skew_ms} ms")
    return None


def internal_error(exc: BaseException) -> Rejected:
    """The DLQ reason of a record whose handling raised: a bug to fix, named by its exception."""
    return Rejected(schemas.JobReason.INTERNAL_ERROR.value, f"{type(exc).__name__}: {exc}")


def window_start(ts_ms: int) -> int:
    return ts_ms - ts_ms % WINDOW_MS


def is_late(ts_ms: int, watermark_ms: int, allowed_lateness_ms: int) -> bool:
    """Past the allowed lateness: the event's window closed for good (billing) and it stays out of usage."""
    return window_start(ts_ms) + WINDOW_MS + allowed_lateness_ms <= watermark_ms


def misses_its_slice(record_ts_ms: int, watermark_ms: int, slice_ms: int) -> bool:
    """The job's slice windows (on the Kafka record timestamp) already fired for this record: the window operator
    would drop it, so it goes the correction path instead. Upstream watermarks only lead downstream ones, so a
    record this check lets through is never dropped there. Flink fires [start, end) once the watermark reaches
    end - 1 (its last millisecond), so a watermark of exactly end - 1 already counts: checking end <= watermark
    let such records through to be dropped (13 of 11,416 requests of a window in a benchmark run)."""
    return record_ts_ms - record_ts_ms % slice_ms + slice_ms - 1 <= watermark_ms


def lane(ts_ms: int, record_ts_ms: int, watermark_ms: int, allowed_lateness_ms: int, slice_ms: int) -> int:
    """The lane of a valid event with event time ts_ms, carried by a Kafka record stamped record_ts_ms."""
    if is_late(ts_ms, watermark_ms, allowed_lateness_ms):
        return LATE
    if misses_its_slice(record_ts_ms, watermark_ms, slice_ms):
        return CORRECTION
    return ON_TIME


def route(topic: str, raw: bytes | None) -> tuple[Any, ...] | Rejected:
    """The wide row (values in ROW_FIELDS order) of a valid record, or why it was rejected."""
    result = schemas.validate(topic, raw)
    if not result.ok:
        return Rejected(result.reason.value, result.message)
    try:
        return wide_row(topic, result.event, raw)
    except money.MoneyError as exc:  # the exact reading of an amount the validator only saw as a double
        return Rejected(schemas.Reason.OUT_OF_RANGE.value, str(exc))


def wide_row(topic: str, event: schemas.Envelope, raw: bytes) -> tuple[Any, ...]:
    """The row of a validated event. event_json is the record as produced (valid, so UTF-8 JSON): the raw lake
    keeps what producers sent, and dumping the model again would double this hop's cost."""
    data = event.__dict__  # the validated fields; model_dump would copy them at several µs per event
    ts_ms = schemas.ts_to_millis(event.ts)
    labels = data.get("labels") or {}
    row: dict[str, Any] = {
        "topic": topic, "event_id": str(data["event_id"]), "event_name": data["event_name"], "ts_ms": ts_ms,
        "window_start_ms": window_start(ts_ms),
        "tenant_id": data["tenant_id"], "department_id": data["department_id"], "project_id": data["project_id"],
        "user_id": data["user_id"], "model": "", "model_version": "", "checkpoint_id": "", "checkpoint_version": "",
        "node_id": data["node_id"], "host_name": data["host_name"], "vm_type": data["vm_type"],
        **_ZERO_METRICS,
        "error_type": None, "latency_bucket": None,
        "subject": "", "action": "", "resource": "", "decision": "", "policy_id": "",
        "task_id": data.get("task_id"),
        "event_json": raw.decode("utf-8"),
        "lane": ON_TIME,
    }
    family = schemas.TOPIC_FAMILY[topic]
    # Task lifecycle families add no usage of their own: task facts come from the lifecycle join.
    contribute = _CONTRIBUTIONS.get(family)
    if contribute is not None:
        contribute(data, labels, row)
    elif family in _CREDIT_SYSTEMS:
        _credits(data, labels, row, raw, *_CREDIT_SYSTEMS[family])
    return tuple(row[name] for name in ROW_NAMES)


def _llm(data: dict[str, Any], labels: dict[str, str], row: dict[str, Any]) -> None:
    row.update(model=data["model_id"], model_version=data["model_version"], checkpoint_id=data.get("checkpoint_id") or "",
               requests=1, errors=int(data["status"] != "ok"), tokens_in=data["tokens_in"],
               tokens_out=data["tokens_out"], latency_ms_sum=float(data["latency_ms"]),
               error_type=data.get("error_type"), latency_bucket=sketch.bucket(data["latency_ms"]))


def _load(data: dict[str, Any], labels: dict[str, str], row: dict[str, Any]) -> None:
    # A weights load names the base weights as its checkpoint; the simulator tags the model version.
    row.update(model=data["base_model"], model_version=labels.get("model_version", ""),
               checkpoint_id=data["checkpoint_id"], checkpoint_version=data["checkpoint_version"])
    if data["event_name"].endswith(".finish"):
        row.update(loads=1, load_cache_hits=int(bool(data.get("cache_hit"))), load_bytes=data["bytes"],
                   load_ms_sum=data.get("duration_ms") or 0)


def _credit_dims(labels: dict[str, str], row: dict[str, Any]) -> None:
    # Credit events carry no model fields; producers tag the task's model in labels so usage groups without a join.
    row.update(model=labels.get("model", ""), model_version=labels.get("model_version", ""),
               checkpoint_id=labels.get("checkpoint_id", ""), checkpoint_version=labels.get("checkpoint_version", ""))


def _credits(data: dict[str, Any], labels: dict[str, str], row: dict[str, Any], raw: bytes, system: str,
             resource: str) -> None:
    _credit_dims(labels, row)
    amounts = money.credit_amounts(raw, data)
    row[f"{system}_{resource}_seconds"] = money.product_micros(amounts["units"], amounts["seconds"])
    row[f"{system}_credits"] = row["credits"] = money.to_micros("credits", amounts["credits"])


_CREDIT_SYSTEMS = {"wkf_cpu": ("wkf", "cpu"), "wkf_gpu": ("wkf", "gpu"), "kuber_cpu": ("kuber", "cpu"),
                   "kuber_gpu": ("kuber", "gpu")}


def _audit(subject: str, action: str, resource: str, decision: str, policy: str):
    def contribute(data: dict[str, Any], labels: dict[str, str], row: dict[str, Any]) -> None:
        row.update(audit_events=1, subject=str(data.get(subject) or ""), action=str(data.get(action) or ""),
                   resource=str(data.get(resource) or ""), decision=str(data.get(decision) or ""),
                   policy_id=str(data.get(policy) or ""))
        row["access_denied"] = int(row["decision"] == "deny")
    return contribute


def _policy_change(data: dict[str, Any], labels: dict[str, str], row: dict[str, Any]) -> None:
    _audit("changed_by", "", "policy_id", "", "policy_id")(data, labels, row)
    row["action"] = data["event_name"].rsplit(".", 1)[1]


def _transfer(data: dict[str, Any], labels: dict[str, str], row: dict[str, Any]) -> None:
    # an audit row too (who moved which asset which way), but no audit_events / access_denied count: usage counts
    # a transfer as a transfer
    row.update(transfers=1, transfer_bytes=data["bytes"], subject=str(data.get("user_id") or ""),
               action=str(data["direction"]), resource=str(data["asset_id"]))


_CONTRIBUTIONS = {
    "llm_request": _llm,
    "xumi_load": _load,
    "pbac_access": _audit("subject", "action", "resource", "decision", "policy_id"),
    "pbac_politics": _policy_change,
    "pbac_service": _audit("service", "action", "service", "status", ""),
    "asset_access": _audit("user_id", "action", "asset_id", "decision", ""),
    "asset_transfer": _transfer,
}


def dlq_payload(raw: bytes | None) -> dict[str, Any]:
    """dlq_events' payload columns: the first DLQ_PAYLOAD_BYTES of the record byte-exact (UTF-8 text as is, else
    base64; base64 too where JSON escapes would make the text longer, as for control characters), the length and
    SHA-256 of the whole record, and whether the payload was cut. A tombstone (no value) has encoding null."""
    if raw is None:
        return {"payload": "", "payload_encoding": "null", "payload_bytes": 0, "payload_sha256": "",
                "payload_truncated": 0}
    kept = raw[:DLQ_PAYLOAD_BYTES]
    encoded = base64.b64encode(kept).decode("ascii")
    payload, encoding = encoded, "base64"
    try:
        text = kept.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if len(json.dumps(text)) <= len(encoded) + 2:
            payload, encoding = text, "utf-8"
    return {"payload": payload, "payload_encoding": encoding, "payload_bytes": len(raw),
            "payload_sha256": hashlib.sha256(raw).hexdigest(), "payload_truncated": int(len(kept) < len(raw))}


def dlq_record(topic: str, partition: int, offset: int, kafka_ts_ms: int, raw: bytes | None, rejected: Rejected,
               job_version: str, now_ms: int) -> dict[str, Any]:
    """A DLQ record: dlq_events' columns, never over DLQ_RECORD_MAX_BYTES as JSON (see dlq_payload)."""
    message = rejected.message
    if len(message) > DLQ_MESSAGE_CHARS:
        message = message[: DLQ_MESSAGE_CHARS - 1] + "…"
    return {
        "ts": datetime_text(kafka_ts_ms), "reason": rejected.reason, "message": message, "topic": topic,
        "kafka_partition": partition, "kafka_offset": offset, **dlq_payload(raw),
        "job_version": job_version, "rejected_at": datetime_text(now_ms),
    }
