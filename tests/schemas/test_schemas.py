"""Tests of the event contract (schemas/): families, naming, timestamps, reason codes, round trips, JSON Schema.

Plain Python, no Flink or Kafka: the validator is the job's functional core (DESIGN principle 1).
"""

from __future__ import annotations

import json
import random
import string
import typing
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import annotated_types
import jsonschema
import pytest
from pydantic import BaseModel, ValidationError

import schemas
from schemas import FAMILIES, Invalid, Reason, Valid, to_json, validate
from schemas.examples import EXAMPLES, example
from schemas.generate import JSON_DIR, main as generate_main, render, stale_files, write
from schemas.malformed import UNKNOWN_TOPIC, kinds, malformed
from schemas.naming import classify_name, is_well_formed
from schemas.reasons import reason_for
from schemas.registry import TOPIC_FAMILY, topics_for_family
from telemetry.topics import CATALOGUE, DLQ_TOPIC, LLM_TOPIC, Role

TOPIC = {family: topics_for_family(family)[0] for family in FAMILIES}
ALL_EXAMPLES = [(family, i) for family, exs in EXAMPLES.items() for i in range(len(exs))]


def dumps(data: Any) -> bytes:
    return json.dumps(data).encode()


def check(topic: str, raw: bytes | str | None) -> Invalid:
    """Validate and require a rejection; returns it for reason/field asserts."""
    result = validate(topic, raw)
    assert isinstance(result, Invalid), f"expected a rejection, got {result}"
    assert result.message, "every rejection carries a human message"
    return result


# --- registry --------------------------------------------------------------------------------------------


def test_every_source_topic_has_a_family_model() -> None:
    for t in CATALOGUE:
        if t.role is Role.SOURCE:
            assert t.family in FAMILIES, f"topic {t.name}: family {t.family!r} has no model"
            assert schemas.model_for_topic(t.name) is FAMILIES[t.family]
    assert set(FAMILIES) == {t.family for t in CATALOGUE if t.family}, "a model without a catalogue topic"
    assert schemas.model_for_topic(LLM_TOPIC) is schemas.LlmRequestEvent


def test_non_source_topics_have_no_model() -> None:
    with pytest.raises(KeyError, match="carries no event family"):
        schemas.model_for_topic(DLQ_TOPIC)
    assert DLQ_TOPIC not in TOPIC_FAMILY


def test_family_names_and_systems() -> None:
    systems = {family: cls.SYSTEM for family, cls in FAMILIES.items()}
    assert systems == {
        "xumi_load": "xumi", "xumi_task": "xumi", "wkf_task": "wkf", "pbac_access": "pbac",
        "pbac_politics": "pbac", "pbac_service": "pbac", "asset_access": "asset", "asset_transfer": "asset",
        "wkf_cpu": "wkf", "wkf_gpu": "wkf", "kuber_cpu": "kuber", "kuber_gpu": "kuber", "llm_request": "llm",
        "sdk_metric": "",  # open: any system
    }
    for family, cls in FAMILIES.items():
        assert cls.FAMILY == family
        names = schemas.EVENT_NAMES[family]
        if cls.OPEN_NAMES:
            assert names == () and not cls.EVENT_NAMES
            continue
        assert names and set(names) == cls.EVENT_NAMES
        for name in names:
            assert is_well_formed(name) and name.split(".")[0] == cls.SYSTEM


def test_event_names_are_the_documented_ones() -> None:
    # The simulator, SQL and dashboards use these literally; a rename must be deliberate.
    assert schemas.EVENT_NAMES["xumi_load"] == (
        "xumi.checkpoint.load.finish", "xumi.checkpoint.load.start",
        "xumi.weights.load.finish", "xumi.weights.load.start",
    )
    assert schemas.EVENT_NAMES["xumi_task"] == (
        "xumi.task.failed", "xumi.task.finished", "xumi.task.initialized", "xumi.task.queued", "xumi.task.started",
    )
    assert schemas.EVENT_NAMES["wkf_task"] == ("wkf.task.completed", "wkf.task.failed", "wkf.task.started")
    assert schemas.EVENT_NAMES["llm_request"] == ("llm.request.completed",)


def test_examples_cover_every_event_name() -> None:
    for family, names in schemas.EVENT_NAMES.items():
        used = {e["event_name"] for e in EXAMPLES[family]}
        if FAMILIES[family].OPEN_NAMES:
            assert used and all(is_well_formed(n) and n not in schemas.EVENT_NAME_FAMILY for n in used)
            continue
        assert used == set(names), f"{family}: no example for {set(names) - used}"


