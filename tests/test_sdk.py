"""The producer SDK (seed 004): events built and validated at emit time with automatic context, the jsonl and
sqlite backends read back, batching, the async client, clear errors for unreachable backends, and a real
Kafka round trip on the test stack's broker (tests/fixtures_stack.py).

kafka-rest runs against tests/rest_proxy_standin.py, a stand-in for the REST proxy's produce API, because no
REST proxy can run here (Confluent's kafka-rest is not on Maven Central and Strimzi's kafka-bridge does not
resolve from it); with the stack it forwards into the real broker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import sqlite3
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer

import schemas
from schemas import Reason, Valid
from telemetry import settings as settings_mod
from telemetry.sdk import (
    AsyncTelemetry,
    BackendUnavailable,
    DeliveryError,
    EventRefused,
    Telemetry,
    TelemetryError,
    read_jsonl,
)
from telemetry.sdk.context import SystemSampler, parse_nvidia_smi
from telemetry.settings import Settings
from tests.rest_proxy_standin import KafkaSink, MemorySink, RestProxyStandIn
from tests.polling import eventually

METRICS = "telemetry.metrics.v1"
ENV = {"NODE_ID": "3f9a2c71-8d4e-4b6a-a1c2-0e5f7d9b1a23", "TENANT_ID": "7b0c1f3e-2a44-4d51-9a0e-5d1f6c2b8e90",
       "VM_TYPE": "NV6", "HOST_NAME": "gpu-node-07"}
WHO = {"user_id": "u_123", "project_id": "p_42", "department_id": "d_research"}
TASK = {"task_id": "t_0001", "attempt": 1, "model": "xumi-base-7b", "model_version": "2026.02", "input_bytes": 10}


def config(**env: str) -> Settings:
    return settings_mod.load({**ENV, **env})


def client(tmp_path: Path, backend: str = "jsonl", **kwargs: Any) -> Telemetry:
    """A client on a file in tmp_path, flushing only on size or demand unless told otherwise."""
    suffix = {"jsonl": "jsonl", "sqlite": "db"}.get(backend, "")
    kwargs.setdefault("path", tmp_path / f"events.{suffix}" if suffix else None)
    kwargs.setdefault("flush_interval_s", None)
    kwargs.setdefault("settings", config())
    kwargs.setdefault("system_context", False)
    return Telemetry(system="xumi", component="inference", backend=backend, **{**WHO, **kwargs})


def seed_calls(t: Telemetry) -> list[schemas.Envelope]:
    """Seed 004's calls plus a lifecycle event of a closed family."""
    return [
        t.emit(metric="inference_latency", value=0.125, status="completed"),
        t.emit(metrics={"tokens_per_sec": 45.2, "gpu_util": 88}, status="completed"),
        t.emit(event="model_load_start", status="started"),
        t.emit(event="model_load_end", status="completed"),
        t.emit(event="xumi.task.started", **TASK),
    ]


def closed_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


# --- jsonl and sqlite round trips ----------------------------------------------------------------------------


def test_jsonl_round_trip_validates_every_record(tmp_path: Path) -> None:
    with client(tmp_path) as t:
        emitted = seed_calls(t)
    rows = list(read_jsonl(tmp_path / "events.jsonl"))
    assert [event["event_id"] for _, _, event in rows] == [str(e.event_id) for e in emitted]
    for (topic, key, event), original in zip(rows, emitted):
        result = schemas.validate(topic, json.dumps(event))
        assert isinstance(result, Valid), result
        assert result.event == original
        assert key == getattr(original, "task_id", original.user_id)  # task id, else user id
    assert [topic for topic, _, _ in rows] == [METRICS] * 4 + ["xumi_task"]
    names = [event["event_name"] for _, _, event in rows]
    assert names == ["xumi.inference.metric", "xumi.inference.metric", "xumi.inference.model_load_start",
                     "xumi.inference.model_load_end", "xumi.task.started"]
    first = rows[0][2]
    assert (first["metric"], first["value"], first["status"], first["metrics"]) == (
        "inference_latency", 0.125, "completed", {})
    assert rows[1][2]["metrics"] == {"tokens_per_sec": 45.2, "gpu_util": 88.0}


