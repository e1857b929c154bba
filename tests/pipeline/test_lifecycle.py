"""The lifecycle join (pipeline.lifecycle): order independence, duplicates, retries, failures, orphans, bounded
state, and exact agreement with the simulator's ground truth."""

from __future__ import annotations

import base64
import json
import random
import re
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from schemas import WkfTaskEvent, XumiLoadEvent, XumiTaskEvent
from pipeline import lifecycle
from pipeline.lifecycle import FACT_COLUMNS, JAVA_LONG_MAX, LifecycleConfig, TaskState, expire, step
from telemetry.settings import REPO_ROOT

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
TASK = "task-0123456789abcdef"
CFG = LifecycleConfig(orphan_timeout_ms=60_000, tombstone_ms=30_000, job_version="test")
ENV = {"tenant_id": "t1", "department_id": "d1", "project_id": "p1", "user_id": "u1", "node_id": "n1",
       "vm_type": "NC24", "host_name": "aks-node-1"}
_ids = random.Random(3)


def _id() -> uuid.UUID:
    return uuid.UUID(int=_ids.getrandbits(128), version=4)


def task(name: str, ts: int, attempt: int, **extra: Any) -> XumiTaskEvent:
    return XumiTaskEvent(event_id=_id(), event_name=f"xumi.task.{name}", ts=ts, task_id=TASK, attempt=attempt,
                         model="base-7b", model_version="2026.01", checkpoint_id="ck1", checkpoint_version="1.0",
                         input_bytes=1000, **ENV, **extra)


def load(kind: str, ts: int, attempt: int, duration: int | None = None) -> XumiLoadEvent:
    finish = {"duration_ms": duration, "cache_hit": False} if duration is not None else {}
    return XumiLoadEvent(event_id=_id(), event_name=f"xumi.{kind}.load.{'finish' if finish else 'start'}", ts=ts,
                         task_id=TASK, base_model="base-7b", checkpoint_id="ck1" if kind == "checkpoint" else "base-7b",
                         checkpoint_version="1.0", storage_type="nfs", bytes=10**9,
                         labels={"attempt": str(attempt), "model_version": "2026.01"}, **ENV, **finish)


def wkf(name: str, ts: int) -> WkfTaskEvent:
    etype = {"started": "TaskStarted", "completed": "TaskCompleted", "failed": "TaskFailed"}[name]
    return WkfTaskEvent(event_id=_id(), event_name=f"wkf.task.{name}", event_type=etype, ts=ts, task_id=TASK,
                        k8s_node="aks-node-1" if name == "started" else None,
                        **{**ENV, "node_id": "svc", "host_name": "svc-host"})


def retried_lifecycle() -> list[Any]:
    """Attempt 1 fails in inference; attempt 2 (after backoff) finishes. Times in ms after T0."""
    return [
        task("queued", T0, 1), task("started", T0 + 100, 1), wkf("started", T0 + 110),
        load("weights", T0 + 120, 1), load("weights", T0 + 320, 1, duration=200),
        load("checkpoint", T0 + 330, 1), load("checkpoint", T0 + 380, 1, duration=50),
        task("initialized", T0 + 500, 1),
        task("failed", T0 + 900, 1, error_type="cuda_oom", error_message="CUDA out of memory"),
        task("queued", T0 + 2_000, 2), task("started", T0 + 2_050, 2),
        load("weights", T0 + 2_060, 2), load("weights", T0 + 2_070, 2, duration=10),
        task("initialized", T0 + 2_200, 2), task("finished", T0 + 3_000, 2, output_bytes=4242),
        wkf("completed", T0 + 3_100),
    ]


def feed(events: list[Any], now: int = -JAVA_LONG_MAX, cfg: LifecycleConfig = CFG,
         roundtrip: bool = True) -> tuple[list[dict[str, Any]], TaskState | None]:
    """All events at a fixed watermark, then the final watermark; the state goes through bytes each step."""
    state, facts = None, []
    for e in events:
        state, out, _ = step(state, e, now, cfg)
        facts += out
        if roundtrip and state is not None:
            state = TaskState.from_bytes(state.to_bytes())
    state, out, _ = expire(state, JAVA_LONG_MAX, TASK, cfg)
    return facts + out, state


