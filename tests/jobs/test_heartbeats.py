"""Heartbeats through the streaming job: LLM requests in one partition, every other source partition quiet but for
heartbeats, and an idle timeout (10 min) longer than the test may take. Only the heartbeats can move the
watermark past the requests' windows, so the windows closing at all shows the job uses them; the DLQ and the
ingest counters show it drops them before validation."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from schemas.examples import example
from telemetry.topics import DLQ_TOPIC, LLM_TOPIC
from tests.support.job_runs import JOB_TIMEOUT_S, live_job
from telemetry import topics

pytestmark = pytest.mark.stack
REQUESTS = 40
USAGE_TOPIC = topics.clickhouse_topic("usage_10s")
INGEST_TOPIC = topics.clickhouse_topic("ingest_stats_10s")


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """End offsets per partition, retried while a broker that has just started still elects the leaders."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-job-heartbeat"})
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
                return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
    finally:
        consumer.close()


class Reader:
    """Committed records of a topic from given offsets on (read_committed, as the loader reads), as JSON."""

    def __init__(self, bootstrap: str, topic: str, starts: dict[int, int]) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-job-heartbeat",
                                  "enable.auto.commit": False, "isolation.level": "read_committed"})
        self.consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
        self.rows: list[dict[str, Any]] = []

    def read(self, seconds: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = self.consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                self.rows.append(json.loads(msg.value()))
        return self.rows

    def close(self) -> None:
        self.consumer.close()


def send_requests(bootstrap: str) -> int:
    """REQUESTS valid LLM requests into partition 0 of the LLM topic, stamped now; returns the first ts."""
    producer = Producer({"bootstrap.servers": bootstrap})
    first = int(time.time() * 1000)
    for i in range(REQUESTS):
        ts = first + i
        iso = datetime.fromtimestamp(ts / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        event = example("llm_request", 0, event_id=str(uuid.uuid4()), ts=iso)
        producer.produce(LLM_TOPIC, json.dumps(event).encode(), partition=0, timestamp=ts)
    assert producer.flush(30) == 0
    return first


def test_heartbeats_close_the_windows_of_a_quiet_stream(kafka_url: str, stack_env: dict[str, str],
                                                         tmp_path: Path) -> None:
    starts = {t: end_offsets(kafka_url, t) for t in (USAGE_TOPIC, INGEST_TOPIC, DLQ_TOPIC)}
    usage = Reader(kafka_url, USAGE_TOPIC, starts[USAGE_TOPIC])
    try:
        with live_job(stack_env, tmp_path, "--idle-timeout-ms", "600000") as (job, heartbeat):
            first_ts = send_requests(kafka_url)
            deadline = time.monotonic() + JOB_TIMEOUT_S
            while sum(r.get("requests", 0) for r in usage.read(2)) < REQUESTS:
                assert job.poll() is None, f"the job ended:\n{(tmp_path / 'job.log').read_text()[-3000:]}"
                assert heartbeat.poll() is None, (tmp_path / "heartbeat.log").read_text()[-3000:]
                assert time.monotonic() < deadline, ("the requests' windows never closed: heartbeats did not move the "
                                                     "watermark")
            ingest = Reader(kafka_url, INGEST_TOPIC, starts[INGEST_TOPIC]).read(5)
            dlq = Reader(kafka_url, DLQ_TOPIC, starts[DLQ_TOPIC]).read(2)
    finally:
        usage.close()
    windows = {ts // 10_000 * 10 for ts in range(first_ts, first_ts + REQUESTS)}
    assert {r["window_start"] for r in usage.rows if r.get("requests")} == windows
    assert dlq == [], "heartbeats reached validation"
    llm = [r for r in ingest if r["topic"] == LLM_TOPIC]
    assert sum(r["consumed"] for r in ingest) == sum(r["valid"] for r in llm) == REQUESTS
