"""DLQ records for rows ClickHouse rejected, in the shape of dlq_events (sql/clickhouse/migrations/0004), reason clickhouse_rejected.

The record names the loader topic's own position, so dlq_events (ReplacingMergeTree on topic, partition,
offset) keeps one row per rejected record even when a replay rejects and sends it again.
"""

from __future__ import annotations

import json

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

import telemetry
from schemas.reasons import JobReason
from pipeline import routing

REASON = JobReason.CLICKHOUSE_REJECTED.value
JOB_VERSION = f"loader/{telemetry.__version__}"


def dlq_record(msg: Message, error: str, now_ms: int) -> bytes:
    """The DLQ record (JSON, dlq_events' columns) for a loader-topic record that ClickHouse refused."""
    kind, ts = msg.timestamp()
    record = routing.dlq_record(msg.topic(), msg.partition(), msg.offset(),
                                ts if kind != TIMESTAMP_NOT_AVAILABLE else now_ms, msg.value() or b"",
                                routing.Rejected(REASON, error), JOB_VERSION, now_ms)
    return json.dumps(record, separators=(",", ":")).encode()
