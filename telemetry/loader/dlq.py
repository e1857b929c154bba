"""DLQ records for rows ClickHouse rejected, in the shape of dlq_events (sql/migrations/0004), reason clickhouse_rejected.

The record names the loader topic's own position, so dlq_events (ReplacingMergeTree on topic, partition,
offset) keeps one row per rejected record even when a replay rejects and sends it again.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

import telemetry

REASON = "clickhouse_rejected"
JOB_VERSION = f"loader/{telemetry.__version__}"


def _ch_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _payload(value: bytes | None) -> str:
    """The record's value as text: UTF-8 as it is, anything else base64 (the DLQ's convention)."""
    try:
        return (value or b"").decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(value or b"").decode("ascii")


def dlq_record(msg: Message, error: str, now_ms: int) -> bytes:
    """The DLQ record (JSON, dlq_events' columns) for a loader-topic record that ClickHouse refused."""
    kind, ts = msg.timestamp()
    return json.dumps(
        {
            "ts": _ch_time(ts if kind != TIMESTAMP_NOT_AVAILABLE else now_ms),
            "reason": REASON,
            "message": error,
            "topic": msg.topic(),
            "kafka_partition": msg.partition(),
            "kafka_offset": msg.offset(),
            "payload": _payload(msg.value()),
            "job_version": JOB_VERSION,
            "rejected_at": _ch_time(now_ms),
        },
        separators=(",", ":"),
    ).encode()