def by_attempt(facts: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    assert len({f["attempt"] for f in facts}) == len(facts), "one fact per attempt"
    return {f["attempt"]: f for f in facts}


def test_fact_has_exactly_task_facts_columns() -> None:
    sql = (REPO_ROOT / "sql" / "clickhouse" / "migrations" / "0002_task_facts.sql").read_text()
    body = sql[sql.index("(") + 1: sql.index("INDEX")]
    columns = re.findall(r"^\s{4}(\w+)\s", body, flags=re.M)
    assert [name for name, _ in FACT_COLUMNS] + ["ingested_at"] == columns
    facts, _ = feed(retried_lifecycle())
    for f in facts:
        assert list(f) == [name for name, _ in FACT_COLUMNS]
        for name, kind in FACT_COLUMNS:
            assert f[name] is None or isinstance(f[name], kind), name


def test_retried_lifecycle_facts() -> None:
    facts = by_attempt(feed(retried_lifecycle())[0])
    f1, f2 = facts[1], facts[2]
    assert (f1["status"], f1["error_type"], f1["error_message"]) == ("failed", "cuda_oom", "CUDA out of memory")
    assert (f1["queue_ms"], f1["checkpoint_load_ms"], f1["init_ms"], f1["inference_ms"], f1["total_ms"]) == \
        (100, 250, 150, 400, 900)
    assert (f1["queued_at"], f1["started_at"], f1["finished_at"], f1["output_bytes"]) == (T0, T0 + 100, T0 + 900, 0)
    assert (f2["status"], f2["error_type"], f2["output_bytes"]) == ("finished", "", 4242)
    assert (f2["queue_ms"], f2["checkpoint_load_ms"], f2["init_ms"], f2["inference_ms"], f2["total_ms"]) == \
        (50, 10, 140, 800, 1000)
    assert {k: f2[k] for k in ENV} == ENV  # the attempt's own node, not the Workflow service's
    assert (f2["base_model"], f2["model_version"], f2["checkpoint_id"], f2["checkpoint_version"]) == \
        ("base-7b", "2026.01", "ck1", "1.0")
    assert (f2["enrichment_status"], f2["gpu_util_avg"], f2["job_version"]) == ("pending", None, "test")
    assert f2["version"] > f1["version"] > 0


def test_every_order_gives_the_same_facts() -> None:
    events = retried_lifecycle()
    expected = feed(events)[0]
    rng = random.Random(11)
    orders = [list(reversed(events))] + [rng.sample(events, len(events)) for _ in range(300)]
    for order in orders:
        assert feed(order)[0] == expected
    # and in event-time order with the watermark advancing per event (facts emitted mid-stream)
    state, streamed = None, []
    for e in sorted(events, key=lambda e: e.ts):
        state, out, _ = step(state, e, lifecycle._view(e)["ts"], CFG)
        streamed += out
    assert streamed + expire(state, JAVA_LONG_MAX, TASK, CFG)[1] == expected


def test_dicts_and_models_give_the_same_facts() -> None:
    events = retried_lifecycle()
    assert feed([schemas.to_dict(e) for e in events])[0] == feed(events)[0]


def test_duplicates_are_counted_once_even_after_the_fact() -> None:
    events = retried_lifecycle()
    expected = feed(events)[0]
    rng = random.Random(5)
    doubled = rng.sample(events + events, 2 * len(events))
    assert feed(doubled)[0] == expected
    # a duplicate arriving after its attempt was reported (watermark past the end) is dropped by the tombstone
    state, facts = None, []
    for e in events:
        state, out, _ = step(state, e, T0 + 5_000, CFG)
        facts += out
    assert [f["attempt"] for f in facts] == [1, 2]
    for e in events:
        state, out, _ = step(state, e, T0 + 5_000, CFG)
        assert out == []
    assert facts == expected


def test_finish_before_start() -> None:
    events = retried_lifecycle()
    ends_first = sorted(events, key=lambda e: e.event_name not in ("xumi.task.finished", "xumi.task.failed"))
    assert feed(ends_first)[0] == feed(events)[0]


def test_failure_during_load() -> None:
    events = [task("queued", T0, 1), task("started", T0 + 10, 1), load("weights", T0 + 20, 1),
              load("weights", T0 + 70, 1, duration=50), load("checkpoint", T0 + 80, 1),
              task("failed", T0 + 95, 1, error_type="storage_timeout", error_message="read timed out")]
    (f,) = feed(events)[0]
    assert (f["status"], f["error_type"], f["error_message"]) == ("failed", "storage_timeout", "read timed out")
    assert (f["queue_ms"], f["checkpoint_load_ms"], f["init_ms"], f["inference_ms"], f["total_ms"]) == \
        (10, 50, None, None, 95)


def test_orphan_after_timeout_in_event_time() -> None:
    events = [task("queued", T0, 1), task("started", T0 + 10, 1), load("weights", T0 + 40, 1, duration=20),
              task("initialized", T0 + 90, 1)]
    state, timer = None, None
    for e in events:
        state, out, timer = step(state, e, T0 + 100, CFG)
        assert out == []
    assert timer == T0 + 90 + CFG.orphan_timeout_ms
    state, out, timer = expire(state, timer - 1, TASK, CFG)
    assert out == [] and timer == T0 + 90 + CFG.orphan_timeout_ms
    state, (f,), timer = expire(state, timer, TASK, CFG)
    assert (f["status"], f["finished_at"], f["init_ms"], f["inference_ms"], f["total_ms"]) == \
        ("orphaned", T0 + 90, 60, None, None)
    assert f["version"] < lifecycle.fact_version(T0 + 90, "failed")
    # the late end of an orphaned attempt, within the tombstone, does not make a second fact
    state, out, _ = step(state, task("finished", T0 + 200, 1, output_bytes=1), timer + 1, CFG)
    assert out == []
    assert expire(state, JAVA_LONG_MAX, TASK, CFG) == (None, [], None)


def test_state_is_dropped_after_tombstones_and_stays_small() -> None:
    events = retried_lifecycle()
    state, facts, timer = None, [], None
    for e in events:
        state, out, timer = step(state, e, T0 + 3_100, CFG)
        facts += out
    assert len(facts) == 2 and state is not None and not state.attempts
    assert timer is not None
    while state is not None:  # timers as Flink would fire them
        assert timer is not None
        state, out, timer = expire(state, timer, TASK, CFG)
        assert out == []
    # many attempts and load spam: open state is capped per attempt, ended attempts shrink to a tombstone
    state = None
    for n in range(1, 101):
        for i in range(50):
            state, _, _ = step(state, load("weights", T0 + n * 1000 + i, n, duration=1), -JAVA_LONG_MAX, CFG)
        assert len(state.attempts[n].loads) == lifecycle.MAX_LOADS_PER_ATTEMPT
    state, _, _ = step(state, task("queued", T0, 1), -JAVA_LONG_MAX, CFG)
    assert len(state.to_bytes()) < 400_000
    long_tombstones = LifecycleConfig(tombstone_ms=10**7)
    for n in range(1, 101):
        state, _, _ = step(state, task("failed", T0 + n * 1000 + 60, n, error_type="x", error_message="y"),
                           T0 + 200_000, long_tombstones)
    assert state is not None and not state.attempts and len(state.ended) == 100
    assert len(state.to_bytes()) < 3_000


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("sim")
    cmd = [sys.executable, "-m", "dev.simulator", "--out", str(out / "x.jsonl"), "--truth", str(out / "t.json"),
           "--events", "20000", "--seed", "4", "--start", "2026-01-01T00:00:00Z", "--rate", "1000",
           "--orphan-share", "0.03"]
    subprocess.run(cmd, cwd=REPO_ROOT, check=True, capture_output=True, timeout=300)
    return out / "x.jsonl", json.loads((out / "t.json").read_text())


def test_facts_equal_the_simulator_truth(simulated: tuple[Path, dict[str, Any]]) -> None:
    path, truth = simulated
    seen, events = set(), []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["topic"] not in ("xumi_task", "xumi_load", "wkf_task"):
            continue
        raw = rec["value"] if "value" in rec else base64.b64decode(rec["value_b64"])
        result = schemas.validate(rec["topic"], raw)
        if result.ok and result.event.event_id not in seen:
            seen.add(result.event.event_id)
            events.append(result.event)
    facts = lifecycle.run(events, truth["meta"]["max_out_of_order_ms"], CFG)

    sums: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * 8)
    orphans = []
    for f in facts:
        if f["status"] == "orphaned":
            orphans.append([f["task_id"], f["attempt"], f["finished_at"]])
            continue
        end = f["finished_at"]
        key = (end - end % 10_000, f["tenant_id"], f["department_id"], f["project_id"], f["user_id"],
               f["base_model"], f["model_version"], f["checkpoint_id"], f["checkpoint_version"])
        row = sums[key]
        for i, v in enumerate((f["status"] == "finished", f["status"] == "failed", f["attempt"] > 1, f["queue_ms"],
                               f["checkpoint_load_ms"], f["init_ms"], f["inference_ms"], f["total_ms"])):
            row[i] += v or 0
    tasks = truth["tasks"]
    assert tasks["retried_attempts"] > 0 and tasks["failed"] > 0 and tasks["orphaned"] > 0  # the run exercises them
    assert truth["windows"]["tasks"]["metrics"] == ["tasks_finished", "tasks_failed", "task_retries",
                                                    "task_queue_ms_sum", "task_load_ms_sum", "task_init_ms_sum",
                                                    "task_inference_ms_sum", "task_total_ms_sum"]
    assert sorted([*k, *v] for k, v in sums.items()) == truth["windows"]["tasks"]["rows"]
    assert sorted(orphans) == tasks["orphans"]
    assert len(facts) == tasks["attempts"]