def test_a_family_with_a_malformed_name_fails_at_definition() -> None:
    with pytest.raises(TypeError, match="breaks the naming rules"):

        class Bad(schemas.Envelope):  # noqa: F841 - defining it is the test
            FAMILY: typing.ClassVar[str] = "bad"
            SYSTEM: typing.ClassVar[str] = "xumi"
            event_name: typing.Literal["pbac.task.queued"]


# --- valid events and round trips ------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "index"), ALL_EXAMPLES)
def test_examples_are_valid_and_round_trip(family: str, index: int) -> None:
    raw = dumps(EXAMPLES[family][index])
    result = validate(TOPIC[family], raw)
    assert isinstance(result, Valid), result
    event = result.event
    assert type(event) is FAMILIES[family] and result.family == family
    wire = to_json(event)
    again = schemas.parse(TOPIC[family], wire)
    assert again == event  # model -> JSON -> model unchanged
    assert to_json(again) == wire  # and the JSON is canonical (a fixed point)
    assert schemas.to_dict(again) == json.loads(wire)


def test_construction_from_python_is_ergonomic() -> None:
    event = schemas.XumiTaskEvent(
        event_id="1b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d01",
        event_name="xumi.task.queued",
        ts=datetime(2026, 2, 21, 12, 0, 0, 123456, tzinfo=timezone.utc),
        tenant_id="t", node_id="n", vm_type="NV6", host_name="h", user_id="u", project_id="p",
        department_id="d", task_id="t_1", attempt=1, model="m", model_version="1", input_bytes=10,
    )
    assert event.ts.microsecond == 123000  # truncated to milliseconds
    assert event.labels == {} and event.error_type is None
    assert schemas.parse("xumi_task", to_json(event)) == event
    with pytest.raises(ValidationError):  # the rules apply to Python construction too
        schemas.XumiTaskEvent(**{**event.model_dump(), "event_name": "xumi.task.failed"})
    with pytest.raises(ValidationError):  # frozen: events are facts
        event.attempt = 2  # type: ignore[misc]


def test_build_fills_id_and_time() -> None:
    data = example("kuber_cpu", event_id=..., ts=...)
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    a, b = schemas.KuberCpuCreditEvent.build(**data), schemas.KuberCpuCreditEvent.build(**data)
    assert a.event_id != b.event_id and a.event_id.version == 4
    assert a.ts >= before.replace(microsecond=0)
    fixed = schemas.KuberCpuCreditEvent.build(**{**data, "event_id": uuid.UUID(int=7), "ts": 1771675242100})
    assert fixed.event_id == uuid.UUID(int=7) and schemas.ts_to_millis(fixed.ts) == 1771675242100


def test_to_dict_python_mode_keeps_native_types() -> None:
    event = schemas.parse("xumi_load", dumps(EXAMPLES["xumi_load"][0]))
    native = schemas.to_dict(event, json_compatible=False)
    assert isinstance(native["event_id"], uuid.UUID) and isinstance(native["ts"], datetime)
    assert native["ts"].tzinfo is not None and native["ts"].utcoffset() == timedelta(0)
    assert schemas.to_dict(event)["ts"] == "2026-02-21T12:00:00.000Z"


def test_validate_accepts_str_bytes_bytearray_memoryview_and_objects() -> None:
    data = EXAMPLES["wkf_task"][0]
    raw = dumps(data)
    results = [validate("wkf_task", r) for r in (raw, raw.decode(), bytearray(raw), memoryview(raw))]
    results.append(schemas.validate_obj("wkf_task", data))
    assert all(isinstance(r, Valid) for r in results)
    assert all(r.event == results[0].event for r in results)
    assert check("wkf_task", "\ud800").reason is Reason.NOT_JSON  # lone surrogate cannot be UTF-8
    assert schemas.validate_obj("wkf_task", {"x": object()}).reason is Reason.NOT_JSON


# --- timestamps --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-02-21T12:34:56.789Z", "2026-02-21T12:34:56.789Z"),
        ("2026-02-21T12:34:56Z", "2026-02-21T12:34:56.000Z"),
        ("2026-02-21T14:34:56.789+02:00", "2026-02-21T12:34:56.789Z"),
        ("2026-02-21T07:04:56.789-05:30", "2026-02-21T12:34:56.789Z"),
        ("2026-02-21T12:34:56.789999Z", "2026-02-21T12:34:56.789Z"),  # truncated, never rounded up
        ("2026-02-21T12:34:56.7+00:00", "2026-02-21T12:34:56.700Z"),
        (1771677296789, "2026-02-21T12:34:56.789Z"),  # epoch milliseconds
        (946684800000, "2000-01-01T00:00:00.000Z"),  # lower bound is inclusive
    ],
)
def test_timestamps_normalise_to_utc_milliseconds(given: Any, expected: str) -> None:
    event = schemas.parse("wkf_cpu", dumps(example("wkf_cpu", ts=given)))
    assert event.ts.tzinfo is not None and event.ts.utcoffset() == timedelta(0)
    assert json.loads(to_json(event))["ts"] == expected
    assert schemas.format_ts(schemas.parse_ts(expected)) == expected


