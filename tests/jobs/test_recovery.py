"""The streaming job when things break: the job process killed at a random point mid-stream and restarted from its
latest checkpoint, and Prometheus down for a whole run. In both, what reaches ClickHouse is the ground truth and
the lake holds each valid event once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pytest
import requests
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from pipeline import routing
from telemetry.settings import REPO_ROOT
from telemetry.topics import SOURCE_TOPICS
from pipeline.lifecycle import latest
from tests.support.fixtures_prometheus import free_port
from tests.support.job_runs import (JOB_TIMEOUT_S, decoded, drain, epoch_ms, job_command, loaded_clickhouse,
                                    reset_topics, run_job, simulate, usage_rows)
from tests.support.truth_compare import GROUP_TOPICS, ended_attempts, expected, ingest_totals, summed
from telemetry import topics

pytestmark = pytest.mark.stack
ORPHAN_TIMEOUT_MS = 60_000  # shorter than the default 30 min, so a tail of traffic soon passes every deadline
COORDINATOR_PENDING = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                       KafkaError.COORDINATOR_LOAD_IN_PROGRESS}


def completed_checkpoints(work: Path) -> list[Path]:
    return sorted((work / "checkpoints").glob("*/chk-*/_metadata"))


def uncommitted(bootstrap: str, group: str) -> dict[str, int]:
    """Per source topic, the records beyond the offsets the job's consumer group committed. The job commits its
    positions when a checkpoint completes, so this is what a restart from the latest checkpoint reads again."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = [TopicPartition(t, p) for t in SOURCE_TOPICS
                      for p in consumer.list_topics(t, timeout=10).topics[t].partitions]
        behind: Counter = Counter()
        for c in committed(consumer, partitions):
            end = consumer.get_watermark_offsets(c, timeout=10)[1]
            behind[c.topic] += end - max(c.offset, 0)
        return {t: n for t, n in behind.items() if n}
    finally:
        consumer.close()