def test_sqlite_round_trip_is_queryable_and_keyed_by_event_id(tmp_path: Path) -> None:
    fixed_id = uuid.UUID(int=42)
    with client(tmp_path, "sqlite") as t:
        emitted = seed_calls(t)
        t.emit(metric="accuracy", value=0.92, event_id=fixed_id)
        t.flush()
        t.emit(metric="accuracy", value=0.5, event_id=fixed_id)  # a retry of the same event: kept once
    db = sqlite3.connect(tmp_path / "events.db")
    rows = db.execute("SELECT topic, event_id, ts, event_name, payload FROM events ORDER BY rowid").fetchall()
    assert len(rows) == len(emitted) + 1
    for topic, event_id, ts, event_name, payload in rows:
        result = schemas.validate(topic, payload)
        assert isinstance(result, Valid), result
        assert (str(result.event.event_id), schemas.format_ts(result.event.ts), result.event.event_name) == (
            event_id, ts, event_name)
    assert {r[1] for r in rows[:-1]} == {str(e.event_id) for e in emitted}
    value = db.execute("SELECT json_extract(payload, '$.value') FROM events WHERE event_id = ?",
                       (str(fixed_id),)).fetchone()
    assert value == (0.92,)
    per_name = dict(db.execute("SELECT event_name, count(*) FROM events GROUP BY event_name").fetchall())
    assert per_name["xumi.inference.metric"] == 3 and per_name["xumi.task.started"] == 1


def test_short_name_landing_on_a_family_name_builds_that_family(tmp_path: Path) -> None:
    with Telemetry(system="xumi", component="task", path=tmp_path / "e.jsonl", settings=config(),
                   flush_interval_s=None, **WHO) as t:
        event = t.emit(event="started", **TASK)
    assert isinstance(event, schemas.XumiTaskEvent) and event.event_name == "xumi.task.started"
    assert [topic for topic, _, _ in read_jsonl(tmp_path / "e.jsonl")] == ["xumi_task"]


# --- refusals --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "reason", "field"),
    [
        ({"metric": "inference_latency"}, Reason.INCONSISTENT, "value"),  # a metric needs its value
        ({}, Reason.INCONSISTENT, "metric"),  # nothing to say
        ({"metric": "latency", "value": float("nan")}, Reason.OUT_OF_RANGE, "value"),
        ({"metric": "latency", "value": 2.0**61}, Reason.OUT_OF_RANGE, "value"),
        ({"metric": "latency", "value": "fast"}, Reason.WRONG_TYPE, "value"),
        ({"metric": "m" * 65, "value": 1}, Reason.FIELD_TOO_LONG, "metric"),
        ({"metrics": {f"m{i}": 1 for i in range(33)}}, Reason.CARDINALITY, "metrics"),
        ({"event": "model_load_start", "status": "done"}, Reason.BAD_ENUM, "status"),
        ({"event": "Model Load"}, Reason.BAD_EVENT_NAME, "event_name"),
        ({"event": "xumi.task.start"}, Reason.UNKNOWN_EVENT_NAME, "event_name"),  # typo of a family's name
        ({"event": "pbac.access.granted.now.really"}, Reason.BAD_EVENT_NAME, "event_name"),
        ({"event": "xumi.task.started"}, Reason.MISSING_FIELD, "task_id"),
        ({"event": "xumi.task.started", **TASK, "attempt": 0}, Reason.OUT_OF_RANGE, "attempt"),
        ({"event": "xumi.task.started", **TASK, "error_type": "oom"}, Reason.INCONSISTENT, "error_type"),
        ({"event": "xumi.task.started", **TASK, "metric": "x", "value": 1}, Reason.UNKNOWN_FIELD, "metric"),
        ({"metric": "x", "value": 1, "prompt": "tell me a story"}, Reason.UNKNOWN_FIELD, "prompt"),
        ({"metric": "x", "value": 1, "ts": "2026-02-21T12:00:00"}, Reason.BAD_TIMESTAMP, "ts"),
        ({"metric": "x", "value": 1, "event_id": "not-a-uuid"}, Reason.BAD_UUID, "event_id"),
        ({"metric": "x", "value": 1, "user_id": ""}, Reason.MISSING_FIELD, "user_id"),
        ({"metric": "x", "value": 1, "labels": {f"k{i}": "v" for i in range(17)}}, Reason.CARDINALITY, "labels"),
    ],
)
def test_invalid_events_are_refused_with_the_reason_and_nothing_is_sent(
    tmp_path: Path, kwargs: dict[str, Any], reason: Reason, field: str
) -> None:
    with client(tmp_path) as t:
        with pytest.raises(EventRefused) as info:
            t.emit(**kwargs)
        assert (info.value.reason, info.value.field) == (reason, field), str(info.value)
        assert info.value.invalid.topic in {METRICS, "xumi_task"}
        assert isinstance(info.value, schemas.InvalidEventError)  # catchable as the contract's error
        assert t.buffered == 0
    assert lines(tmp_path / "events.jsonl") == 0


