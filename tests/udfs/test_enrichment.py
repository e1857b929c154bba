"""The Flink adapters on a local mini-cluster against the real Prometheus: a thread-mode Python map, then the
AsyncFunction added in process mode (udfs.enrichment.add_enrichment), in one job; and the lifecycle
KeyedProcessFunction with event-time timers. Each record notes the pid its Python operator ran in, so the test
checks that the map really ran embedded in the JVM (thread mode) and the async operator in a worker process."""

from __future__ import annotations

import sys
import time
from typing import Any

from pyflink.common import Configuration, Row, Types, WatermarkStrategy
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway

import schemas
from pipeline.enrichment import OK, PARTIAL, EnrichmentConfig
from pipeline.lifecycle import fact_version
from tests.support.fixtures_prometheus import BASE_S, NODES, PrometheusHistory, prometheus_history  # noqa: F401
from tests.pipeline.test_enrichment import expected
from tests.support.enrichment_flink_job import EventTime, NotePid, mark_map_pid, task_id
from tests.pipeline.test_lifecycle import CFG, feed, retried_lifecycle
from udfs.enrichment import add_enrichment
from udfs.lifecycle import FACT_NAMES, FACT_ROW_TYPE, LifecycleJoin, to_fact, to_row

N_FACTS = 1000


def fake_facts() -> list[Row]:
    """Finished attempts of 1 to 20 minutes spread over the loaded history and nodes."""
    rows = []
    for i in range(N_FACTS):
        node = NODES[i % len(NODES)]
        start = (BASE_S + 60 + (i * 37) % 5400) * 1000 + i % 1000
        end = start + 60_000 + (i * 7919) % 1_140_000
        fact = {name: None for name in FACT_NAMES}
        fact.update(task_id=f"task-{i:05d}", attempt=1, status="finished", host_name=node.name, started_at=start,
                    finished_at=end, enrichment_status="pending", job_version="", error_message="",
                    version=fact_version(1))
        rows.append(to_row(fact))
    return rows


def environment(mode: str) -> StreamExecutionEnvironment:
    conf = Configuration()
    conf.set_string("python.execution-mode", mode)
    conf.set_string("python.executable", sys.executable)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_parallelism(1)
    return env


def run_enrichment_job(url: str, mode: str) -> tuple[list[dict[str, Any]], float]:
    env = environment(mode)
    facts = env.from_collection(fake_facts(), type_info=FACT_ROW_TYPE)
    marked = facts.map(mark_map_pid, output_type=FACT_ROW_TYPE)
    enriched = add_enrichment(marked, NotePid(EnrichmentConfig(prometheus_url=url)), timeout_s=60)
    began = time.monotonic()
    out = [to_fact(r) for r in enriched.execute_and_collect("enrichment-experiment")]
    return out, time.monotonic() - began


def check(out: list[dict[str, Any]]) -> set[str]:
    assert len(out) == N_FACTS and len({f["task_id"] for f in out}) == N_FACTS
    nodes = {n.name: n for n in NODES}
    for f in out:
        node = nodes[f["host_name"]]
        assert f["enrichment_status"] == (OK if node.gpu_util else PARTIAL)
        assert f["version"] == fact_version(1, enriched=True)
        want = expected(node, f["started_at"], f["finished_at"])
        for key, value in want.items():
            assert (f[key] is None) if value is None else abs(f[key] - value) <= 0.01 * abs(value) + 1e-9, key
    return {f["job_version"] for f in out} | {f["error_message"] for f in out}


def test_thread_mode_job_with_a_process_mode_async_operator(prometheus_history: PrometheusHistory) -> None:
    out, seconds = run_enrichment_job(prometheus_history.url, "thread")
    pids = check(out)
    jvm_pid = get_gateway().jvm.ProcessHandle.current().pid()
    map_pids = {p for p in pids if p.startswith("map-pid=")}
    async_pids = {p for p in pids if p.startswith("async-pid=")}
    assert map_pids == {f"map-pid={jvm_pid}"}  # thread mode: the map ran embedded in the JVM
    assert len(async_pids) == 1 and async_pids != {f"async-pid={jvm_pid}"}  # a separate Python worker
    print(f"\nmixed job (thread map + process async): {N_FACTS} facts in {seconds:.1f} s")


def test_whole_job_in_process_mode(prometheus_history: PrometheusHistory) -> None:
    out, seconds = run_enrichment_job(prometheus_history.url, "process")
    pids = check(out)
    assert f"map-pid={get_gateway().jvm.ProcessHandle.current().pid()}" not in pids
    print(f"\nprocess-mode job: {N_FACTS} facts in {seconds:.1f} s")


def test_lifecycle_join_in_thread_mode() -> None:
    events = retried_lifecycle()
    lines = [schemas.to_json(e).decode() for e in events]
    env = environment("thread")
    stream = (env.from_collection(lines, type_info=Types.STRING())
              .assign_timestamps_and_watermarks(WatermarkStrategy.for_monotonous_timestamps()
                                                .with_timestamp_assigner(EventTime()))
              .key_by(task_id, key_type=Types.STRING())
              .process(LifecycleJoin(CFG), output_type=FACT_ROW_TYPE))
    got = sorted((to_fact(r) for r in stream.execute_and_collect("lifecycle")), key=lambda f: f["attempt"])
    assert got == feed(events)[0]