@pytest.mark.parametrize(
    "given",
    [
        "2026-02-21T12:34:56.789",  # naive: the zone would be a guess
        "2026-02-21",
        "yesterday",
        "",
        "1771677296789",  # millis as a string
        "2026-02-21T12:34:56.789Z" + " " * 60,
        1771677296,  # epoch seconds by mistake: January 1970 in millis
        4102444800000,  # 2100-01-01: upper bound is exclusive
        -1,
        "1999-12-31T23:59:59.999Z",
    ],
)
def test_bad_timestamps(given: Any) -> None:
    bad = check("wkf_cpu", dumps(example("wkf_cpu", ts=given)))
    assert (bad.reason, bad.field) == (Reason.BAD_TIMESTAMP, "ts")


@pytest.mark.parametrize(("given", "reason"), [(1.7e12, Reason.WRONG_TYPE), (True, Reason.WRONG_TYPE),
                                               ([], Reason.WRONG_TYPE), (None, Reason.MISSING_FIELD)])
def test_timestamp_of_the_wrong_type(given: Any, reason: Reason) -> None:
    bad = check("wkf_cpu", dumps(example("wkf_cpu", ts=given)))
    assert (bad.reason, bad.field) == (reason, "ts")


def test_naive_datetime_refused_from_python_too() -> None:
    with pytest.raises(ValidationError, match="no UTC offset"):
        schemas.WkfCpuCreditEvent(**example("wkf_cpu", ts=datetime(2026, 2, 21, 12, 0)))


# --- event names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("xumi.task.queued", None),
        ("Xumi.task.queued", Reason.BAD_EVENT_NAME),  # rule 1: lowercase
        ("xumi.task", Reason.BAD_EVENT_NAME),  # needs system.component.action
        ("xumi.task.queued.note.extra", Reason.BAD_EVENT_NAME),  # at most one note
        ("xumi..queued", Reason.BAD_EVENT_NAME),
        ("xumi.task.1queued", Reason.BAD_EVENT_NAME),  # segments start with a letter
        ("xumi.task-x.queued", Reason.BAD_EVENT_NAME),
        ("xumi.task.queued ", Reason.BAD_EVENT_NAME),
        ("", Reason.BAD_EVENT_NAME),
        ("xumi.task.paused", Reason.UNKNOWN_EVENT_NAME),  # well-formed, not the family's
        ("xumi.task.queued.retry", Reason.UNKNOWN_EVENT_NAME),  # a note the family does not define
        ("xumi.weights.load.start", Reason.UNKNOWN_EVENT_NAME),  # same system, other family
        ("pbac.task.queued", Reason.UNKNOWN_EVENT_NAME),  # another system
        ("xumi.task." + "a" * 130, Reason.FIELD_TOO_LONG),
        (7, Reason.WRONG_TYPE),
        (None, Reason.MISSING_FIELD),
    ],
)
def test_event_name_rules(name: Any, reason: Reason | None) -> None:
    result = validate("xumi_task", dumps(example("xumi_task", event_name=name)))
    if reason is None:
        assert isinstance(result, Valid)
    else:
        assert isinstance(result, Invalid) and (result.reason, result.field) == (reason, "event_name")
        assert "event_name" in result.message


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("xumi.inference.metric", None),
        ("trainer.loop.epoch_end", None),  # any system: SDK users name their own service
        ("xumi.inference.model_load.start", None),  # with a note
        ("xumi.inference.Model_load", Reason.BAD_EVENT_NAME),
        ("xumi.inference", Reason.BAD_EVENT_NAME),
        ("", Reason.BAD_EVENT_NAME),
        ("xumi.task.started", Reason.UNKNOWN_EVENT_NAME),  # another family's name is reserved
        ("llm.request.completed", Reason.UNKNOWN_EVENT_NAME),
        ("xumi.inference." + "a" * 130, Reason.FIELD_TOO_LONG),
        (7, Reason.WRONG_TYPE),
        (None, Reason.MISSING_FIELD),
    ],
)
def test_open_family_event_name_rules(name: Any, reason: Reason | None) -> None:
    result = validate("telemetry.metrics.v1", dumps(example("sdk_metric", event_name=name)))
    if reason is None:
        assert isinstance(result, Valid)
    else:
        assert isinstance(result, Invalid) and (result.reason, result.field) == (reason, "event_name")
        assert "event_name" in result.message