def test_missing_context_names_the_variable_or_argument(tmp_path: Path) -> None:
    no_tenant = settings_mod.load({"NODE_ID": "n1"})
    with Telemetry(path=tmp_path / "a.jsonl", settings=no_tenant, flush_interval_s=None, **WHO) as t:
        with pytest.raises(EventRefused, match="set TENANT_ID") as info:
            t.emit(metric="x", value=1)
    assert (info.value.reason, info.value.field) == (Reason.MISSING_FIELD, "tenant_id")
    with Telemetry(path=tmp_path / "b.jsonl", settings=config(), flush_interval_s=None) as t:
        with pytest.raises(EventRefused, match="pass user_id=") as info:
            t.emit(metric="x", value=1)
        assert info.value.field == "user_id"
        t.emit(metric="x", value=1, **WHO)  # per-event attribution works without a default


@pytest.mark.parametrize(("system", "component"), [("Xumi", "inference"), ("xumi", "my-service"), ("", "x")])
def test_system_and_component_follow_the_naming_rules(tmp_path: Path, system: str, component: str) -> None:
    with pytest.raises(ValueError, match="naming rules"):
        Telemetry(system=system, component=component, path=tmp_path / "x.jsonl", settings=config())


# --- automatic context -----------------------------------------------------------------------------------------


def test_context_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi: no GPUs reported
    with Telemetry(path=tmp_path / "e.jsonl", flush_interval_s=None, **WHO) as t:  # settings from os.environ
        event = t.emit(metric="x", value=1)
    assert (event.node_id, event.tenant_id, event.vm_type, event.host_name) == (
        ENV["NODE_ID"], ENV["TENANT_ID"], ENV["VM_TYPE"], ENV["HOST_NAME"])
    assert isinstance(event, schemas.SdkMetricEvent) and event.context is not None
    assert event.context.cpu_count == os.cpu_count() and event.context.gpus == []
    assert event.context.ram_total_bytes and 0 < event.context.ram_used_bytes <= event.context.ram_total_bytes
    assert 0 <= event.context.cpu_percent <= 100
    monkeypatch.delenv("HOST_NAME")
    monkeypatch.delenv("VM_TYPE")
    with Telemetry(path=tmp_path / "f.jsonl", flush_interval_s=None, system_context=False, **WHO) as t:
        event = t.emit(metric="x", value=1)
    assert (event.host_name, event.vm_type, event.context) == (socket.gethostname(), "", None)


