"""Routing, the job's one Python hop for every record: over a simulator stream, first-seen valid events
contribute exactly the ground truth's window sums, and every rejected record carries the injected reason."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections import Counter, defaultdict

import pytest

from telemetry import routing
from telemetry.settings import REPO_ROOT
from telemetry.simulator.producer import read_jsonl

GROUP_TOPICS = {
    "llm": {"telemetry.events.v1"},
    "loads": {"xumi_load"},
    "credits": {"wkf_cpu", "wkf_gpu", "kuber_cpu", "kuber_gpu"},
    "audit": {"pbac_access", "pbac_politics", "pbac_service", "asset_access", "asset_transfer"},
}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    subprocess.run([sys.executable, "-m", "telemetry.simulator", "--seed", "11", "--events", "20000",
                    "--start", "2026-11-25T00:00:00Z", "--out", str(out / "s.jsonl"), "--truth", str(out / "t.json")],
                   check=True, cwd=REPO_ROOT, capture_output=True)
    return list(read_jsonl(str(out / "s.jsonl"))), json.loads((out / "t.json").read_text())


def routed(records):
    seen: set[str] = set()
    rows, rejected, duplicates = [], Counter(), 0
    for topic, _key, value, _ts in records:
        result = routing.route(topic, value)
        if isinstance(result, routing.Rejected):
            rejected[result.reason] += 1
            continue
        row = dict(zip(routing.ROW_NAMES, result))
        if row["event_id"] in seen:
            duplicates += 1
            continue
        seen.add(row["event_id"])
        rows.append(row)
    return rows, rejected, duplicates


def test_rejections_and_duplicates_match_the_truth(simulated):
    records, truth = simulated
    rows, rejected, duplicates = routed(records)
    assert dict(rejected) == truth["dlq"]
    assert duplicates == sum(t["duplicates"] for t in truth["topics"].values())
    assert len(rows) == sum(t["valid"] for t in truth["topics"].values())


@pytest.mark.parametrize("group", sorted(GROUP_TOPICS))
def test_window_sums_match_the_truth(simulated, group):
    records, truth = simulated
    rows, _, _ = routed(records)
    spec = truth["windows"][group]
    dims = spec["key"][1:]
    errors_by_type = [m for m in spec["metrics"] if m.startswith("err_")]
    plain = [m for m in spec["metrics"] if not m.startswith("err_")]
    expected = {tuple(r[: len(spec["key"])]): dict(zip(spec["metrics"], r[len(spec["key"]):])) for r in spec["rows"]}
    actual: dict[tuple, dict[str, float]] = defaultdict(lambda: dict.fromkeys(spec["metrics"], 0))
    for row in rows:
        if row["topic"] not in GROUP_TOPICS[group]:
            continue
        acc = actual[(row["window_start_ms"], *(row[d] for d in dims))]
        for m in plain:
            acc[m] += row[m]
        if row["error_type"] and errors_by_type:
            acc[f"err_{row['error_type']}"] += 1
    assert expected  # the simulator made rows for this group
    # A load's start event lands in its window with zeros (it counts in ingest, not in usage); the truth has no row.
    assert {k: dict(v) for k, v in actual.items() if any(v.values())} == expected


def test_dlq_record_keeps_the_bytes_and_position():
    raw = b"\xff\xfenot utf-8"
    rec = routing.dlq_record("xumi_task", 2, 41, 1795564800000, raw, routing.Rejected("not_json", "bad"), "v1", 1795564801234)
    assert base64.b64decode(rec["payload"]) == raw and rec["payload_encoding"] == "base64"
    assert (rec["topic"], rec["kafka_partition"], rec["kafka_offset"], rec["reason"]) == ("xumi_task", 2, 41, "not_json")
    assert rec["ts"] == "2026-11-25 00:00:00.000" and rec["rejected_at"] == "2026-11-25 00:00:01.234"
    text = routing.dlq_record("t", 0, 0, 0, b'{"a":', routing.Rejected("not_json", "m"), "v1", 0)
    assert (text["payload"], text["payload_encoding"]) == ('{"a":', "utf-8")
