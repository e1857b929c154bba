"""The local stack with its real services: up, healthy, provisioned (topics, bucket, scrape targets), idempotent,
a clear error for a taken port, and down. Runs on its own ports and state directory (tests/support/fixtures_stack.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq
import pytest
import requests
from confluent_kafka import Producer, TopicCollection
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from pyarrow import fs

from telemetry.settings import REPO_ROOT, Settings
from dev.stack.control import NAMES, select, status
from dev.stack.flink import cli, reporter_ports
from dev.stack.process import Launch, Port, Service, pid_alive, port_free, session_members, stop
from telemetry.topics import CATALOGUE
from tests.support.polling import eventually

if TYPE_CHECKING:  # imported for real by conftest's pytest_plugins, first, so pytest can rewrite its asserts
    from tests.support.fixtures_stack import StackCli

pytestmark = pytest.mark.stack


def lake(config: Settings) -> fs.S3FileSystem:
    access_key, secret_key = config.s3_credentials()
    endpoint = config.s3_endpoint.removeprefix("http://")
    return fs.S3FileSystem(access_key=access_key, secret_key=secret_key, endpoint_override=endpoint, scheme="http", region="us-east-1")


def kafka_topic_ids(config: Settings) -> dict[str, str]:
    """Each catalogue topic's id: a topic deleted and created again gets a new one."""
    admin = AdminClient({"bootstrap.servers": config.kafka_direct_url})
    futures = admin.describe_topics(TopicCollection([t.name for t in CATALOGUE]))
    return {name: str(future.result(timeout=10).topic_id) for name, future in futures.items()}


def all_pids(config: Settings) -> dict[str, dict[str, int | None]]:
    return {row.name: row.pids for row in status(config)}