def test_gpus_come_from_nvidia_smi_when_it_is_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """There is no GPU here: a script prints what `nvidia-smi --query-gpu=... --format=csv,noheader,nounits`
    prints on a two-GPU host, including the [N/A] a GPU without utilisation counters reports."""
    script = tmp_path / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--query-gpu=index,name,utilization.gpu,memory.used,memory.total*) ;; *) exit 9;; esac\n'
        "echo '0, NVIDIA A100-SXM4-80GB, 87, 58368, 81920'\n"
        "echo '1, NVIDIA A100-SXM4-80GB, [N/A], 0, 81920'\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path))
    with client(tmp_path, system_context=True) as t:
        event = t.emit(metric="gpu_util", value=87)
    assert event.context is not None
    assert [g.model_dump() for g in event.context.gpus] == [
        {"index": 0, "name": "NVIDIA A100-SXM4-80GB", "utilization_percent": 87.0,
         "memory_used_bytes": 58368 * 2**20, "memory_total_bytes": 81920 * 2**20},
        {"index": 1, "name": "NVIDIA A100-SXM4-80GB", "utilization_percent": None,
         "memory_used_bytes": 0, "memory_total_bytes": 81920 * 2**20},
    ]
    (_, _, written), = read_jsonl(tmp_path / "events.jsonl")
    assert isinstance(schemas.validate(METRICS, json.dumps(written)), Valid)


def test_a_gpu_line_that_is_not_valid_is_skipped_not_fatal() -> None:
    gpus = parse_nvidia_smi("0, A100, 50, 10, 20\n1, A100, 50, 30, 20\nNVIDIA-SMI has failed\n")
    assert [g["index"] for g in gpus] == [0]  # used > total on GPU 1: skipped, the event still goes out