def test_wrong_system_message_names_both_systems() -> None:
    reason, message = classify_name("pbac.task.queued", "xumi", FAMILIES["xumi_task"].EVENT_NAMES) or (None, "")
    assert reason is Reason.UNKNOWN_EVENT_NAME and "'pbac'" in message and "'xumi'" in message


# --- every reason code -------------------------------------------------------------------------------------


def test_every_reason_is_produced_by_the_canonical_malformed_records() -> None:
    covered: set[Reason] = set()
    for family in FAMILIES:
        for reason in kinds(family):
            topic, raw = malformed(reason, family)
            result = check(topic, raw)
            assert result.reason is reason, f"{family}/{reason.value}: got {result.reason.value} ({result.message})"
            covered.add(reason)
    assert covered == set(Reason), f"unreachable reasons: {set(Reason) - covered}"


def test_malformed_refuses_kinds_a_family_cannot_have() -> None:
    assert Reason.OUT_OF_RANGE not in kinds("pbac_access")
    with pytest.raises(KeyError, match="no out_of_range defect"):
        malformed(Reason.OUT_OF_RANGE, "pbac_access")


# Hand-written cases, at least one per reason, each with the field it must name.
REASON_CASES: list[tuple[Reason, str, bytes | None, str | None]] = [
    (Reason.NULL_VALUE, "xumi_task", None, None),  # a tombstone
    (Reason.NULL_VALUE, UNKNOWN_TOPIC, None, None),  # nothing to say of a record without a value but that
    (Reason.UNKNOWN_TOPIC, UNKNOWN_TOPIC, dumps(example("xumi_task")), None),
    (Reason.UNKNOWN_TOPIC, DLQ_TOPIC, dumps(example("xumi_task")), None),
    (Reason.OVERSIZE, "xumi_task", dumps(example("xumi_task", error_message="x" * 70_000)), None),
    (Reason.OVERSIZE, "xumi_task", b"{" + b" " * 65_536 + b"}", None),
    (Reason.NOT_JSON, "xumi_task", b"", None),
    (Reason.NOT_JSON, "xumi_task", b"\xff\xfe{}", None),
    (Reason.NOT_JSON, "xumi_task", b"{'single': 'quotes'}", None),
    (Reason.NOT_JSON, "xumi_task", dumps(example("xumi_task")) + b"}", None),  # trailing garbage
    (Reason.NOT_JSON, "xumi_task", b"[" * 10_000, None),  # nesting bomb
    (Reason.NOT_OBJECT, "xumi_task", b"null", None),
    (Reason.NOT_OBJECT, "xumi_task", b"42", None),
    (Reason.NOT_OBJECT, "xumi_task", b'"xumi.task.queued"', None),
    (Reason.MISSING_FIELD, "xumi_task", dumps(example("xumi_task", event_id=...)), "event_id"),
    (Reason.MISSING_FIELD, "xumi_task", dumps(example("xumi_task", task_id=None)), "task_id"),  # null
    (Reason.MISSING_FIELD, "xumi_task", dumps(example("xumi_task", user_id="")), "user_id"),  # empty id
    (Reason.MISSING_FIELD, "xumi_task", b"{}", "event_id"),
    (Reason.MISSING_FIELD, LLM_TOPIC, dumps(example("llm_request", client={"app": "web"})), "client.os"),
    (Reason.UNKNOWN_FIELD, "xumi_task", dumps(example("xumi_task", prompt="hi")), "prompt"),
    (Reason.UNKNOWN_FIELD, LLM_TOPIC, dumps(example("llm_request", client={"app": "w", "os": "l", "v": 1})),
     "client.v"),
    (Reason.UNKNOWN_FIELD, "wkf_cpu", dumps(example("wkf_cpu", gpu_type="a100")), "gpu_type"),
    (Reason.WRONG_TYPE, "xumi_task", dumps(example("xumi_task", attempt="1")), "attempt"),  # strict JSON
    (Reason.WRONG_TYPE, "xumi_task", dumps(example("xumi_task", attempt=1.0)), "attempt"),
    (Reason.WRONG_TYPE, "xumi_task", dumps(example("xumi_task", attempt=True)), "attempt"),
    (Reason.WRONG_TYPE, "xumi_task", dumps(example("xumi_task", event_id=12345)), "event_id"),
    (Reason.WRONG_TYPE, "xumi_load", dumps(example("xumi_load", 1, cache_hit="true")), "cache_hit"),
    (Reason.WRONG_TYPE, LLM_TOPIC, dumps(example("llm_request", experiment="reranker_v2")), "experiment"),
    (Reason.WRONG_TYPE, LLM_TOPIC, dumps(example("llm_request", labels=["a"])), "labels"),
    (Reason.WRONG_TYPE, LLM_TOPIC, dumps(example("llm_request", labels={"team": 1})), "labels.team"),
    (Reason.BAD_EVENT_NAME, "pbac_access", dumps(example("pbac_access", event_name="PBAC.ACCESS.CHECKED")),
     "event_name"),
    (Reason.UNKNOWN_EVENT_NAME, "wkf_cpu", dumps(example("wkf_cpu", event_name="kuber.cpu.charged")),
     "event_name"),
    (Reason.BAD_UUID, "xumi_task", dumps(example("xumi_task", event_id="1b7f4a52-1c1e-4f0e-9d5a")), "event_id"),
    (Reason.BAD_UUID, "xumi_task", dumps(example("xumi_task", event_id="")), "event_id"),
    (Reason.BAD_TIMESTAMP, "xumi_task", dumps(example("xumi_task", ts="2026-13-01T00:00:00Z")), "ts"),
    (Reason.OUT_OF_RANGE, LLM_TOPIC, dumps(example("llm_request", tokens_in=200_001)), "tokens_in"),
    (Reason.OUT_OF_RANGE, LLM_TOPIC, dumps(example("llm_request", latency_ms=-1)), "latency_ms"),
    (Reason.OUT_OF_RANGE, "xumi_task", dumps(example("xumi_task", input_bytes=10**30)), "input_bytes"),
    (Reason.OUT_OF_RANGE, "kuber_gpu", dumps(example("kuber_gpu", units=float("nan"))), "units"),  # NaN
    (Reason.OUT_OF_RANGE, "kuber_gpu", dumps(example("kuber_gpu", seconds=float("inf"))), "seconds"),
    (Reason.BAD_ENUM, "pbac_access", dumps(example("pbac_access", decision="ALLOW")), "decision"),
    (Reason.BAD_ENUM, "wkf_task", dumps(example("wkf_task", event_type="taskstarted")), "event_type"),
    (Reason.FIELD_TOO_LONG, LLM_TOPIC, dumps(example("llm_request", error_type="e" * 65, status="error")),
     "error_type"),
    (Reason.FIELD_TOO_LONG, LLM_TOPIC, dumps(example("llm_request", labels={"prompt": "p" * 129})),
     "labels.prompt"),
    (Reason.FIELD_TOO_LONG, "pbac_politics", dumps(example("pbac_politics", change_summary="s" * 2049)),
     "change_summary"),
    (Reason.FIELD_TOO_LONG, "xumi_task", dumps(example("xumi_task", host_name="h" * 254)), "host_name"),
    (Reason.CARDINALITY, "xumi_task", dumps(example("xumi_task", labels={str(i): "v" for i in range(17)})),
     "labels"),
    (Reason.CARDINALITY, "telemetry.metrics.v1", dumps(example("sdk_metric", 1, metrics={f"m{i}": 1 for i in range(33)})),
     "metrics"),
    (Reason.OUT_OF_RANGE, "telemetry.metrics.v1", dumps(example("sdk_metric", 1, metrics={"m": -2.0**61})),
     "metrics.m"),
    (Reason.OUT_OF_RANGE, "telemetry.metrics.v1",
     dumps(example("sdk_metric", context={"cpu_percent": 100.5})), "context.cpu_percent"),
    (Reason.INCONSISTENT, LLM_TOPIC, dumps(example("llm_request", 1, error_type=None)), "error_type"),
]


