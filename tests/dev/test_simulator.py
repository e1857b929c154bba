"""The simulator: deterministic output, events the schemas accept, each malformed kind rejected with its own
reason, duplicates and out-of-order within their bounds, and a ground truth that an independent recount of the
emitted records reproduces exactly. One test (marked stack) produces to a real Kafka broker.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import schemas
from schemas import Reason
from telemetry.settings import REPO_ROOT
from dev.simulator import SimConfig, Simulation, faults
from dev.simulator.__main__ import main as cli_main
from dev.simulator.config import WINDOW_MS, ConfigError
from dev.simulator.producer import (JsonlSink, KafkaSink, SinkError, generate_here, generate_in_worker,
                                          read_jsonl, run)
from dev.simulator.rand import Rand
from dev.simulator.stream import SIMULATED_TOPICS, Record
from dev.simulator.truth import AUDIT, CREDITS, GROUPS, LLM, LOADS, TASKS, dumps

# Small but busy: 12k records over 12 s of event time, so there are a few windows, finished and failed tasks,
# retries, an orphan or two (the share is raised), and every delivery fault. Faults are raised too, so a few
# hundred malformed records cover every kind; so are Workflow-only tasks and starts delivered after their end.
BASE = SimConfig(seed=7, start_ms=1_771_675_205_000, rate=1_000, events=12_000, orphan_share=0.05,
                 duplicate_share=0.02, out_of_order_share=0.1, malformed_share=0.03, workflow_only_share=0.1,
                 late_start_share=0.1)


def run_records(cfg: SimConfig, check: bool = False) -> tuple[list[Record], dict[str, Any]]:
    sim = Simulation(cfg, check)
    records = [r for batch in sim.records() for r in batch]
    return records, sim.truth.to_dict()


@pytest.fixture(scope="module")
def base_run() -> tuple[list[Record], dict[str, Any]]:
    # check=True also builds every event with its pydantic model and requires the same bytes.
    return run_records(BASE, check=True)


# --- determinism -----------------------------------------------------------------------------------------

def test_same_seed_and_start_give_identical_records_and_truth(base_run):
    records, truth = base_run
    again, truth_again = run_records(BASE)
    assert again == records
    assert dumps(truth_again) == dumps(truth)


def test_another_seed_or_start_gives_other_records(base_run):
    records, _ = base_run
    other_seed, _ = run_records(replace(BASE, seed=8))
    other_start, _ = run_records(replace(BASE, start_ms=BASE.start_ms + 60_000))
    assert [r[2] for r in other_seed] != [r[2] for r in records]
    assert [r[2] for r in other_start] != [r[2] for r in records]


def test_output_has_exactly_the_requested_count_starting_at_start(base_run):
    records, truth = base_run
    assert len(records) == BASE.events == truth["meta"]["records"]
    assert min(r[3] for r in records) == BASE.start_ms
    assert set(r[0] for r in records) == set(SIMULATED_TOPICS)  # every source topic gets traffic


# --- events and faults against the validator ---------------------------------------------------------------

def test_valid_records_validate_and_invalid_ones_match_the_truth(base_run):
    records, truth = base_run
    rejected: dict[str, Counter[str]] = defaultdict(Counter)
    for topic, _, value, ts in records:
        result = schemas.validate(topic, value)
        if result.ok:
            assert schemas.ts_to_millis(result.event.ts) == ts  # the Kafka timestamp is the event's ts
            assert schemas.to_json(result.event) == value  # canonical: model -> JSON -> model round-trips
        else:
            rejected[topic][result.reason.value] += 1
    for topic, counts in truth["topics"].items():
        assert dict(rejected[topic]) == counts["malformed"], topic
    assert len({reason for c in rejected.values() for reason in c}) == len(faults.KINDS)  # every kind injected


def _samples(records) -> dict[str, list[bytes]]:
    """Valid records per topic, one per event name (a finish differs from a start, a failure from a success)."""
    out: dict[str, dict[str, bytes]] = defaultdict(dict)
    for topic, _, value, _ in records:
        result = schemas.validate(topic, value)
        if result.ok:
            out[topic].setdefault(result.event.event_name + str(getattr(result.event, "status", "")), value)
    return {t: list(v.values()) for t, v in out.items()}


@pytest.mark.parametrize("kind", list(faults.KINDS))
def test_every_malformed_kind_is_rejected_with_its_own_reason(base_run, kind):
    samples = _samples(base_run[0])
    applied = 0
    for topic, values in sorted(samples.items()):
        for value in values:
            for seed in range(12):  # each kind has variants; cover them
                rng = Rand(f"{kind}:{topic}:{seed}")
                try:
                    raw, reason, name = faults.malformed(topic, value, rng, (kind,))
                except ValueError:
                    break  # the kind does not apply to this topic (e.g. bad_enum on xumi_task)
                result = schemas.validate(topic, raw)
                assert not result.ok, (topic, kind, raw[:300])
                assert (name, result.reason) == (kind, reason) == (kind, faults.KINDS[kind].reason), (
                    topic, raw[:300], result.message)
                applied += 1
    assert applied >= 12  # applies to at least one topic


def test_duplicates_repeat_the_same_event_with_the_same_bytes(base_run):
    records, truth = base_run
    first: dict[str, tuple[bytes | None, bytes]] = {}
    dups: Counter[str] = Counter()
    for topic, key, value, _ in records:
        result = schemas.validate(topic, value)
        if not result.ok:
            continue
        eid = str(result.event.event_id)
        if eid in first:
            assert first[eid] == (key, value)
            dups[topic] += 1
        else:
            first[eid] = (key, value)
    assert dict(dups) == {t: c["duplicates"] for t, c in truth["topics"].items() if c["duplicates"]}
    assert sum(dups.values()) > 100


def test_out_of_order_delivery_stays_within_the_bound(base_run):
    records, _ = base_run
    newest = records[0][3]
    worst = 0
    for topic, _, value, ts in records:
        if topic == "xumi_task" and b'"xumi.task.started"' in value:
            continue  # some are held past their attempt's end on purpose (the next test)
        worst = max(worst, newest - ts)
        newest = max(newest, ts)
    assert 0 < worst <= BASE.max_out_of_order_ms


def test_late_starts_arrive_after_their_attempts_end_and_workflow_only_tasks_have_no_xumi_event():
    # without other delivery faults, the starts delivered after their attempt's end are exactly the planned ones
    records, truth = run_records(replace(BASE, events=6_000, out_of_order_share=0.0, duplicate_share=0.0))
    ends: dict[tuple[str, int], int] = {}  # attempt -> position of its end record
    late: set[str] = set()
    xumi_tasks: set[str] = set()
    wkf_tasks: set[str] = set()
    for i, (topic, _, value, _) in enumerate(records):
        result = schemas.validate(topic, value)
        if not result.ok or topic not in ("xumi_task", "xumi_load", "wkf_task"):
            continue
        e = result.event
        (wkf_tasks if topic == "wkf_task" else xumi_tasks).add(e.task_id)
        if e.event_name in ("xumi.task.finished", "xumi.task.failed"):
            ends.setdefault((e.task_id, e.attempt), i)
        elif e.event_name == "xumi.task.started" and (e.task_id, e.attempt) in ends:
            late.add(str(e.event_id))  # delivered after its attempt's end
    assert len(late) == truth["tasks"]["late_starts"] > 0
    assert len(wkf_tasks - xumi_tasks) == truth["tasks"]["workflow_only"] > 0


def test_no_out_of_order_when_disabled():
    records, _ = run_records(replace(BASE, events=3_000, out_of_order_share=0.0, duplicate_share=0.0,
                                     late_start_share=0.0))
    stamps = [r[3] for r in records]
    assert stamps == sorted(stamps)


# --- the ground truth, recounted independently from the records ---------------------------------------------

def _ms(event: Any) -> int:
    return schemas.ts_to_millis(event.ts)


def recount(records) -> dict[str, Any]:
    """The truth as a consumer would derive it: validate, dedup by event_id, join tasks, window by ts."""
    topics = {t: {"produced": 0, "valid": 0, "duplicates": 0, "malformed": Counter()} for t in SIMULATED_TOPICS}
    seen: set[str] = set()
    rows: dict[str, dict[tuple, list]] = {g: defaultdict(lambda g=g: [0] * len(GROUPS[g][1])) for g in GROUPS}
    col = {g: {m: i for i, m in enumerate(GROUPS[g][1])} for g in GROUPS}
    attempts: dict[tuple[str, int], dict[str, Any]] = defaultdict(dict)
    load_ms: Counter[tuple[str, int]] = Counter()
    workflow: dict[str, dict[str, Any]] = defaultdict(dict)  # task -> its Workflow events' times and user
    for topic, _, value, _ in records:
        t = topics[topic]
        t["produced"] += 1
        result = schemas.validate(topic, value)
        if not result.ok:
            t["malformed"][result.reason.value] += 1
            continue
        e = result.event
        if str(e.event_id) in seen:
            t["duplicates"] += 1
            continue
        seen.add(str(e.event_id))
        t["valid"] += 1
        ts = _ms(e)
        w = ts - ts % WINDOW_MS
        who = (e.tenant_id, e.department_id, e.project_id, e.user_id)
        if topic == "telemetry.events.v1":
            r = rows[LLM][(w, *who, e.model_id, e.model_version, e.checkpoint_id or "", "")]
            c = col[LLM]
            r[c["requests"]] += 1
            r[c["tokens_in"]] += e.tokens_in
            r[c["tokens_out"]] += e.tokens_out
            r[c["latency_ms_sum"]] += e.latency_ms
            if e.status != "ok":
                r[c["errors"]] += 1
                r[c[f"err_{e.error_type}"]] += 1
        elif topic == "xumi_task":
            a = attempts[(e.task_id, e.attempt)]
            a[e.event_name.rsplit(".", 1)[1]] = ts
            a["dims"] = (*who, e.model, e.model_version, e.checkpoint_id or "", e.checkpoint_version or "")
        elif topic == "wkf_task":
            workflow[e.task_id][e.event_type] = ts
            workflow[e.task_id]["who"] = who
        elif topic == "xumi_load" and e.event_name.endswith(".finish"):
            r = rows[LOADS][(w, *who, e.base_model, e.labels["model_version"], e.checkpoint_id, e.checkpoint_version)]
            c = col[LOADS]
            r[c["loads"]] += 1
            r[c["load_cache_hits"]] += e.cache_hit
            r[c["load_bytes"]] += e.bytes
            r[c["load_ms_sum"]] += e.duration_ms
            load_ms[(e.task_id, int(e.labels["attempt"]))] += e.duration_ms
        elif topic in ("wkf_cpu", "wkf_gpu", "kuber_cpu", "kuber_gpu"):
            lab = e.labels
            r = rows[CREDITS][(w, *who, lab["model"], lab["model_version"], lab.get("checkpoint_id", ""),
                               lab.get("checkpoint_version", ""))]
            system = topic.split("_")[0]
            exact = json.loads(value, parse_float=Decimal)  # money is exact: from the text, not a double
            r[col[CREDITS][f"{topic}_s"]] += exact["units"] * exact["seconds"]
            r[col[CREDITS][f"{system}_credits"]] += exact["credits"]
        elif topic in ("pbac_access", "pbac_politics", "pbac_service", "asset_access"):
            r = rows[AUDIT][(w, *who)]
            r[col[AUDIT]["audit_events"]] += 1
            r[col[AUDIT]["access_denied"]] += getattr(e, "decision", None) == "deny"
        elif topic == "asset_transfer":
            r = rows[AUDIT][(w, *who)]
            r[col[AUDIT]["transfers"]] += 1
            r[col[AUDIT]["transfer_bytes"]] += e.bytes
    orphans = []
    xumi_tasks = {task_id for task_id, _ in attempts}
    for task_id, w in workflow.items():  # a task only the Workflow service reported: attempt 1 from its events
        if task_id in xumi_tasks:
            continue
        end = w.get("TaskCompleted", w.get("TaskFailed"))
        if end is None:
            orphans.append([task_id, 1, w["TaskStarted"]])
            continue
        r = rows[TASKS][(end - end % WINDOW_MS, *w["who"], "", "", "", "")]
        r[col[TASKS]["tasks_finished" if "TaskCompleted" in w else "tasks_failed"]] += 1
    for (task_id, n), a in attempts.items():
        end = a.get("finished", a.get("failed"))
        if end is None:
            orphans.append([task_id, n, max(v for k, v in a.items() if k != "dims")])
            continue
        r = rows[TASKS][(end - end % WINDOW_MS, *a["dims"])]
        c = col[TASKS]
        r[c["tasks_finished" if "finished" in a else "tasks_failed"]] += 1
        r[c["task_retries"]] += n > 1
        r[c["task_queue_ms_sum"]] += a["started"] - a["queued"]
        r[c["task_load_ms_sum"]] += load_ms[(task_id, n)]
        if "initialized" in a:
            r[c["task_init_ms_sum"]] += a["initialized"] - a["started"] - load_ms[(task_id, n)]
            r[c["task_inference_ms_sum"]] += end - a["initialized"]
        r[c["task_total_ms_sum"]] += end - a["queued"]
    for t in topics.values():
        t["malformed"] = dict(t["malformed"])
    return {"topics": topics, "rows": {g: dict(v) for g, v in rows.items()}, "orphans": sorted(orphans)}


def test_truth_equals_an_independent_recount_of_the_records(base_run):
    records, truth = base_run
    got = recount(records)
    assert got["topics"] == truth["topics"]
    for group, table in truth["windows"].items():
        n_dims = len(table["key"])
        expected = {tuple(row[:n_dims]): row[n_dims:] for row in table["rows"]}
        assert got["rows"][group] == expected, group  # exact, credits included (decimals)
        assert expected, group  # every group has rows
    assert got["orphans"] == truth["tasks"]["orphans"]
    assert truth["tasks"]["orphaned"] == len(got["orphans"]) > 0
    assert truth["tasks"]["failed"] > 0 and truth["tasks"]["retried_attempts"] > 0
    assert sum(truth["dlq"].values()) == sum(sum(t["malformed"].values()) for t in got["topics"].values())


def test_per_user_and_per_project_totals_add_up_the_windows(base_run):
    _, truth = base_run
    metrics = truth["per_user"]["metrics"]
    for rollup, who in (("per_user", 3), ("per_project", 2)):
        totals: dict[tuple, list] = defaultdict(lambda: [0] * len(metrics))
        for group, table in truth["windows"].items():
            names = table["metrics"]
            n_dims = len(table["key"])
            for row in table["rows"]:
                dims = row[1:n_dims]
                acc = totals[(dims[0], dims[1], dims[who])]
                for name, value in zip(names, row[n_dims:]):
                    acc[metrics.index(name)] += value
        assert {tuple(r[:3]): r[3:] for r in truth[rollup]["rows"]} == dict(totals)


def test_every_ended_attempt_has_its_lifecycle_in_order(base_run):
    records, _ = base_run
    names: dict[tuple[str, int], dict[str, int]] = defaultdict(dict)
    wkf: dict[str, set[str]] = defaultdict(set)
    for topic, key, value, _ in records:
        result = schemas.validate(topic, value)
        if not result.ok:
            continue
        e = result.event
        if topic == "xumi_task":
            names[(e.task_id, e.attempt)][e.event_name] = _ms(e)
            assert key == e.task_id.encode()
        elif topic == "wkf_task":
            wkf[e.task_id].add(e.event_type)
    for (task_id, n), steps in names.items():
        assert steps["xumi.task.queued"] <= steps["xumi.task.started"], task_id
        if "xumi.task.initialized" in steps:
            assert steps["xumi.task.started"] <= steps["xumi.task.initialized"]
        assert "TaskStarted" in wkf[task_id]
    tasks_with_end = {t for (t, _), s in names.items() if "xumi.task.finished" in s}
    assert all("TaskCompleted" in wkf[t] for t in tasks_with_end)


# --- sending: pacing and the worker process change nothing ----------------------------------------------------

def test_pacing_and_the_generator_process_do_not_change_content(tmp_path: Path):
    cfg = replace(BASE, events=4_000)
    outputs = []
    for i, (gen, rate) in enumerate([(generate_here, None), (generate_here, 200_000.0), (generate_in_worker, None)]):
        batches, truth = gen(cfg)
        path = tmp_path / f"out{i}.jsonl"
        stats = run(batches, JsonlSink(str(path)), rate, cfg.events, progress_every_s=3600)
        assert stats.sent == cfg.events and stats.errors == {}
        outputs.append((path.read_bytes(), dumps(truth())))
    assert outputs[0] == outputs[1] == outputs[2]
    direct, _ = run_records(cfg)
    assert list(read_jsonl(str(tmp_path / "out0.jsonl"))) == direct


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_sigterm_stops_the_generator_process_too(tmp_path: Path):
    # Demos and benchmarks stop their tail of traffic with SIGTERM; the generator child used to outlive it,
    # blocked on its pipe for good.
    sim = subprocess.Popen([sys.executable, "-m", "dev.simulator", "--events", "1000000", "--rate", "50",
                            "--generator-process", "--out", str(tmp_path / "s.jsonl")],
                           cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (children := _children(sim.pid)):
        assert time.monotonic() < deadline and sim.poll() is None, "the simulator started no generator process"
        time.sleep(0.1)
    time.sleep(1)  # sending at 50/s: the generator is well ahead, blocked on the full pipe
    sim.terminate()
    assert sim.wait(timeout=30) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{c}").exists() and "Z" not in (Path(f"/proc/{c}/stat").read_text().rsplit(")", 1)[1].split()[0])
              for c in children):
        assert time.monotonic() < deadline, f"generator process {children} still running after the simulator stopped"
        time.sleep(0.2)


def test_jsonl_round_trips_records_that_are_not_utf8(tmp_path: Path):
    records = [("xumi_task", b"task-1", b"\xff\xfe{\x00", 1_771_675_200_000),
               ("wkf_task", None, b"{}", 1_771_675_200_001)]
    sink = JsonlSink(str(tmp_path / "r.jsonl"))
    sink.send(records)
    sink.close(1)
    assert list(read_jsonl(str(tmp_path / "r.jsonl"))) == records


def test_unreachable_kafka_is_a_clear_error():
    with pytest.raises(SinkError, match="unreachable.*dev.stack up kafka"):
        KafkaSink("127.0.0.1:1", {"log_level": 0}).preflight(SIMULATED_TOPICS, timeout_s=1)


def test_cli_writes_records_and_truth(tmp_path: Path, capsys):
    out, truth = tmp_path / "events.jsonl", tmp_path / "truth.json"
    code = cli_main(["--seed", "3", "--start", "2026-02-21T12:00:00Z", "--rate", "2000", "--events", "3000",
                     "--max-speed", "--out", str(out), "--truth", str(truth)])
    assert code == 0
    assert sum(1 for _ in out.open()) == 3000
    data = json.loads(truth.read_text())
    assert data["meta"]["start_ms"] == 1_771_675_200_000 and data["meta"]["records"] == 3000
    assert "start 2026-02-21T12:00:00.000Z" in capsys.readouterr().err


@pytest.mark.parametrize("argv, fragment", [
    (["--rate", "0"], "rate=0.0"),
    (["--malformed", "1.5"], "malformed_share"),
    (["--malformed-kinds", "nope"], "unknown ['nope']"),
    (["--start", "yesterday"], "yesterday"),
])
def test_cli_rejects_bad_options_with_exit_2(argv, fragment, capsys, tmp_path):
    assert cli_main([*argv, "--out", str(tmp_path / "x.jsonl")]) == 2
    assert fragment in capsys.readouterr().err


def test_config_names_the_bad_value():
    with pytest.raises(ConfigError, match="users"):
        SimConfig(users=1)


def test_restricted_malformed_kinds_are_the_only_ones_injected():
    _, truth = run_records(replace(BASE, events=4_000, malformed_kinds=("bad_uuid", "oversize")))
    assert set(truth["dlq"]) == {Reason.BAD_UUID.value, Reason.OVERSIZE.value}


# --- a real Kafka broker ---------------------------------------------------------------------------------------


def _end_offset(consumer: Any, tp: Any) -> int:
    """High watermark of a partition; a just-started broker may still be electing leaders, so retry a while."""
    from confluent_kafka import KafkaException

    for _ in range(60):
        try:
            return consumer.get_watermark_offsets(tp, 10)[1]
        except KafkaException:
            time.sleep(0.5)
    return consumer.get_watermark_offsets(tp, 10)[1]


@pytest.mark.stack
def test_records_reach_kafka_with_event_time_stamps_and_keys(kafka_url: str, tmp_path: Path):
    from confluent_kafka import Consumer, TopicPartition

    # The broker is shared with other tests: read only what lands after the current end of each partition.
    consumer = Consumer({"bootstrap.servers": kafka_url, "group.id": "test-simulator", "enable.auto.commit": False})
    try:
        start: list[TopicPartition] = []
        for topic in SIMULATED_TOPICS:
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                start.append(TopicPartition(topic, p, _end_offset(consumer, TopicPartition(topic, p))))
        cfg = replace(BASE, events=2_000)
        truth_path = tmp_path / "truth.json"
        code = cli_main(["--seed", str(cfg.seed), "--start", str(cfg.start_ms), "--rate", "1000", "--events", "2000",
                         "--orphan-share", "0.05", "--duplicates", "0.02", "--out-of-order", "0.1",
                         "--malformed", "0.03", "--workflow-only", "0.1", "--late-starts", "0.1", "--max-speed",
                         "--bootstrap", kafka_url, "--truth", str(truth_path),
                         "--progress-every", "3600"])
        assert code == 0
        truth = json.loads(truth_path.read_text())
        expected, _ = run_records(cfg)
        consumer.assign(start)
        want = sum(t["produced"] for t in truth["topics"].values())
        got = []
        while len(got) < want:
            msg = consumer.poll(10)
            assert msg is not None, f"{len(got)} of {want} records arrived"
            assert msg.error() is None, msg.error()
            got.append((msg.topic(), msg.key(), msg.value(), msg.timestamp()[1]))
        assert consumer.poll(1) is None  # and nothing more
        assert sorted(got) == sorted(expected)  # the same records; Kafka timestamps = event ts; keys kept
    finally:
        consumer.close()


def test_credits_near_the_maximum_are_exact_decimals_in_records_and_truth():
    """--credits-near-max: every credit record charges just under the contract's 1e12 with all six decimals, as an
    exact JSON number; the truth's sums are exact decimals, and a double could not have carried them."""
    records, truth = run_records(replace(BASE, events=6_000, credits_near_max=True), check=True)
    charged = []
    for topic, _, value, _ in records:
        if topic in ("wkf_cpu", "wkf_gpu", "kuber_cpu", "kuber_gpu") and schemas.validate(topic, value).ok:
            credits = json.loads(value, parse_float=Decimal)["credits"]
            assert Decimal("5e11") <= credits < Decimal("1e12") and credits == credits.quantize(Decimal("1e-6"))
            charged.append(credits)
    assert len(charged) > 100 and len({c.as_tuple().digits[-6:] for c in charged}) > 1
    got = recount(records)["rows"][CREDITS]
    table = truth["windows"][CREDITS]
    n_dims = len(table["key"])
    assert got == {tuple(row[:n_dims]): row[n_dims:] for row in table["rows"]}
    spec = truth["per_user"]
    at = spec["metrics"].index("wkf_credits")
    totals = [row[3 + at] for row in spec["rows"]]
    assert max(totals) > Decimal("1e12") and all(isinstance(t, Decimal) for t in totals)
    assert sum(map(float, charged)) != float(sum(charged)) or any(Decimal(repr(float(c))) != c for c in charged)