def committed(consumer: Consumer, partitions: list[TopicPartition]) -> list[TopicPartition]:
    """The group's committed offsets, retried while a new client still looks for the group's coordinator."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return consumer.committed(partitions, timeout=10)
        except KafkaException as exc:
            if exc.args[0].code() not in COORDINATOR_PENDING or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def kill_mid_stream(stack_env: dict[str, str], work: Path, *args: str) -> dict[str, Any]:
    """Start the job (unbounded), wait until a checkpoint has committed some of its progress, then SIGKILL its
    process group (the Python process and the JVM it started) at a random moment of the next few seconds."""
    delay = random.Random().uniform(0.0, 4.0)
    bootstrap = stack_env["KAFKA_DIRECT_URL"]
    with open(work / "job.log", "a") as log:
        job = subprocess.Popen(job_command(stack_env, work, *args, bounded=False), cwd=REPO_ROOT, env=stack_env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + JOB_TIMEOUT_S
        unread = sum(uncommitted(bootstrap, group_of(work)).values())
        while sum(uncommitted(bootstrap, group_of(work)).values()) == unread:
            assert job.poll() is None, f"the job ended:\n{(work / 'job.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint committed any progress"
            time.sleep(0.2)
        time.sleep(delay)
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    behind = uncommitted(stack_env["KAFKA_DIRECT_URL"], group_of(work))
    assert behind, "the job had checkpointed every record before it was killed: give it more records"
    return {"delay_s": delay, "checkpoints": len(completed_checkpoints(work)), "uncommitted": behind}


def group_of(work: Path) -> str:
    return f"test-job-{work.name}"  # job_command's consumer group


def restore_and_catch_up(stack_env: dict[str, str], work: Path, truth: dict[str, Any], *args: str) -> None:
    """Restart the job (unbounded) from its latest checkpoint and let it read every source record; then a clean
    tail of traffic, an orphan timeout after the run, moves event time on, as live traffic does, until the run's
    last windows and orphan deadlines have fired and been committed; then cancel the job.

    Not a bounded restart: a bounded Kafka source restored from state never ends (FLINK-31006, open for connector
    5.0). Not `flink stop --drain` either: measured here, the drain's final watermark fired none of the job's
    windows or timers, so their rows never reached Kafka (see the README)."""
    rest = f"http://127.0.0.1:{free_port()}"
    bootstrap = stack_env["KAFKA_DIRECT_URL"]
    with open(work / "job.log", "a") as log:
        job = subprocess.Popen(job_command(stack_env, work, *args, "--restore-from", "latest",
                                           "--rest-port", rest.rsplit(":", 1)[1], bounded=False),
                               cwd=REPO_ROOT, env=stack_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + JOB_TIMEOUT_S
            while uncommitted(bootstrap, group_of(work)):
                assert job.poll() is None, f"the restored job ended:\n{(work / 'job.log').read_text()[-3000:]}"
                assert time.monotonic() < deadline, "the restored job did not commit every source offset"
                time.sleep(1)
            simulate(stack_env, work / "tail.json", "--seed", "2", "--events", "2000", "--start",
                     str(tail_start(truth)), "--malformed", "0", "--duplicates", "0")
            ended = sum(ended_attempts(truth).values())
            while len(run_facts(bootstrap, truth)) < ended:
                assert job.poll() is None, f"the restored job ended:\n{(work / 'job.log').read_text()[-3000:]}"
                assert time.monotonic() < deadline, "the run's last task facts were not committed"
                time.sleep(2)
            (running,) = [j["id"] for j in requests.get(f"{rest}/jobs", timeout=10).json()["jobs"]
                          if j["status"] == "RUNNING"]
            requests.patch(f"{rest}/jobs/{running}", timeout=10)  # cancel
            job.wait(timeout=60)
        finally:
            if job.poll() is None:
                job.kill()
                job.wait()


def tail_start(truth: dict[str, Any]) -> int:
    """Event time of the clean tail: two orphan timeouts after the run, so every orphan deadline has passed."""
    return truth["meta"]["end_ms"] + 2 * ORPHAN_TIMEOUT_MS


def run_facts(bootstrap: str, truth: dict[str, Any]) -> list[dict[str, Any]]:
    """The committed task facts of the run, each attempt's newest revision (the tail's come after it)."""
    facts = latest(json.loads(v) for v in drain(bootstrap, topics.clickhouse_topic("task_facts")))
    return [f for f in facts if epoch_ms(f["finished_at"]) < tail_start(truth)]


@pytest.fixture(scope="module")
def crashed_and_restored(kafka_url: str, stack_env: dict[str, str], tmp_path_factory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("crash")
    reset_topics(stack_env)
    truth = simulate(stack_env, work / "truth.json", "--seed", "17", "--events", "60000",
                     "--start", "2026-11-26T00:00:00Z")
    lake = work / "lake"
    args = ("--lake-uri", f"file://{lake}", "--prometheus-url", "", "--checkpoint-interval-ms", "1000",
            "--orphan-timeout-ms", str(ORPHAN_TIMEOUT_MS))
    kill = kill_mid_stream(stack_env, work, *args)
    restore_and_catch_up(stack_env, work, truth, *args)
    assert "restoring from" in (work / "job.log").read_text()
    return {"truth": truth, "lake": lake, "bootstrap": kafka_url, "kill": kill}


@pytest.fixture(scope="module")
def crash_loaded(crashed_and_restored, clickhouse_server: str, stack_env: dict[str, str]):
    with loaded_clickhouse(stack_env, clickhouse_server) as loaded:
        yield loaded


@pytest.mark.parametrize("group", [*sorted(GROUP_TOPICS), "tasks"])
def test_usage_is_exact_after_a_kill_and_restore(crashed_and_restored, crash_loaded, group):
    truth = crashed_and_restored["truth"]
    rows = [r for r in usage_rows(*crash_loaded) if r["window_start_ms"] < tail_start(truth)]
    assert summed(truth, group, rows) == expected(truth, group)


def test_dlq_ingest_and_task_facts_are_exact_after_a_kill_and_restore(crashed_and_restored, crash_loaded):
    client, database = crash_loaded
    truth = crashed_and_restored["truth"]
    before_tail = f"toDateTime64({tail_start(truth) / 1000}, 3)"
    dlq = dict(client.query(f"SELECT reason, count() FROM {database}.dlq_events GROUP BY reason").result_rows)
    assert dlq == truth["dlq"]  # the tail is clean
    ingest = client.query(f"SELECT topic, sum(consumed), sum(valid), sum(dlq), sum(duplicates) "
                          f"FROM {database}.ingest_stats_10s WHERE window_start < {before_tail} "
                          f"GROUP BY topic").result_rows
    assert {r[0]: tuple(r[1:]) for r in ingest} == ingest_totals(truth)
    # Without FINAL: a revision written twice would show (a restart writes the revisions after its checkpoint
    # once more only in transactions that were aborted).
    rows, distinct = client.query(f"SELECT count(), uniqExact(task_id, attempt, version) FROM {database}.task_facts"
                                  ).result_rows[0]
    assert rows == distinct
    facts = dict(client.query(f"SELECT status, count() FROM (SELECT argMax(status, version) AS status, "
                              f"argMax(finished_at, version) AS finished_at FROM {database}.task_facts "
                              f"GROUP BY task_id, attempt) WHERE finished_at < {before_tail} GROUP BY status"
                              ).result_rows)
    assert facts == ended_attempts(truth)
    audit = client.query(f"SELECT count() FROM {database}.audit_log WHERE ts < {before_tail}").result_rows[0][0]
    assert audit == sum(truth["topics"][t]["valid"] for t in routing.AUDIT_TOPICS)


def test_lake_holds_each_valid_event_once_after_a_kill_and_restore(crashed_and_restored):
    truth = crashed_and_restored["truth"]
    table = pads.dataset(str(crashed_and_restored["lake"]), format="parquet", partitioning="hive").to_table()
    cutoff = datetime.fromtimestamp(tail_start(truth) / 1000, timezone.utc).replace(tzinfo=None)
    run = table.filter(pc.less(table["ts"], pa.scalar(cutoff, type=table.schema.field("ts").type)))
    assert dict(Counter(run.column("topic").to_pylist())) == {
        t: v["valid"] for t, v in truth["topics"].items() if v["valid"]}
    assert len(set(table.column("event_id").to_pylist())) == table.num_rows


@pytest.fixture(scope="module")
def prometheus_down(kafka_url: str, stack_env: dict[str, str], tmp_path_factory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("promdown")
    reset_topics(stack_env)
    truth = simulate(stack_env, work / "truth.json", "--seed", "23", "--events", "10000",
                     "--start", "2026-11-27T00:00:00Z")
    # Nothing listens on the port: every lookup fails at once, and the breaker keeps the rest from trying.
    run_job(stack_env, work, "--lake-uri", f"file://{work / 'lake'}",
            "--prometheus-url", f"http://127.0.0.1:{free_port()}", "--enrichment-timeout-s", "10")
    return {"truth": truth, "bootstrap": kafka_url}


def test_prometheus_down_still_writes_every_fact_as_unavailable(prometheus_down):
    facts = latest(json.loads(v) for v in drain(prometheus_down["bootstrap"], topics.clickhouse_topic("task_facts")))
    tasks = prometheus_down["truth"]["tasks"]
    statuses = Counter(f["status"] for f in facts)
    assert (statuses["finished"], statuses["failed"], statuses["orphaned"]) == (
        tasks["finished"], tasks["failed"], tasks["orphaned"])
    assert {f["enrichment_status"] for f in facts} == {"unavailable"}


@pytest.mark.parametrize("group", [*sorted(GROUP_TOPICS), "tasks"])
def test_prometheus_down_loses_no_usage(prometheus_down, group):
    deltas = []
    for value in drain(prometheus_down["bootstrap"], topics.clickhouse_topic("usage_10s")):
        row = decoded(value)
        row["window_start_ms"] = row.pop("window_start") * 1000
        deltas.append(row)
    assert summed(prometheus_down["truth"], group, deltas) == expected(prometheus_down["truth"], group)