def test_expire_never_rearms_a_timer_that_is_already_due():
    """A Workflow event whose orphan horizon passed while a xumi attempt is still open must not ask for a timer
    at (or before) the time being expired: Flink would fire it again at once, forever."""
    from pipeline import lifecycle

    cfg = lifecycle.LifecycleConfig(orphan_timeout_ms=1_000)
    state = lifecycle.TaskState()
    state.wkf_last_ts = 0
    state.attempts[1] = lifecycle.Attempt(last_ts=5_000)
    _, _, timer = lifecycle.expire(state, 2_000, "t1", cfg)
    assert timer is not None and timer > 2_000


def load_labelled(attempt_label: str) -> XumiLoadEvent:
    return load("checkpoint", T0, 1, 250).model_copy(update={"labels": {"attempt": attempt_label, "model_version": "x"}})


@pytest.mark.parametrize("label", ["²", "١٢", "0", "101", "9" * 40, "-1", " 1", "1.0", "", "x"])
def test_a_load_naming_no_possible_attempt_is_left_out_of_the_join(label: str) -> None:
    """str.isdigit() took "²" and int() then raised, which put the job in a restart loop."""
    state, facts, _ = step(None, load_labelled(label), T0, CFG)
    assert facts == [] and (state is None or not state.attempts)


@settings(max_examples=300, deadline=None)
@given(label=st.text(max_size=128))
def test_any_attempt_label_the_schema_accepts_is_joined_or_ignored_never_raises(label: str) -> None:
    state, _, _ = step(None, load_labelled(label), T0, CFG)
    expected = int(label) if label.isascii() and label.isdigit() and 1 <= int(label) <= 100 else None
    assert (list(state.attempts) if state else []) == ([expected] if expected else [])
