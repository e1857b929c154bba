"""Helpers of the streaming job's integration tests: fresh catalogue topics on the test broker, a simulator run
into them, the job as a local process (a Flink mini-cluster), and reading a topic back the way the loader does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import clickhouse_connect
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipeline import routing

from telemetry import settings
from telemetry.settings import REPO_ROOT
from dev.simulator import truth as ground_truth
from dev.stack.kafka import Kafka
from telemetry.topics import CATALOGUE
from tests.support.databases import migrated_database

JOB_TIMEOUT_S = 420
DRAIN_TIMEOUT_S = 120


def decoded(value: bytes) -> Any:
    """A JSON record of the job's output, its numbers with a fraction as Decimal: money is written as exact
    decimal numbers, and a double would not hold it."""
    return json.loads(value, parse_float=Decimal)


def epoch_ms(ch_datetime: str) -> int:
    """A DateTime64(3) text (UTC) of the job's ClickHouse rows as epoch ms."""
    moment = datetime.strptime(ch_datetime, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc)
    return round(moment.timestamp() * 1000)


def reset_topics(stack_env: dict[str, str]) -> None:
    """Delete every catalogue topic and create it again, so a job run reads and writes only its own records."""
    kafka = Kafka(settings.load(stack_env))
    admin = kafka.admin()
    names = [t.name for t in CATALOGUE]
    for future in admin.delete_topics(names, operation_timeout=30).values():
        try:
            future.result(timeout=30)
        except Exception as exc:  # noqa: BLE001 - a topic that is already gone is what we want
            if "UNKNOWN_TOPIC" not in str(exc):
                raise
    deadline = time.monotonic() + 60
    while set(names) & set(admin.list_topics(timeout=10).topics):
        assert time.monotonic() < deadline, "Kafka did not finish deleting the catalogue topics in 60 s"
        time.sleep(0.5)
    while True:  # creation right after deletion can still be refused while the broker forgets the old topic
        try:
            kafka.provision()
            break
        except Exception:  # noqa: BLE001 - retried until the deadline, then raised
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    # A new topic reaches the metadata every client reads a moment after its creation is acknowledged.
    while set(names) - set(admin.list_topics(timeout=10).topics):
        assert time.monotonic() < deadline, "Kafka did not list the recreated catalogue topics in 60 s"
        time.sleep(0.5)


def simulate(stack_env: dict[str, str], truth_path: Path, *args: str) -> dict[str, Any]:
    """The simulator at full speed into the test broker; returns its ground truth."""
    sim = subprocess.run([sys.executable, "-m", "dev.simulator", "--max-speed",
                          "--bootstrap", stack_env["KAFKA_DIRECT_URL"], "--truth", str(truth_path), *args],
                         cwd=REPO_ROOT, env=stack_env, capture_output=True, text=True)
    assert sim.returncode == 0, sim.stderr[-3000:]
    return ground_truth.load(truth_path)


def local_jars() -> str:
    """--jars of a local run: the Maven jars (Kafka connector, Parquet) for the mini-cluster's classpath."""
    return ";".join(f"file://{p}" for p in sorted((REPO_ROOT / "lib" / "flink").glob("*.jar")))


def job_command(stack_env: dict[str, str], work: Path, *args: str, bounded: bool = True) -> list[str]:
    """`python -m jobs.telemetry_job` as a local run from the earliest offsets, checkpoints in work; bounded: it
    ends at the offsets that are the latest when it starts."""
    return [sys.executable, "-m", "jobs.telemetry_job", *(["--bounded"] if bounded else []), "--no-restart",
            "--startup-mode", "earliest-offset", "--group-id", f"test-job-{work.name}",
            "--bootstrap", stack_env["KAFKA_DIRECT_URL"], "--checkpoint-dir", f"file://{work / 'checkpoints'}",
            "--jars", local_jars(), *args]