@pytest.mark.parametrize(("reason", "topic", "raw", "field"), REASON_CASES,
                         ids=[f"{c[0].value}-{i}" for i, c in enumerate(REASON_CASES)])
def test_reason_cases(reason: Reason, topic: str, raw: bytes | None, field: str | None) -> None:
    result = check(topic, raw)
    assert (result.reason, result.field) == (reason, field), result.message
    if field is not None:
        assert field.split(".")[0] in result.message


def test_hand_written_cases_cover_every_reason() -> None:
    assert {c[0] for c in REASON_CASES} == set(Reason)


def test_oversize_boundary_is_64_kib() -> None:
    raw = dumps(example("xumi_task"))
    at_limit = raw + b" " * (schemas.MAX_RECORD_BYTES - len(raw))  # trailing whitespace is valid JSON
    assert len(at_limit) == 65_536 and isinstance(validate("xumi_task", at_limit), Valid)
    assert check("xumi_task", at_limit + b" ").reason is Reason.OVERSIZE


# --- cross-field rules (inconsistent) ------------------------------------------------------------------------

INCONSISTENT_CASES: list[tuple[str, dict[str, Any], str]] = [
    # family, overrides of example 0 (or of "index"), field named
    ("xumi_load", {"duration_ms": 10}, "duration_ms"),  # start with a duration
    ("xumi_load", {"cache_hit": True}, "cache_hit"),
    ("xumi_load", {"index": 1, "duration_ms": None}, "duration_ms"),  # finish without one
    ("xumi_load", {"index": 1, "cache_hit": ...}, "cache_hit"),
    ("xumi_task", {"error_type": "oom"}, "error_type"),  # queued with an error
    ("xumi_task", {"error_message": "boom"}, "error_message"),
    ("xumi_task", {"index": 4, "error_type": None}, "error_type"),  # failed without one
    ("xumi_task", {"index": 4, "error_message": ...}, "error_message"),
    ("xumi_task", {"index": 3, "output_bytes": None}, "output_bytes"),  # finished without output
    ("xumi_task", {"output_bytes": 5}, "output_bytes"),
    ("xumi_task", {"checkpoint_version": None}, "checkpoint_version"),
    ("wkf_task", {"event_type": "TaskCompleted"}, "event_type"),
    ("wkf_task", {"index": 1, "event_type": "TaskStarted"}, "event_type"),
    ("wkf_task", {"k8s_node": None}, "k8s_node"),
    ("wkf_task", {"k8s_node": ""}, "k8s_node"),
    ("pbac_service", {"action": "reload"}, "action"),
    ("asset_transfer", {"error_type": "timeout"}, "error_type"),
    ("asset_transfer", {"index": 1, "error_message": None}, "error_message"),
    ("wkf_cpu", {"resource": "gpu"}, "resource"),
    ("wkf_gpu", {"resource": "cpu"}, "resource"),
    ("kuber_cpu", {"resource": "gpu"}, "resource"),
    ("kuber_gpu", {"resource": "cpu"}, "resource"),
    ("llm_request", {"error_type": "boom"}, "error_type"),
    ("llm_request", {"status": "rate_limited"}, "error_type"),
    ("sdk_metric", {"value": None}, "value"),
    ("sdk_metric", {"metric": None}, "metric"),
    ("sdk_metric", {"index": 1, "metrics": {}}, "metric"),  # *.metric carrying nothing
    ("sdk_metric", {"index": 1, "context": {"ram_used_bytes": 2, "ram_total_bytes": 1}}, "context.ram_used_bytes"),
    ("sdk_metric", {"context": {"gpus": [{"index": 0, "name": "g", "memory_used_bytes": 2,
                                          "memory_total_bytes": 1}]}}, "context.gpus.0.memory_used_bytes"),
]


