"""One run of the streaming job per test session, shared by the job's tests and the Grafana dashboard tests: the
simulator into the test broker, the job on a mini-cluster (lake on MinIO, Prometheus serving known node history),
and its output loaded into a migrated ClickHouse database. Registered by tests/conftest.py (`pytest_plugins`).
"""

from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest

from telemetry import settings
from dev.simulator.config import SimConfig
from dev.simulator.rand import Rand
from dev.simulator.world import build_world
from dev.stack.minio import MinIO
from tests.support.fixtures_prometheus import Node, serve_history
from telemetry.topics import DLQ_TOPIC, LOADER_TOPICS, USAGE_TOPIC
from tests.support.job_runs import drain, loaded_clickhouse, reset_topics, run_job, simulate

SEED = 5
SIM_START = "2026-01-01T00:10:00Z"  # inside the history the job's Prometheus serves (BASE_S - 15 min .. BASE_S + 2 h)


def simulated_nodes(seed: int) -> tuple[Node, ...]:
    """Known series for every node of the simulator's world: each its own GPU load, CPU idle share and RAM."""
    world = build_world(SimConfig(seed=seed), Rand(f"world:{seed}"))
    return tuple(
        Node(n.host_name, gpu_util=tuple(10.0 + 8.0 * ((i + g) % 11) for g in range(n.vm.gpus)),
             gpu_fb_mib=tuple(2000.0 + 500.0 * g for g in range(n.vm.gpus)), cpus=n.vm.vcpus,
             idle_per_cpu=0.1 + 0.07 * (i % 12), mem_available=(48e9 - 1e9 * (i % 20), 30e9))
        for i, n in enumerate(world.nodes))


# What the job writes, read back right after its run: tests in this session reset or write to the catalogue topics.
OUTPUT_TOPICS = (DLQ_TOPIC, USAGE_TOPIC, *LOADER_TOPICS)


@pytest.fixture(scope="session")
def job_run(kafka_url: str, minio_url: str, clickhouse_server: str, stack_env: dict[str, str],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The job's run over SEED's 20k events (with Workflow-only tasks, starts delivered after their end and credits
    near the maximum): its ground truth, lake URI, nodes, the S3 filesystem, the records it committed to each output
    topic (outputs; telemetry.usage.v1 as (key, value) pairs), read at once, and (clickhouse) a client and database
    the loader filled from them. Other tests may reset or write to the catalogue topics afterwards: nothing here
    reads them again."""
    work = tmp_path_factory.mktemp("job")
    reset_topics(stack_env)
    # 20 s of event time (--rate 1000): long enough for the watermark to pass an attempt's end before its start,
    # delivered 8 s late, comes (a correction); credits near the contract's maximum put totals around 1e14.
    truth = simulate(stack_env, work / "truth.json", "--seed", str(SEED), "--events", "20000", "--rate", "1000",
                     "--start", SIM_START, "--credits-near-max")
    lake = f"s3://{settings.load(stack_env).lake_bucket}/job-{uuid.uuid4().hex[:8]}"
    nodes = simulated_nodes(SEED)
    (work / "prometheus").mkdir()
    with serve_history(work / "prometheus", nodes) as prometheus:
        run_job(stack_env, work, "--lake-uri", lake, "--prometheus-url", prometheus.url)
    outputs = {topic: drain(kafka_url, topic, with_keys=topic == USAGE_TOPIC) for topic in OUTPUT_TOPICS}
    with loaded_clickhouse(stack_env, clickhouse_server) as loaded:
        yield {"truth": truth, "lake": lake, "nodes": {n.name: n for n in nodes}, "outputs": outputs,
               "s3": MinIO(settings.load(stack_env)).filesystem(), "clickhouse": loaded}


@pytest.fixture(scope="session")
def clickhouse_loaded(job_run: dict[str, Any]) -> tuple[Any, str]:
    """(client, database): the job run's rows loaded by the loader into a database with every migration applied."""
    return job_run["clickhouse"]
