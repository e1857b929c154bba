"""The lifecycle join's Flink adapter (udfs/lifecycle.py), driven directly with stand-ins for its ValueState, timer
service and metric group: an event the join fails on goes to the DLQ as the record it came in, the task's state
stays as it was, and a state that fails at its timer goes to the DLQ whole instead of failing every timer after
it. The real operator runs in tests/test_job*.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.examples import example
from pipeline.lifecycle import LifecycleConfig
from udfs import lifecycle as adapter
from udfs.lifecycle import JOIN_DLQ_TAG, STATE_TOPIC, LifecycleJoin

TS = 1_767_225_600_000


class State:
    def __init__(self) -> None:
        self.stored: str | None = None

    def value(self) -> str | None:
        return self.stored

    def update(self, value: str) -> None:
        self.stored = value

    def clear(self) -> None:
        self.stored = None


class Counter:
    count = 0

    def inc(self, n: int = 1) -> None:
        self.count += n


class Metrics:
    def __init__(self) -> None:
        self.counter_ = Counter()

    def add_group(self, name: str) -> Metrics:
        return self

    def counter(self, name: str) -> Counter:
        return self.counter_


class Runtime:
    def __init__(self) -> None:
        self.state, self.metrics = State(), Metrics()

    def get_state(self, descriptor: Any) -> State:
        return self.state

    def get_metrics_group(self) -> Metrics:
        return self.metrics


class Context:
    def __init__(self, key: str, watermark: int = TS) -> None:
        self.key, self.watermark, self.timers = key, watermark, []

    def timer_service(self) -> Context:
        return self

    def current_watermark(self) -> int:
        return self.watermark

    def register_event_time_timer(self, when: int) -> None:
        self.timers.append(when)

    def get_current_key(self) -> str:
        return self.key


def opened() -> tuple[LifecycleJoin, Runtime]:
    join = LifecycleJoin(LifecycleConfig(job_version="test"))
    runtime = Runtime()
    join.open(runtime)
    return join, runtime


def task_row(**overrides: Any) -> tuple[Any, ...]:
    event = example("xumi_task", ts="2026-01-01T00:00:00.000Z", **overrides)
    return (event["task_id"], json.dumps(event), False, "xumi_task", 3, 1234, TS)


def test_an_event_the_join_fails_on_goes_to_the_dlq_and_the_state_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    join, runtime = opened()
    assert list(join.process_element(task_row(), Context("t_0001"))) == []  # queued: state kept, nothing due yet
    before = runtime.state.stored
    assert before is not None

    def broken(*args: Any) -> Any:
        raise ValueError("boom")

    monkeypatch.setattr(adapter, "step", broken)
    [(tag, row)] = list(join.process_element(task_row(event_name="xumi.task.started"), Context("t_0001")))
    body = json.loads(row[2])
    assert tag == JOIN_DLQ_TAG and body["reason"] == "internal_error" and body["message"] == "ValueError: boom"
    assert (body["topic"], body["kafka_partition"], body["kafka_offset"]) == ("xumi_task", 3, 1234)
    assert json.loads(body["payload"])["event_name"] == "xumi.task.started"
    assert runtime.state.stored == before and runtime.metrics.counter_.count == 1


def test_a_state_that_fails_at_its_timer_goes_to_the_dlq_whole_and_is_dropped() -> None:
    join, runtime = opened()
    runtime.state.stored = '{"attempts": "not what the join wrote"}'
    [(tag, row)] = list(join.on_timer(TS + 60_000, Context("t_broken")))
    body = json.loads(row[2])
    assert tag == JOIN_DLQ_TAG and body["reason"] == "internal_error"
    assert (body["topic"], body["kafka_offset"]) == (STATE_TOPIC, adapter.state_offset("t_broken", TS + 60_000))
    assert body["payload"] == '{"attempts": "not what the join wrote"}'
    assert runtime.state.stored is None and runtime.metrics.counter_.count == 1
    assert list(join.on_timer(TS + 120_000, Context("t_broken"))) == []  # nothing left to fail again