@pytest.mark.parametrize(("family", "overrides", "field"), INCONSISTENT_CASES)
def test_cross_field_rules(family: str, overrides: dict[str, Any], field: str) -> None:
    overrides = dict(overrides)
    index = overrides.pop("index", 0)
    result = check(TOPIC[family], dumps(example(family, index, **overrides)))
    assert (result.reason, result.field) == (Reason.INCONSISTENT, field), result.message
    assert field in result.message


@pytest.mark.parametrize(
    ("family", "overrides"),
    [
        ("xumi_task", {"checkpoint_id": None, "checkpoint_version": None}),  # base model only
        ("xumi_load", {"task_id": None}),  # a warm-up load
        ("pbac_access", {"policy_id": None, "reason": None}),
        ("llm_request", {"experiment": None, "checkpoint_id": None}),
        ("xumi_task", {"vm_type": "", "host_name": ""}),  # unknown context is allowed, unlike ids
        ("wkf_cpu", {"units": 0.001, "credits": 0}),
        ("llm_request", {"latency_ms": 0, "tokens_in": 0, "tokens_out": 200_000}),
        ("xumi_task", {"labels": {f"k{i}": "v" * 128 for i in range(16)}}),  # at the guards
        ("pbac_access", {"labels": None}),  # Go writes a nil map as null
    ],
)
def test_optional_and_boundary_values_are_valid(family: str, overrides: dict[str, Any]) -> None:
    assert isinstance(validate(TOPIC[family], dumps(example(family, **overrides))), Valid)


def test_int_is_accepted_for_float_fields() -> None:
    event = schemas.parse("kuber_gpu", dumps(example("kuber_gpu", units=2, seconds=60)))
    assert event.units == 2.0 and isinstance(event.units, float)


# --- first error wins, deterministically --------------------------------------------------------------------


def test_first_error_in_declaration_order_wins_whatever_the_key_order() -> None:
    data = example("llm_request", latency_ms=-1, tokens_in="many", user_id=None, status="maybe", extra=1)
    expected = (Reason.MISSING_FIELD, "user_id")  # user_id is an envelope field: declared first
    rng = random.Random(1)
    for _ in range(20):
        items = list(data.items())
        rng.shuffle(items)
        result = check(LLM_TOPIC, dumps(dict(items)))
        assert (result.reason, result.field) == expected