def test_cpu_percent_covers_the_time_since_the_previous_sample(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text("MemTotal:  1000 kB\nMemFree:  100 kB\nMemAvailable:  400 kB\n")
    stat_file = tmp_path / "stat"
    now = [0.0]
    sampler = SystemSampler(interval_s=1.0, proc=tmp_path, nvidia_smi="", clock=lambda: now[0])
    # user nice system idle iowait irq softirq steal
    stat_file.write_text("cpu  300 0 100 550 50 0 0 0 0 0\ncpu0 1 1 1 1\n")
    first = sampler.sample()
    assert first["cpu_percent"] == 40.0  # since boot: busy 400 of 1000
    assert (first["ram_used_bytes"], first["ram_total_bytes"]) == (600 * 1024, 1000 * 1024)
    stat_file.write_text("cpu  390 0 100 560 50 0 0 0 0 0\n")
    now[0] = 0.5
    assert sampler.sample() is first  # cached within the interval
    now[0] = 1.0
    assert sampler.sample()["cpu_percent"] == 90.0  # +90 busy of +100 since the previous reading


# --- batching, flush, close ------------------------------------------------------------------------------------


def test_batches_are_written_by_size_and_on_flush(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    t = client(tmp_path, batch_size=3)
    t.emit(metric="a", value=1)
    t.emit(metric="a", value=2)
    assert (lines(path), t.buffered) == (0, 2)
    t.emit(metric="a", value=3)
    assert (lines(path), t.buffered) == (3, 0)
    t.emit(metric="a", value=4)
    assert (lines(path), t.buffered) == (3, 1)
    t.flush()
    assert (lines(path), t.buffered) == (4, 0)
    t.emit(metric="a", value=5)
    t.close()
    assert lines(path) == 5
    assert [e["value"] for _, _, e in read_jsonl(path)] == [1, 2, 3, 4, 5]
    t.close()  # idempotent
    with pytest.raises(TelemetryError, match="closed"):
        t.emit(metric="a", value=6)


def test_the_interval_flushes_without_a_call(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with client(tmp_path, batch_size=1000, flush_interval_s=0.05) as t:
        t.emit(metric="a", value=1)
        eventually(lambda: lines(path) == 1, "the flusher thread writes the buffered event")
        assert t.buffered == 0


def test_a_failed_batch_is_handed_back_not_dropped(tmp_path: Path) -> None:
    with RestProxyStandIn(MemorySink([METRICS, "xumi_task"], fail_keys={"t_bad"})) as proxy:
        with client(tmp_path, "kafka-rest", url=proxy.url, batch_size=10) as t:
            ok = t.emit(event="xumi.task.started", **TASK)
            bad = t.emit(event="xumi.task.started", **{**TASK, "task_id": "t_bad"})
            with pytest.raises(DeliveryError, match="injected: record rejected") as info:
                t.flush()
            assert [r.event_id for r, _ in info.value.failures] == [str(bad.event_id)]
            assert info.value.failures[0][0].event == bad
            t.flush()  # reported once; nothing left over
        received = proxy.server.sink.received  # type: ignore[attr-defined]
        assert [r["value"]["event_id"] for r in received["xumi_task"]] == [str(ok.event_id)]


def test_kafka_rest_speaks_the_v2_produce_api(tmp_path: Path) -> None:
    """Against the stand-in (see the module docstring): one POST per topic and batch, v2 JSON content type."""
    with RestProxyStandIn(MemorySink([METRICS, "xumi_task"])) as proxy:
        with client(tmp_path, "kafka-rest", url=proxy.url) as t:
            emitted = seed_calls(t)
        assert sorted((path, ctype) for path, ctype, _ in proxy.requests) == [
            (f"/topics/{METRICS}", "application/vnd.kafka.json.v2+json"),
            ("/topics/xumi_task", "application/vnd.kafka.json.v2+json"),
        ]
        received = proxy.server.sink.received  # type: ignore[attr-defined]
    got = {r["value"]["event_id"]: (topic, r) for topic, rs in received.items() for r in rs}
    for event in emitted:
        topic, record = got[str(event.event_id)]
        assert schemas.parse(topic, json.dumps(record["value"])) == event
        assert record["key"] == getattr(event, "task_id", event.user_id)


def test_unknown_topic_at_the_proxy_is_a_delivery_error(tmp_path: Path) -> None:
    with RestProxyStandIn(MemorySink(["xumi_task"])) as proxy:  # the metrics topic is missing there
        with client(tmp_path, "kafka-rest", url=proxy.url) as t:
            t.emit(metric="x", value=1)
            with pytest.raises(DeliveryError, match="HTTP 404 error_code 40401: Topic not found"):
                t.flush()


# --- unreachable backends ----------------------------------------------------------------------------------------


def test_unreachable_kafka_names_the_url_the_variable_and_the_fix(tmp_path: Path) -> None:
    url = f"127.0.0.1:{closed_port()}"
    with pytest.raises(BackendUnavailable) as info:
        Telemetry(backend="kafka", settings=config(KAFKA_DIRECT_URL=url), connect_timeout_s=1, **WHO)
    message = str(info.value)
    assert "kafka backend" in message and url in message and "KAFKA_DIRECT_URL" in message
    assert "make stack-up" in message
    assert (info.value.backend, info.value.url, info.value.env_var) == ("kafka", url, "KAFKA_DIRECT_URL")


def test_unreachable_rest_proxy_names_the_url_the_variable_and_the_fix(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(BackendUnavailable) as info:
        Telemetry(backend="kafka-rest", settings=config(KAFKA_PROXY_URL=url), connect_timeout_s=1, **WHO)
    message = str(info.value)
    assert "kafka-rest backend" in message and url in message and "KAFKA_PROXY_URL" in message
    assert "REST proxy" in message
    with pytest.raises(BackendUnavailable, match="KAFKA_PROXY_URL is not set"):
        Telemetry(backend="kafka-rest", settings=config(), **WHO)

    async def open_async() -> None:
        async with AsyncTelemetry(backend="kafka-rest", settings=config(KAFKA_PROXY_URL=url),
                                  connect_timeout_s=1, **WHO):
            pass

    with pytest.raises(BackendUnavailable, match="KAFKA_PROXY_URL"):
        asyncio.run(open_async())


def test_a_server_that_is_not_a_rest_proxy_is_refused(tmp_path: Path) -> None:
    with RestProxyStandIn(MemorySink([])) as proxy:
        with pytest.raises(BackendUnavailable, match="HTTP 404, not a Kafka REST proxy"):
            Telemetry(backend="kafka-rest", url=proxy.url + "/nope", settings=config(), **WHO)


def test_unknown_backend_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="jsonl, sqlite, kafka, kafka-rest"):
        Telemetry(backend="parquet", settings=config(), **WHO)


# --- async client ----------------------------------------------------------------------------------------------


def test_async_client_batches_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"

    async def main() -> list[schemas.Envelope]:
        async with AsyncTelemetry(system="xumi", component="inference", path=path, batch_size=2,
                                  flush_interval_s=None, settings=config(), **WHO) as t:
            first = await t.emit(metric="a", value=1)
            assert (lines(path), t.buffered) == (0, 1)
            second = await t.emit(metric="a", value=2)
            assert (lines(path), t.buffered) == (2, 0)
            third = await t.emit(event="xumi.task.started", **TASK)
            with pytest.raises(EventRefused) as info:
                await t.emit(event="model_load_start", status="done")
            assert info.value.reason is Reason.BAD_ENUM
            await t.flush()
            assert lines(path) == 3
            return [first, second, third]

    emitted = asyncio.run(main())
    rows = list(read_jsonl(path))
    assert [e["event_id"] for _, _, e in rows] == [str(e.event_id) for e in emitted]
    assert all(isinstance(schemas.validate(topic, json.dumps(e)), Valid) for topic, _, e in rows)


def test_async_interval_flush_and_sqlite(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncTelemetry(backend="sqlite", path=tmp_path / "e.db", batch_size=100,
                                  flush_interval_s=0.05, settings=config(), **WHO) as t:
            await t.emit(metric="a", value=1)
            deadline = time.monotonic() + 30
            while t.buffered and time.monotonic() < deadline:  # the flusher task drains it
                await asyncio.sleep(0.05)
            assert t.buffered == 0

    asyncio.run(main())
    (payload,), = sqlite3.connect(tmp_path / "e.db").execute("SELECT payload FROM events").fetchall()
    assert isinstance(schemas.validate(METRICS, payload), Valid)


def test_async_kafka_rest_uses_aiohttp_against_the_proxy(tmp_path: Path) -> None:
    async def main(url: str) -> list[schemas.Envelope]:
        async with AsyncTelemetry(system="xumi", component="inference", backend="kafka-rest", url=url,
                                  flush_interval_s=None, settings=config(), **WHO) as t:
            emitted = [await t.emit(metric="a", value=float(i)) for i in range(3)]
            emitted.append(await t.emit(event="xumi.task.started", **{**TASK, "task_id": "t_bad"}))
            with pytest.raises(DeliveryError, match="injected") as info:
                await t.flush()
            assert [r.event for r, _ in info.value.failures] == emitted[3:]
            return emitted[:3]

    with RestProxyStandIn(MemorySink([METRICS, "xumi_task"], fail_keys={"t_bad"})) as proxy:
        emitted = asyncio.run(main(proxy.url))
        received = proxy.server.sink.received  # type: ignore[attr-defined]
    assert [r["value"]["event_id"] for r in received[METRICS]] == [str(e.event_id) for e in emitted]


# --- real Kafka ---------------------------------------------------------------------------------------------------


def consume(bootstrap: str, topics: list[str], event_ids: set[str], timeout: float = 60.0) -> dict[str, Any]:
    """event_id -> Kafka message for the given ids, read from the start of the topics."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-sdk-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(topics)
    found: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    try:
        while set(found) != event_ids and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            try:
                event_id = json.loads(msg.value())["event_id"]
            except (ValueError, TypeError, KeyError):
                continue  # other tests' records on these topics, malformed ones among them
            if event_id in event_ids:
                found[event_id] = msg
    finally:
        consumer.close()
    return found


@pytest.mark.stack
def test_kafka_round_trip_keys_timestamps_and_bytes(tmp_path: Path, kafka_url: str) -> None:
    with client(tmp_path, "kafka", url=kafka_url, system_context=True) as t:
        emitted = seed_calls(t)
        emitted.append(t.emit(event="xumi.task.finished", **TASK, output_bytes=5, ts="2026-02-21T12:00:00.123Z"))
    found = consume(kafka_url, [METRICS, "xumi_task"], {str(e.event_id) for e in emitted})
    assert set(found) == {str(e.event_id) for e in emitted}
    for event in emitted:
        msg = found[str(event.event_id)]
        assert msg.value() == schemas.to_json(event)  # the canonical bytes, unchanged
        assert isinstance(schemas.validate(msg.topic(), msg.value()), Valid)
        assert msg.topic() == (METRICS if isinstance(event, schemas.SdkMetricEvent) else "xumi_task")
        assert msg.key() == getattr(event, "task_id", event.user_id).encode()
        assert msg.timestamp() == (TIMESTAMP_CREATE_TIME, schemas.ts_to_millis(event.ts))  # event time
    assert found[str(emitted[-1].event_id)].timestamp()[1] == 1771675200123


@pytest.mark.stack
def test_async_kafka_round_trip(tmp_path: Path, kafka_url: str) -> None:
    async def main() -> list[schemas.Envelope]:
        async with AsyncTelemetry(system="xumi", component="inference", backend="kafka", url=kafka_url,
                                  batch_size=2, flush_interval_s=None, settings=config(), **WHO) as t:
            return [await t.emit(metric="a", value=float(i)) for i in range(5)]

    emitted = asyncio.run(main())
    found = consume(kafka_url, [METRICS], {str(e.event_id) for e in emitted})
    assert [found[str(e.event_id)].value() for e in emitted] == [schemas.to_json(e) for e in emitted]


@pytest.mark.stack
def test_kafka_rest_through_the_stand_in_into_real_kafka(tmp_path: Path, kafka_url: str) -> None:
    """The stand-in REST proxy (module docstring) forwards into the test stack's broker."""
    sink = KafkaSink(kafka_url)
    try:
        with RestProxyStandIn(sink) as proxy:
            with client(tmp_path, "kafka-rest", url=proxy.url) as t:
                emitted = seed_calls(t)
    finally:
        sink.close()
    found = consume(kafka_url, [METRICS, "xumi_task"], {str(e.event_id) for e in emitted})
    for event in emitted:
        msg = found[str(event.event_id)]
        assert schemas.parse(msg.topic(), msg.value()) == event
        assert json.loads(msg.key()) == getattr(event, "task_id", event.user_id)  # JSON-encoded by the proxy


@pytest.mark.stack
def test_kafka_topic_missing_on_the_broker_is_a_delivery_error(tmp_path: Path, kafka_url: str) -> None:
    from telemetry.sdk.backends.kafka import KafkaBackend
    from telemetry.sdk.events import EventBuilder

    context = {**WHO, "tenant_id": "t", "node_id": "n", "vm_type": "", "host_name": "h"}
    record = EventBuilder("xumi", "inference", context).build(metric="a", value=1)
    stray = dataclasses.replace(record, topic=f"sdk_test_missing_{uuid.uuid4().hex[:8]}")
    backend = KafkaBackend(kafka_url, from_env=False)
    try:
        with pytest.raises(DeliveryError, match="does not exist") as info:
            backend.write([stray, record])
        assert [r for r, _ in info.value.failures] == [stray]
        backend.flush()  # the other record went through
    finally:
        backend.close()
    assert set(consume(kafka_url, [METRICS], {record.event_id})) == {record.event_id}