def test_every_service_runs_healthy_from_the_test_state_dir(stack: Settings, stack_env: dict[str, str], stack_cli: StackCli) -> None:
    rows = status(stack)
    assert [row.name for row in rows] == list(NAMES)
    assert all(row.running and row.healthy for row in rows), rows
    for row in rows:
        for pid in row.pids.values():
            assert str(stack.state_dir) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(), row.name
    result = stack_cli(stack_env, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("healthy") == len(NAMES)


def test_flink_ui_answers_with_a_taskmanager_and_the_stack_config(stack: Settings) -> None:
    assert "Apache Flink Web Dashboard" in requests.get(stack.flink_rest_url, timeout=10).text
    overview = requests.get(f"{stack.flink_rest_url}/overview", timeout=10).json()
    assert overview["taskmanagers"] == 1
    assert overview["slots-total"] == 4
    config = {e["key"]: e["value"] for e in requests.get(f"{stack.flink_rest_url}/jobmanager/config", timeout=10).json()}
    assert config["python.executable"] == sys.executable
    assert config["s3.endpoint"] == stack.s3_endpoint
    assert config["rest.bind-address"] == "127.0.0.1"
    assert config["execution.checkpointing.dir"] == f"file://{stack.state_dir / 'flink' / 'checkpoints'}"


def test_every_catalogue_topic_exists_with_its_partition_count(stack: Settings) -> None:
    topics = AdminClient({"bootstrap.servers": stack.kafka_direct_url}).list_topics(timeout=10).topics
    assert {t.name: len(topics[t.name].partitions) if t.name in topics else 0 for t in CATALOGUE} == {
        t.name: t.partitions for t in CATALOGUE
    }


def test_topics_keep_history_whatever_its_event_time(stack: Settings) -> None:
    # Records carry the event's time; time-based retention deleted replayed history (months old) within one
    # retention check, and a job started after it read nothing.
    admin = AdminClient({"bootstrap.servers": stack.kafka_direct_url})
    resource = ConfigResource(ConfigResource.Type.TOPIC, CATALOGUE[0].name)
    config = admin.describe_configs([resource])[resource].result(timeout=10)
    assert (config["retention.ms"].value, config["retention.bytes"].value) == ("-1", "1073741824")


def test_lake_bucket_exists_and_minio_credentials_are_private(stack: Settings) -> None:
    assert stack.minio_credentials_file.stat().st_mode & 0o777 == 0o600
    assert lake(stack).get_file_info(stack.lake_bucket).type == fs.FileType.Directory


def test_prometheus_scrapes_both_flink_reporters(stack: Settings) -> None:
    jobmanager, taskmanager = reporter_ports(stack)

    def targets() -> dict[str, tuple[str, str]] | None:
        active = requests.get(f"{stack.prometheus_url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        found = {t["labels"]["job"]: (t["scrapeUrl"], t["health"]) for t in active}
        return found if all(health == "up" for _, health in found.values()) else None

    found = eventually(targets, "Prometheus reports every target up")
    assert found["flink-jobmanager"][0] == f"http://127.0.0.1:{jobmanager}/metrics"
    assert found["flink-taskmanager"][0] == f"http://127.0.0.1:{taskmanager}/metrics"

    def one_taskmanager_registered() -> bool:
        # the first scrape may predate the TaskManager's registration, so wait for a sample that shows it
        query = {"query": "flink_jobmanager_numRegisteredTaskManagers"}
        result = requests.get(f"{stack.prometheus_url}/api/v1/query", params=query, timeout=10).json()["data"]["result"]
        return [sample["value"][1] for sample in result] == ["1"]

    eventually(one_taskmanager_registered, "Prometheus has the JobManager's metric: 1 registered TaskManager")


def test_flink_runs_a_python_job_from_kafka_to_parquet_on_s3(stack: Settings) -> None:
    """The jar set end to end: Kafka connector, Parquet writer and S3 plugin in a job submitted as in production."""
    topic, run = f"stack-smoke-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": stack.kafka_direct_url})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(timeout=30)
    producer = Producer({"bootstrap.servers": stack.kafka_direct_url})
    values = [f"record-{i}" for i in range(500)]
    for value in values:
        producer.produce(topic, value.encode())
    assert producer.flush(30) == 0
    flink, environ = cli(stack)
    output = f"s3://{stack.lake_bucket}/stack-smoke/{run}/"
    job = REPO_ROOT / "tests" / "support" / "stack_smoke_job.py"
    result = subprocess.run(
        [str(flink), "run", "-py", str(job), stack.kafka_direct_url, topic, output],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    s3 = lake(stack)
    files = [f.path for f in s3.get_file_info(fs.FileSelector(f"{stack.lake_bucket}/stack-smoke/{run}", recursive=True)) if f.is_file]
    table = pq.read_table(files, filesystem=s3)
    assert sorted(table.column("value").to_pylist()) == sorted(values)
    assert table.column("length").to_pylist() == [len(v) for v in table.column("value").to_pylist()]
    admin.delete_topics([topic])[topic].result(timeout=30)


def test_second_up_changes_nothing(stack: Settings, stack_env: dict[str, str], stack_cli: StackCli) -> None:
    before = all_pids(stack)
    result = stack_cli(stack_env, "up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing to start" in result.stdout
    assert result.stdout.count("already running, left alone") == len(NAMES)
    assert all_pids(stack) == before


def test_up_restarts_a_partly_running_service(stack: Settings, stack_env: dict[str, str], stack_cli: StackCli) -> None:
    before = all_pids(stack)
    taskmanager = before["flink"]["taskmanager"]
    assert taskmanager is not None
    os.kill(taskmanager, signal.SIGKILL)
    eventually(lambda: not pid_alive(taskmanager), "the killed TaskManager is gone", timeout=30)
    result = stack_cli(stack_env, "up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "flink       partly running" in result.stdout and "restarting taskmanager" in result.stdout
    after = all_pids(stack)
    assert after["flink"]["taskmanager"] not in (None, taskmanager)
    # only what died: a new JobManager would have taken the running jobs with it
    assert after["flink"]["jobmanager"] == before["flink"]["jobmanager"]
    assert {k: v for k, v in after.items() if k != "flink"} == {k: v for k, v in before.items() if k != "flink"}
    eventually(lambda: requests.get(f"{stack.flink_rest_url}/overview", timeout=5).json()["taskmanagers"] == 1,
               "the new TaskManager registered with the JobManager")


class Spawner(Service):
    """A service of two processes, each leaving a child in its session, as a TaskManager leaves Python workers."""

    name = "spawner"
    processes = ("first", "second")
    stop_grace = 5.0

    def url(self) -> str:
        return ""

    def ports(self) -> list[Port]:
        return []

    def launches(self) -> list[Launch]:
        # the directory in the command line (argv[0], through exec -a) marks the process as this service's
        return [Launch(name, ["bash", "-c", f"sleep 300 & exec -a '{name} {self.dir}/' sleep 300"])
                for name in self.processes]

    def healthy(self) -> bool:
        return all(pid is not None for pid in self.pids().values())


def test_what_a_dead_process_left_behind_is_stopped_with_it(tmp_path: Path) -> None:
    """A killed TaskManager left its Python workers running, out of reach of `down`; up must not leave them either."""
    service = Spawner(Settings(state_dir=tmp_path))
    for launch in service.launches():
        service.spawn(launch)
    eventually(lambda: len(session_members(service.recorded_pid("first") or 0)) == 2, "the first process and its child")
    first = service.recorded_pid("first")
    assert first is not None
    child = next(pid for pid in session_members(first) if pid != first)
    os.kill(first, signal.SIGKILL)
    eventually(lambda: not pid_alive(first), "the killed process is gone", timeout=30)
    assert pid_alive(child) and service.leftovers() == {"first": [child]}
    stopped = stop([service], ("first",))  # what `up` does before it starts the dead process again
    assert stopped["spawner"] == [child] and not pid_alive(child)
    second = service.pids()["second"]
    assert second is not None and pid_alive(second)  # the living process is left alone
    stop([service])
    assert not pid_alive(second) and not session_members(second)


@pytest.mark.parametrize(
    ("service", "variable", "held_offset"),
    [("prometheus", "PROMETHEUS_URL", 0), ("kafka", "KAFKA_DIRECT_URL", 1)],  # Kafka's controller: its port + 1
)
def test_taken_port_is_a_clear_error(tmp_path: Path, stack_cli: StackCli, service: str, variable: str, held_offset: int) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        held = holder.getsockname()[1]
        port = held - held_offset
        if held_offset and not port_free(port):
            pytest.skip(f"port {port} next to the held one is busy")
        url = f"127.0.0.1:{port}" if service == "kafka" else f"http://127.0.0.1:{port}"
        environ = {**os.environ, "TELEMETRY_STATE_DIR": str(tmp_path), variable: url}
        result = stack_cli(environ, "up", service)
    assert result.returncode == 1
    assert f"port {held} on 127.0.0.1" in result.stdout
    assert f"with {variable}" in result.stdout
    assert not any(tmp_path.glob("*/*.pid"))


def test_down_stops_everything_and_frees_the_ports_and_up_restores_it(stack: Settings, stack_env: dict[str, str], stack_cli: StackCli) -> None:
    topic_ids = kafka_topic_ids(stack)
    probe = f"{stack.lake_bucket}/restart-probe"
    with lake(stack).open_output_stream(probe) as out:
        out.write(b"kept")
    pids = [pid for per_service in all_pids(stack).values() for pid in per_service.values() if pid is not None]

    result = stack_cli(stack_env, "down")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [pid for pid in pids if pid_alive(pid)]
    assert [p.number for s in select(stack) for p in s.ports() if not port_free(p.number)] == []
    assert stack_cli(stack_env, "status").returncode == 1
    again = stack_cli(stack_env, "down")
    assert again.returncode == 0 and again.stdout.count("not running") == len(NAMES)

    # later tests of the session share this stack: bring it back, with its data kept
    result = stack_cli(stack_env, "up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(row.running and row.healthy for row in status(stack))
    assert {name: kafka_topic_ids(stack)[name] for name in topic_ids} == topic_ids  # not re-created
    with lake(stack).open_input_stream(probe) as f:
        assert f.read() == b"kept"