def run_job(stack_env: dict[str, str], work: Path, *args: str) -> None:
    """Run the job to its end; fail with the tail of its log unless it exits 0."""
    log_path = work / "job.log"
    with open(log_path, "a") as log:
        job = subprocess.Popen(job_command(stack_env, work, *args), cwd=REPO_ROOT, env=stack_env, stdout=log,
                               stderr=subprocess.STDOUT)
        try:
            code = job.wait(timeout=JOB_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            job.kill()
            code = job.wait()
    assert code == 0, f"job exit {code}:\n{log_path.read_text()[-4000:]}"


@contextmanager
def live_job(stack_env: dict[str, str], work: Path, *args: str) -> Iterator[tuple[subprocess.Popen, subprocess.Popen]]:
    """(job, heartbeat): the job unbounded from now on, with watermark heartbeats every 200 ms beside it as in
    production, out-of-orderness 500 ms, checkpoints every second, no enrichment; `args` add to or override those.
    Their logs are work / job.log and work / heartbeat.log (a pipe nobody reads would stall the heartbeat once
    full, and event time with it); both are killed on leaving."""
    began = int(time.time() * 1000)
    with open(work / "heartbeat.log", "w") as beats, open(work / "job.log", "w") as log:
        heartbeat = subprocess.Popen([sys.executable, "-m", "services.heartbeat", "--interval-ms", "200"],
                                     cwd=REPO_ROOT, env=stack_env, stdout=beats, stderr=subprocess.STDOUT)
        job = subprocess.Popen(job_command(stack_env, work, "--startup-mode", "timestamp", "--startup-timestamp-ms",
                                           str(began), "--out-of-orderness-ms", "500", "--checkpoint-interval-ms",
                                           "1000", "--prometheus-url", "", "--lake-uri", str(work / "lake"), *args,
                                           bounded=False),
                               cwd=REPO_ROOT, env=stack_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield job, heartbeat
        finally:
            for process in (job, heartbeat):
                process.kill()
                process.wait()


@contextmanager
def loaded_clickhouse(stack_env: dict[str, str], clickhouse_url: str) -> Iterator[tuple[Any, str]]:
    """The loader (--once) puts the job's committed rows into a freshly migrated ClickHouse database; yields
    (client, database) and drops the database afterwards."""
    client = clickhouse_connect.get_client(dsn=clickhouse_url)
    try:
        with migrated_database(client, "job") as database:
            env = {**stack_env, "CLICKHOUSE_URL": clickhouse_url, "CLICKHOUSE_DATABASE": database,
                   "LOADER_GROUP_ID": f"job-test-{database}", "LOADER_METRICS_PORT": "0"}
            done = subprocess.run([sys.executable, "-m", "services.loader", "--once"], cwd=REPO_ROOT, env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            yield client, database
    finally:
        client.close()


def usage_rows(client: Any, database: str) -> list[dict[str, Any]]:
    """usage_10s summed per window and key, as truth_compare.summed reads rows."""
    dims = ", ".join(routing.DIMS)
    metrics = [*routing.INT_METRICS, *routing.FLOAT_METRICS, *routing.MONEY_METRICS, "tasks", "task_failures", "task_retries",
               "task_queue_ms_sum", "task_load_ms_sum", "task_init_ms_sum", "task_inference_ms_sum",
               "task_duration_ms_sum"]
    result = client.query(
        f"SELECT toUnixTimestamp(window_start) * 1000 AS window_start_ms, {dims}, "
        + ", ".join(f"sum({m}) AS {m}" for m in metrics)
        + f", sumMap(errors_by_type) AS errors_by_type FROM {database}.usage_10s GROUP BY window_start_ms, {dims}")
    return [dict(zip(result.column_names, r)) for r in result.result_rows]


def drain(bootstrap: str, topic: str, with_keys: bool = False) -> list[Any]:
    """Every committed record of a topic (read_committed, as the loader reads), up to its end offsets: values,
    or (key, value) pairs."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-drain", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list[Any] = []
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        # The last committed offset of a transactional topic is a commit marker, never delivered: stop at the
        # end offsets' last data record by reading until a poll comes back empty after the positions reach them.
        while True:
            batch = consumer.consume(1000, 2.0)
            out += [(m.key(), m.value()) if with_keys else m.value() for m in batch if m.error() is None]
            positions = {tp.partition: tp.offset for tp in consumer.position(consumer.assignment())}
            if not batch and all(positions.get(p, 0) >= end - 1 for p, end in ends.items() if end > 0):
                return out
            # An open transaction (a producer that died without aborting) holds read_committed readers back.
            assert time.monotonic() < deadline, f"{topic}: positions {positions} short of the ends {ends} " \
                f"after {DRAIN_TIMEOUT_S} s: a transaction is still open"
    finally:
        consumer.close()
