"""The streaming job on a real Kafka broker and a Flink mini-cluster: a simulator run in, then every output
checked against the ground truth: DLQ by reason, the raw Parquet lake, audit rows, usage window deltas summed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from telemetry import routing
from telemetry.settings import REPO_ROOT
from tests.truth_compare import GROUP_TOPICS, expected, summed

pytestmark = pytest.mark.stack


def drain(bootstrap: str, topic: str) -> list[bytes]:
    """Every committed record of a topic (read_committed, as the loader reads), up to its end offsets."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-drain", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list[bytes] = []
        # The last committed offset of a transactional topic is a commit marker, never delivered: stop at the
        # end offsets' last data record by reading until a poll comes back empty after the positions reach them.
        while True:
            batch = consumer.consume(1000, 2.0)
            out += [m.value() for m in batch if m.error() is None]
            positions = {tp.partition: tp.offset for tp in consumer.position(consumer.assignment())}
            if not batch and all(positions.get(p, 0) >= end - 1 for p, end in ends.items() if end > 0):
                return out
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def job_run(kafka_url: str, stack_env: dict[str, str], tmp_path_factory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("job")
    truth_path, lake = work / "truth.json", work / "lake"
    sim = subprocess.run([sys.executable, "-m", "telemetry.simulator", "--seed", "5", "--events", "20000",
                          "--max-speed", "--start", "2026-11-25T00:00:00Z", "--bootstrap", kafka_url,
                          "--truth", str(truth_path)], cwd=REPO_ROOT, env=stack_env, capture_output=True, text=True)
    assert sim.returncode == 0, sim.stderr[-3000:]
    jars = ";".join(f"file://{p}" for p in sorted((REPO_ROOT / "lib" / "flink").glob("*.jar")))
    done = subprocess.run([sys.executable, "-m", "jobs.telemetry_job", "--bounded", "--no-restart",
                           "--startup-mode", "earliest-offset", "--group-id", "test-job", "--bootstrap", kafka_url,
                           "--lake-uri", f"file://{lake}", "--checkpoint-dir", f"file://{work / 'checkpoints'}",
                           "--jars", jars],
                          cwd=REPO_ROOT, env=stack_env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"truth": json.loads(truth_path.read_text()), "lake": lake, "bootstrap": kafka_url}


def test_dlq_holds_every_rejected_record_with_its_reason(job_run):
    records = [json.loads(v) for v in drain(job_run["bootstrap"], "telemetry.dlq.v1")]
    assert Counter(r["reason"] for r in records) == Counter(job_run["truth"]["dlq"])
    assert all(r["topic"] and r["job_version"] and r["payload_encoding"] in ("utf-8", "base64") for r in records)


def test_lake_holds_each_valid_event_once_per_topic(job_run):
    table = pads.dataset(str(job_run["lake"]), format="parquet", partitioning="hive").to_table()
    per_topic = Counter(table.column("topic").to_pylist())
    assert dict(per_topic) == {t: v["valid"] for t, v in job_run["truth"]["topics"].items() if v["valid"]}
    assert len(set(table.column("event_id").to_pylist())) == table.num_rows


@pytest.mark.parametrize("group", sorted(GROUP_TOPICS))
def test_usage_deltas_sum_to_the_truth(job_run, group):
    deltas = []
    for value in drain(job_run["bootstrap"], "telemetry.ch.usage.v1"):
        row = json.loads(value)
        row["window_start_ms"] = row.pop("window_start") * 1000
        deltas.append(row)
    assert deltas
    assert summed(job_run["truth"], group, deltas) == expected(job_run["truth"], group)


def test_audit_rows_are_the_audit_topics_valid_events(job_run):
    rows = [json.loads(v) for v in drain(job_run["bootstrap"], "telemetry.ch.audit.v1")]
    topics = job_run["truth"]["topics"]
    assert Counter(r["topic"] for r in rows) == Counter({t: topics[t]["valid"] for t in routing.AUDIT_TOPICS})
