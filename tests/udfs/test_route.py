"""The Route adapter (udfs/route.py) around pipeline.routing, driven directly with a stand-in for Flink's
context and metric group (what a ProcessFunction sees: the element's timestamp, the watermark, counters), so its
own logic is checked record by record: the row shapes, the lanes, the counters it hands to Flink when the
watermark moves, and that no record's failure escapes it. The real operator runs in tests/test_job*.py."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from schemas.examples import example
from pipeline import routing
from udfs.route import DLQ_TAG, TASK_TAG, Route

TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


class Counter:
    def __init__(self) -> None:
        self.count = 0

    def inc(self, n: int = 1) -> None:
        self.count += n


class Metrics:
    """Flink's metric group as Route uses it: counters and one sub-group."""

    def __init__(self) -> None:
        self.counters: dict[str, Counter] = {}
        self.groups: dict[str, Metrics] = {}

    def counter(self, name: str) -> Counter:
        return self.counters.setdefault(name, Counter())

    def add_group(self, name: str) -> Metrics:
        return self.groups.setdefault(name, Metrics())


class Context:
    """A ProcessFunction.Context: the element's timestamp and the watermark."""

    def __init__(self, timestamp: int, watermark: int) -> None:
        self._timestamp, self._watermark = timestamp, watermark

    def timestamp(self) -> int:
        return self._timestamp

    def timer_service(self) -> Context:
        return self

    def current_watermark(self) -> int:
        return self._watermark


class RuntimeContext:
    def __init__(self) -> None:
        self.metrics = Metrics()

    def get_metrics_group(self) -> Metrics:
        return self.metrics


def opened() -> tuple[Route, Metrics]:
    route = Route("test", allowed_lateness_ms=600_000, slice_ms=1000, max_clock_skew_ms=300_000)
    runtime = RuntimeContext()
    route.open(runtime)
    return route, runtime.metrics


def run(route: Route, topic: str, payload: bytes | None, ts: int = TS, watermark: int = TS - 5000,
        offset: int = 7) -> list[Any]:
    return list(route.process_element((topic, 2, offset, payload), Context(ts, watermark)))


def record(family: str, **overrides: Any) -> bytes:
    return json.dumps(example(family, ts="2026-01-01T00:00:00.000Z", **overrides)).encode()


def test_a_valid_record_is_one_wide_row_in_routing_order_and_a_task_event_also_goes_to_the_join() -> None:
    route, _ = opened()
    [row] = run(route, "telemetry.events.v1", record("llm_request"))
    assert len(row) == len(routing.ROW_NAMES) and row[routing.ROW_NAMES.index("lane")] == routing.ON_TIME
    assert dict(zip(routing.ROW_NAMES, row))["requests"] == 1
    outputs = run(route, "xumi_task", record("xumi_task"), offset=41)
    (tag, task), main = outputs
    assert tag == TASK_TAG and main[routing.ROW_NAMES.index("topic")] == "xumi_task"
    assert (task[0], *task[2:]) == (example("xumi_task")["task_id"], False, "xumi_task", 2, 41, TS)


def test_counters_are_handed_to_flink_when_the_watermark_moves() -> None:
    route, metrics = opened()
    for _ in range(3):
        run(route, "telemetry.events.v1", record("llm_request"), watermark=TS - 5000)
    run(route, "telemetry.events.v1", b"not json", watermark=TS - 5000)
    # the first record saw a new watermark and flushed nothing yet; the rest are pending
    assert (metrics.counters["events_in"].count, metrics.counters["events_valid"].count) == (0, 0)
    assert metrics.counters["events_dlq"].count == 1  # rejections are counted at once
    run(route, "telemetry.events.v1", record("llm_request"), watermark=TS - 4000)
    assert (metrics.counters["events_in"].count, metrics.counters["events_valid"].count) == (4, 3)


@pytest.mark.parametrize("failure", [KeyError("attempt"), OverflowError("int too large"), RecursionError()])
def test_a_record_whose_handling_raises_goes_to_the_dlq_and_the_next_one_goes_on(
        monkeypatch: pytest.MonkeyPatch, failure: Exception) -> None:
    route, metrics = opened()

    def broken(topic: str, raw: bytes | None) -> Any:
        raise failure

    with monkeypatch.context() as patched:
        patched.setattr(routing, "route", broken)
        [(tag, dlq)] = run(route, "telemetry.events.v1", record("llm_request"))
    assert tag == DLQ_TAG
    body = json.loads(dlq[2])
    assert body["reason"] == "internal_error" and body["message"].startswith(type(failure).__name__)
    assert (body["topic"], body["kafka_partition"], body["kafka_offset"]) == ("telemetry.events.v1", 2, 7)
    assert metrics.groups["dlq_reason"].counters["internal_error"].count == 1
    [row] = run(route, "telemetry.events.v1", record("llm_request"))  # the operator goes on
    assert row[routing.ROW_NAMES.index("requests")] == 1


def test_a_tombstone_is_a_dlq_record_not_a_crash() -> None:
    route, _ = opened()
    [(tag, dlq)] = run(route, "xumi_task", None)
    body = json.loads(dlq[2])
    assert (tag, body["reason"], body["payload_encoding"], body["payload"]) == (DLQ_TAG, "null_value", "null", "")


def test_a_record_stamped_a_day_ahead_is_refused_and_counted_now() -> None:
    route, _ = opened()
    now = int(time.time() * 1000)
    ahead = now + 86_400_000
    raw = json.dumps(example("llm_request", ts=ahead)).encode()
    [(tag, dlq)] = run(route, "telemetry.events.v1", raw, ts=ahead, watermark=now - 5000)
    assert json.loads(dlq[2])["reason"] == "future_timestamp"
    # its ingest row lands in the window of the job's clock, not a day ahead where no dashboard looks yet
    assert abs(dlq[1] - routing.window_start(now)) <= routing.WINDOW_MS
