"""The lifecycle join's corrections through the real job, in real time: heartbeats move event time, and each task's
events are produced in the order and at the moments that make the case, then the loader puts the output into
ClickHouse:

- A: its end is reported without a start; the start, produced after that and within the allowed lateness, revises
  the fact and corrects usage (the issue's "start that arrives after its attempt's end");
- B: only the Workflow service reports it: a fact of its own (attempt 1), counted in usage;
- C: orphaned, then its finish comes past the allowed lateness: the fact gets its real status with late = 1,
  usage counts no task for it, and the finish is in late_events;
- D: reported from the Workflow view first, then its XUMI events come, in time: the fact becomes theirs, and
  usage moves from the Workflow row (no model) to the model's, a negative delta in a signed column.
A bounded run of a backlog cannot make these: it reads each small partition whole in one fetch."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

import schemas
from schemas import WkfTaskEvent, XumiTaskEvent
from tests.support.job_runs import JOB_TIMEOUT_S, decoded, live_job, loaded_clickhouse, reset_topics
from tests.jobs.test_heartbeats import Reader, end_offsets
from tests.jobs.test_recovery import committed, group_of
from telemetry import topics

pytestmark = pytest.mark.stack
ALLOWED_LATENESS_MS = 15_000
ORPHAN_TIMEOUT_MS = 6_000
TENANT = f"tenant-lifecycle-{uuid.uuid4().hex[:6]}"
TASKS_TOPIC = topics.clickhouse_topic("task_facts")
USAGE_TOPIC = topics.clickhouse_topic("usage_10s")


def envelope(task: str, ts: int) -> dict[str, Any]:
    return {"event_id": uuid.uuid4(), "ts": ts, "tenant_id": TENANT, "node_id": "node-1", "vm_type": "NV6",
            "host_name": "aks-node-1", "user_id": f"user-{task}", "project_id": "p1", "department_id": "d1"}


def xumi(task: str, name: str, ts: int, **extra: Any) -> tuple[str, int, bytes]:
    event = XumiTaskEvent(**envelope(task, ts), event_name=f"xumi.task.{name}", task_id=f"task-{task}", attempt=1,
                          model="base-7b", model_version="2026.01", input_bytes=100, **extra)
    return "xumi_task", ts, schemas.to_json(event)


def wkf(task: str, name: str, ts: int) -> tuple[str, int, bytes]:
    kind = {"started": "TaskStarted", "completed": "TaskCompleted"}[name]
    event = WkfTaskEvent(**{**envelope(task, ts), "node_id": "svc", "host_name": "workflow-svc"},
                         event_name=f"wkf.task.{name}", event_type=kind, task_id=f"task-{task}",
                         k8s_node="aks-node-7" if name == "started" else None)
    return "wkf_task", ts, schemas.to_json(event)


def produce(producer: Producer, *records: tuple[str, int, bytes]) -> None:
    for topic, ts, value in records:
        producer.produce(topic, value, key=json.loads(value)["task_id"].encode(), timestamp=ts)
    assert producer.flush(30) == 0


def checkpointed(bootstrap: str, group: str) -> bool:
    """The job's consumer group has committed a position: the job runs and has completed a checkpoint."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = [TopicPartition("wkf_task", p) for p in consumer.list_topics("wkf_task", timeout=10)
                      .topics["wkf_task"].partitions]
        return any(c.offset >= 0 for c in committed(consumer, partitions))
    finally:
        consumer.close()