def test_field_errors_come_before_unknown_fields_and_cross_field_rules() -> None:
    data = example("llm_request", error_type="boom", extra=1, tokens_out=-5)
    assert check(LLM_TOPIC, dumps(data)).reason is Reason.OUT_OF_RANGE
    data = example("llm_request", error_type="boom", extra=1)
    assert check(LLM_TOPIC, dumps(data)).reason is Reason.UNKNOWN_FIELD


def test_reason_mapping_rules() -> None:
    assert reason_for({"type": "inconsistent", "loc": ()}) is Reason.INCONSISTENT  # custom: by value
    assert reason_for({"type": "model_type", "loc": (), "input": None}) is Reason.NOT_OBJECT
    assert reason_for({"type": "model_type", "loc": ("client",), "input": "x"}) is Reason.WRONG_TYPE
    assert reason_for({"type": "int_type", "loc": ("n",), "input": None}) is Reason.MISSING_FIELD
    assert reason_for({"type": "some_future_pydantic_type", "loc": ("n",), "input": 1}) is Reason.WRONG_TYPE


def test_reason_values_are_stable_lowercase_codes() -> None:
    assert all(r.value == r.name.lower() for r in Reason)
    assert Reason("not_json") is Reason.NOT_JSON and isinstance(Reason.NOT_JSON, str)


def test_parse_raises_with_the_invalid_attached() -> None:
    with pytest.raises(schemas.InvalidEventError) as info:
        schemas.parse("xumi_task", b"[]")
    assert info.value.invalid.reason is Reason.NOT_OBJECT and "not_object" in str(info.value)


def test_classify_error_serves_python_construction_too() -> None:
    with pytest.raises(ValidationError) as info:
        schemas.LlmRequestEvent(**example("llm_request", status="error"))
    assert schemas.classify_error(info.value, schemas.LlmRequestEvent)[:2] == (Reason.INCONSISTENT, "error_type")


# --- property-style loops -----------------------------------------------------------------------------------

_ALPHABET = string.ascii_letters + string.digits + " _-./:\"\\\n\té日本語🚀"


def _bounds(field: Any) -> tuple[float | None, float | None, bool, bool]:
    lo = hi = None
    lo_open = hi_open = False
    for m in field.metadata:
        if isinstance(m, annotated_types.Ge):
            lo = m.ge
        elif isinstance(m, annotated_types.Gt):
            lo, lo_open = m.gt, True
        elif isinstance(m, annotated_types.Le):
            hi = m.le
        elif isinstance(m, annotated_types.Lt):
            hi, hi_open = m.lt, True
    return lo, hi, lo_open, hi_open


def _max_length(field: Any) -> int:
    for m in field.metadata:
        if getattr(m, "max_length", None) is not None:
            return int(m.max_length)
    return 64


def _random_value(rng: random.Random, field: Any, current: Any) -> Any:
    """A random value of the field's type within its bounds, or `current` for fields we must not vary."""
    ann = field.annotation
    args = typing.get_args(ann)
    literal = typing.get_origin(ann) is typing.Literal or any(typing.get_origin(a) is typing.Literal for a in args)
    if literal or current is None or isinstance(current, (dict, list)):
        return current  # event names, enums, and conditional (null) fields keep the example's choice
    if isinstance(current, bool):
        return rng.random() < 0.5
    if isinstance(current, (int, float)):
        lo, hi, lo_open, hi_open = _bounds(field)
        lo = 0 if lo is None else lo  # optional fields keep their bounds inside Optional[...]: use safe ones
        hi = 10**6 if hi is None else hi
        if ann is float:
            value = hi if rng.random() < 0.1 and not hi_open else rng.uniform(lo, hi)
            return value if value > lo or not lo_open else hi
        lo_int, hi_int = int(lo) + lo_open, int(hi) - hi_open
        return rng.choice([lo_int, hi_int, rng.randint(lo_int, hi_int)])  # bounds included on purpose
    if isinstance(current, str):
        return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, min(_max_length(field), 40))))
    return current


