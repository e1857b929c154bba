"""Routing, the job's one Python hop for every record: over a simulator stream, first-seen valid events
contribute exactly the ground truth's window sums, and every rejected record carries the injected reason."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections import Counter

import pytest

from telemetry import money, routing
from telemetry.settings import REPO_ROOT
from telemetry.simulator import truth as ground_truth
from telemetry.simulator.producer import read_jsonl
from tests.truth_compare import GROUP_TOPICS, expected, summed

@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    subprocess.run([sys.executable, "-m", "telemetry.simulator", "--seed", "11", "--events", "20000",
                    "--start", "2026-11-25T00:00:00Z", "--out", str(out / "s.jsonl"), "--truth", str(out / "t.json")],
                   check=True, cwd=REPO_ROOT, capture_output=True)
    return list(read_jsonl(str(out / "s.jsonl"))), ground_truth.load(out / "t.json")


def routed(records):
    seen: set[str] = set()
    rows, rejected, duplicates = [], Counter(), 0
    for topic, _key, value, _ts in records:
        result = routing.route(topic, value)
        if isinstance(result, routing.Rejected):
            rejected[result.reason] += 1
            continue
        row = dict(zip(routing.ROW_NAMES, result))
        row.update({m: money.from_micros(row[m] or 0) for m in routing.MONEY_METRICS})  # as the job writes them
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
    want = expected(truth, group)
    assert want  # the simulator made rows for this group
    # A load's start event lands in its window with zeros (it counts in ingest, not in usage); the truth has no row.
    assert summed(truth, group, (r for r in rows if r["topic"] in GROUP_TOPICS[group])) == want


def test_dlq_record_keeps_the_bytes_and_position():
    raw = b"\xff\xfenot utf-8"
    rec = routing.dlq_record("xumi_task", 2, 41, 1795564800000, raw, routing.Rejected("not_json", "bad"), "v1", 1795564801234)
    assert base64.b64decode(rec["payload"]) == raw and rec["payload_encoding"] == "base64"
    assert (rec["topic"], rec["kafka_partition"], rec["kafka_offset"], rec["reason"]) == ("xumi_task", 2, 41, "not_json")
    assert rec["ts"] == "2026-11-25 00:00:00.000" and rec["rejected_at"] == "2026-11-25 00:00:01.234"
    text = routing.dlq_record("t", 0, 0, 0, b'{"a":', routing.Rejected("not_json", "m"), "v1", 0)
    assert (text["payload"], text["payload_encoding"]) == ('{"a":', "utf-8")


SLICE_MS = 1000
LATENESS_MS = 600_000


@pytest.mark.parametrize("watermark, want", [
    (1_000_998, routing.ON_TIME),     # the record's slice [1,000,000, 1,001,000) is still open
    (1_000_999, routing.CORRECTION),  # Flink fires a window at end - 1: the window operator would drop the record
    (1_001_000, routing.CORRECTION),
    (1_010_000 + LATENESS_MS - 1, routing.CORRECTION),  # the event's 10 s window is still within the lateness
    (1_010_000 + LATENESS_MS, routing.LATE),
])
def test_lane_of_a_valid_event_follows_the_watermark(watermark, want):
    ts = record_ts = 1_000_500
    assert routing.lane(ts, record_ts, watermark, LATENESS_MS, SLICE_MS) == want


def test_lane_slices_by_record_time_and_lateness_by_event_time():
    # an event stamped 4 s before the Kafka record that carries it: its record's slice is open, it is on time
    assert routing.lane(1_000_500, 1_004_500, 1_001_999, LATENESS_MS, SLICE_MS) == routing.ON_TIME