def wait_for(what: str, check: Callable[[], bool], job: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not check():
        assert job.poll() is None, f"the job ended:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"


@pytest.fixture(scope="module")
def corrected(kafka_url: str, stack_env: dict[str, str], clickhouse_server: str, tmp_path_factory) -> Any:
    work = tmp_path_factory.mktemp("lifecycle")
    # Other tests' records stay out: a record stamped ahead of the clock (the hostile-input test sends some) would
    # be where the job starts reading its partition, and move that partition's event time ahead.
    reset_topics(stack_env)
    facts = Reader(kafka_url, TASKS_TOPIC, end_offsets(kafka_url, TASKS_TOPIC))
    deltas = Reader(kafka_url, USAGE_TOPIC, end_offsets(kafka_url, USAGE_TOPIC))
    producer = Producer({"bootstrap.servers": kafka_url})

    def revisions(task: str) -> list[dict[str, Any]]:
        return [f for f in facts.read(1) if f["task_id"] == f"task-{task}"]

    try:
        with live_job(stack_env, work, "--allowed-lateness-ms", str(ALLOWED_LATENESS_MS),
                      "--orphan-timeout-ms", str(ORPHAN_TIMEOUT_MS)) as (job, _):
            log = work / "job.log"
            # Live first: a checkpoint has committed the source's position (the heartbeats' records). Read as a
            # backlog, each small partition comes whole in one fetch, and event time would not follow the order
            # produced here.
            wait_for("the job's first checkpoint", lambda: not time.sleep(1) and checkpointed(kafka_url, group_of(work)),
                     job, log)
            t = int(time.time() * 1000)
            produce(producer, xumi("A", "queued", t), xumi("A", "finished", t + 300, output_bytes=5),
                    wkf("B", "started", t), wkf("B", "completed", t + 400),
                    xumi("C", "queued", t), xumi("C", "started", t + 50),
                    wkf("D", "started", t), wkf("D", "completed", t + 400))
            wait_for("A, B and D reported", lambda: all(revisions(x) for x in "ABD"), job, log)
            produce(producer, xumi("A", "started", t + 100),  # after its end was reported, within the lateness
                    xumi("D", "queued", t - 50), xumi("D", "started", t + 20),
                    xumi("D", "finished", t + 350, output_bytes=1))
            wait_for("A and D revised", lambda: all(len(revisions(x)) > 1 for x in "AD"), job, log)
            wait_for("C orphaned", lambda: bool(revisions("C")), job, log)
            closed = (t + 1000) - (t + 1000) % 10_000 + 10_000 + ALLOWED_LATENESS_MS + 2_000
            while time.time() * 1000 < closed:  # the finish's window closes for billing (heartbeats move event time)
                time.sleep(0.5)
            produce(producer, xumi("C", "finished", t + 1000, output_bytes=3))
            wait_for("C completed late", lambda: len(revisions("C")) > 1, job, log)
            time.sleep(3)  # the checkpoint that commits the last rows
        deltas.read(3)
    finally:
        facts.close()
        deltas.close()
    with loaded_clickhouse(stack_env, clickhouse_server) as (client, database):
        yield {"t": t, "revisions": facts.rows, "deltas": [r for r in deltas.rows if r.get("tenant_id") == TENANT],
               "client": client, "database": database}


def final(corrected: dict[str, Any]) -> dict[str, dict[str, Any]]:
    client, database = corrected["client"], corrected["database"]
    result = client.query(f"SELECT * FROM {database}.task_facts FINAL WHERE tenant_id = {{t:String}}",
                          parameters={"t": TENANT})
    return {row["task_id"][5:]: row for row in (dict(zip(result.column_names, r)) for r in result.result_rows)}


def usage(corrected: dict[str, Any]) -> dict[tuple[str, str], tuple[int, ...]]:
    """usage_10s task sums per (user, model) of this test's tenant."""
    client, database = corrected["client"], corrected["database"]
    rows = client.query(f"SELECT user_id, model, sum(tasks), sum(task_failures), sum(task_queue_ms_sum), "
                        f"sum(task_duration_ms_sum), sum(late_events) FROM {database}.usage_10s "
                        f"WHERE tenant_id = {{t:String}} GROUP BY user_id, model", parameters={"t": TENANT}).result_rows
    return {tuple(r[:2]): tuple(r[2:]) for r in rows}


def test_a_start_after_the_end_revises_the_fact_and_corrects_usage(corrected):
    a = final(corrected)["A"]
    t = corrected["t"]
    assert (a["status"], a["queue_ms"], a["total_ms"], a["late"]) == ("finished", 100, 300, 0)
    assert a["started_at"].timestamp() * 1000 == pytest.approx(t + 100)
    first = next(f for f in corrected["revisions"] if f["task_id"] == "task-A")
    assert first["started_at"] is None and first["queue_ms"] is None and a["version"] > first["version"]
    assert usage(corrected)[("user-A", "base-7b")] == (1, 0, 100, 300, 0)


def test_a_task_only_the_workflow_service_reported_is_a_counted_fact(corrected):
    b = final(corrected)["B"]
    assert (b["attempt"], b["status"], b["host_name"], b["base_model"], b["node_id"]) == (
        1, "finished", "aks-node-7", "", "")
    assert (b["finished_at"] - b["started_at"]).total_seconds() == pytest.approx(0.4)
    assert usage(corrected)[("user-B", "")] == (1, 0, 0, 0, 0)


def test_a_finish_past_the_allowed_lateness_gives_the_orphan_its_status_and_leaves_usage_alone(corrected):
    c = final(corrected)["C"]
    assert (c["status"], c["late"], c["queue_ms"], c["total_ms"]) == ("finished", 1, 50, 1000)
    orphan = next(f for f in corrected["revisions"] if f["task_id"] == "task-C")
    assert orphan["status"] == "orphaned"
    # no task counted for C; its late finish is counted as a late event, and kept whole in late_events
    assert usage(corrected).get(("user-C", "base-7b"), (0, 0, 0, 0, 0))[:4] == (0, 0, 0, 0)
    assert sum(v[4] for k, v in usage(corrected).items() if k[0] == "user-C") == 1
    client, database = corrected["client"], corrected["database"]
    late = client.query(f"SELECT payload FROM {database}.late_events WHERE tenant_id = {{t:String}}",
                        parameters={"t": TENANT}).result_rows
    assert [decoded(p.encode())["event_name"] for (p,) in late] == ["xumi.task.finished"]


def test_xumi_events_after_the_workflow_fact_move_its_usage_with_a_negative_delta(corrected):
    d = final(corrected)["D"]
    assert (d["status"], d["base_model"], d["queue_ms"], d["total_ms"], d["host_name"]) == (
        "finished", "base-7b", 70, 400, "aks-node-1")
    sums = usage(corrected)
    assert sums[("user-D", "")] == (0, 0, 0, 0, 0)  # the Workflow row, taken back
    assert sums[("user-D", "base-7b")] == (1, 0, 70, 400, 0)
    # the ledger took the Workflow row back with a delta of its own (ClickHouse has since merged it into a zero)
    taken_back = [r for r in corrected["deltas"]
                  if r["user_id"] == "user-D" and r["model"] == "" and r.get("tasks", 0) < 0]
    assert [r["tasks"] for r in taken_back] == [-1]