def random_event(rng: random.Random, family: str) -> dict[str, Any]:
    """A random valid event: an example (so the conditional fields fit its event name) with every free
    field varied within its bounds, a random id, time and representation of the time, and random labels."""
    cls = FAMILIES[family]
    data = example(family, rng.randrange(len(EXAMPLES[family])))
    for name, field in cls.model_fields.items():
        if name in {"event_id", "ts", "labels"} or name not in data:
            continue
        if name == "event_name":  # a closed family's is a Literal; an open family's must stay well-formed
            continue
        if name == "k8s_node" and data[name] is not None:
            data[name] = "node-" + str(rng.randrange(10**6))
            continue
        data[name] = _random_value(rng, field, data[name])
    for sub in ("experiment", "client"):
        if isinstance(data.get(sub), dict):
            data[sub] = {k: "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 64))) for k in data[sub]}
    data["event_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    millis = rng.randrange(946_684_800_000, 4_102_444_800_000)
    if rng.random() < 0.5:
        data["ts"] = millis
    else:
        offset = timedelta(minutes=rng.randrange(-14 * 60, 14 * 60 + 1, 15))
        local = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=millis)
        data["ts"] = local.astimezone(timezone(offset)).isoformat()
    data["labels"] = {f"k{i}": "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 128)))
                      for i in range(rng.randint(0, 16))}
    return data


@pytest.mark.parametrize("family", list(FAMILIES))
def test_random_valid_events_round_trip(family: str) -> None:
    rng = random.Random(f"round-trip-{family}")
    for _ in range(150):
        data = random_event(rng, family)
        result = validate(TOPIC[family], dumps(data))
        assert isinstance(result, Valid), (data, result)
        wire = to_json(result.event)
        assert schemas.parse(TOPIC[family], wire) == result.event
        assert schemas.ts_to_millis(result.event.ts) == (
            data["ts"] if isinstance(data["ts"], int) else schemas.ts_to_millis(datetime.fromisoformat(data["ts"]))
        )


_JUNK: list[Any] = [None, True, 0, -1, 1.5, 2**64, "", "x" * 300, [], {}, {"a": 1}, "NaN", "\u0000"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_random_mutations_never_raise_and_always_name_a_reason(family: str) -> None:
    rng = random.Random(f"fuzz-{family}")
    fields = list(FAMILIES[family].model_fields)
    for _ in range(300):
        data = random_event(rng, family)
        for _ in range(rng.randint(1, 3)):
            choice = rng.random()
            if choice < 0.3:
                data.pop(rng.choice(fields), None)
            elif choice < 0.8:
                data[rng.choice(fields)] = rng.choice(_JUNK)
            else:
                data[rng.choice(["zz", "Prompt", "event-name"])] = rng.choice(_JUNK)
        raw = json.dumps(data).encode()
        damaged = rng.random() < 0.2
        if damaged:  # byte-level damage too (may rename a key, so field names are only checked otherwise)
            cut = rng.randrange(len(raw))
            raw = raw[:cut] + bytes([rng.randrange(256)]) + raw[cut + 1:]
        result = validate(TOPIC[family], raw)
        assert isinstance(result, (Valid, Invalid))
        if isinstance(result, Invalid):
            assert isinstance(result.reason, Reason) and result.message
            if not damaged and result.field is not None:
                assert result.field.split(".")[0] in set(fields) | set(data)


# --- JSON Schema ----------------------------------------------------------------------------------------------


def test_committed_json_schemas_are_up_to_date() -> None:
    assert stale_files() == [], "run `python -m schemas.generate` and commit schemas/json/"
    assert sorted(p.name for p in JSON_DIR.glob("*.schema.json")) == sorted(f"{f}.schema.json" for f in FAMILIES)


def test_check_names_stale_missing_and_orphaned_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path)
    assert generate_main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "xumi_task.schema.json").write_text(render("xumi_task").replace("Attempt", "Try"))
    (tmp_path / "wkf_cpu.schema.json").unlink()
    (tmp_path / "old_family.schema.json").write_text("{}")
    assert generate_main(["--check", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "xumi_task.schema.json (stale)" in err
    assert "wkf_cpu.schema.json (missing)" in err
    assert "old_family.schema.json (no such family)" in err
    write(tmp_path)
    assert stale_files(tmp_path) == []


@pytest.mark.parametrize("family", list(FAMILIES))
def test_json_schema_agrees_with_the_models(family: str) -> None:
    schema = json.loads((JSON_DIR / f"{family}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert schema["x-event-names"] == list(schemas.EVENT_NAMES[family])
    rng = random.Random(f"schema-{family}")
    for data in EXAMPLES[family] + [random_event(rng, family) for _ in range(30)]:
        validator.validate(data)
    validator.validate({**EXAMPLES[family][0], "labels": None})
    # The defects JSON Schema can express are rejected there as well (cross-field rules are not).
    for reason in kinds(family):
        if reason in {Reason.NULL_VALUE, Reason.UNKNOWN_TOPIC, Reason.OVERSIZE, Reason.NOT_JSON, Reason.INCONSISTENT}:
            continue
        _, raw = malformed(reason, family)
        assert not validator.is_valid(json.loads(raw)), f"{family}: JSON Schema accepts a {reason.value} record"


def test_models_are_pydantic_models_with_forbidden_extras() -> None:
    for cls in FAMILIES.values():
        assert issubclass(cls, BaseModel) and cls.model_config.get("extra") == "forbid"
        assert list(cls.model_fields)[:11] == list(schemas.Envelope.model_fields)  # envelope first, in order
