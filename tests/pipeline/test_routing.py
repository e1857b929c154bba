"""Routing, the job's one Python hop for every record: over a simulator stream, first-seen valid events
contribute exactly the ground truth's window sums, and every rejected record carries the injected reason."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dev.simulator import truth as ground_truth
from dev.simulator.producer import read_jsonl
from pipeline import chtime, money, routing
from telemetry.settings import REPO_ROOT
from tests.support.truth_compare import GROUP_TOPICS, expected, summed

@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    subprocess.run([sys.executable, "-m", "dev.simulator", "--seed", "11", "--events", "20000",
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


# Hostile record values: bytes of every kind, text full of control characters (six bytes each once JSON-escaped),
# astral characters, and records far over the size cap, short or long.
HOSTILE_VALUES = st.one_of(
    st.none(),
    st.binary(max_size=4096),
    st.text(max_size=4096).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.builds(lambda ch, n: ch * n, st.sampled_from([b"\x01", b"\x00", b"\n", "\U0001F600".encode(), b"\xff", b"a"]),
              st.integers(0, 300_000)),
    st.builds(lambda head, n: head + b"\x01" * n, st.binary(max_size=64), st.integers(0, 200_000)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=HOSTILE_VALUES, message=st.text(max_size=5000), ts=st.integers(-2**63, 2**63 - 1))
def test_a_dlq_record_is_bounded_and_keeps_what_it_can_of_any_record(raw, message, ts):
    rec = routing.dlq_record("telemetry.events.v1", 11, 2**62, ts, raw, routing.Rejected("not_json", message), "v1", ts)
    text = json.dumps(rec, separators=(",", ":"))
    assert len(text.encode()) <= routing.DLQ_RECORD_MAX_BYTES
    if raw is None:
        assert (rec["payload"], rec["payload_encoding"], rec["payload_bytes"]) == ("", "null", 0)
        return
    kept = base64.b64decode(rec["payload"]) if rec["payload_encoding"] == "base64" else rec["payload"].encode()
    assert kept == raw[: routing.DLQ_PAYLOAD_BYTES]  # byte-exact, as much as the cap allows
    assert rec["payload_bytes"] == len(raw)
    assert rec["payload_sha256"] == hashlib.sha256(raw).hexdigest()
    assert rec["payload_truncated"] == int(len(raw) > routing.DLQ_PAYLOAD_BYTES)
    assert len(rec["message"]) <= routing.DLQ_MESSAGE_CHARS


def test_the_oversize_record_that_stopped_the_job_fits_its_dlq_topic():
    """200,008 bytes of \x01 made a 1.2 MB DLQ record (each byte escaped to six), over Kafka's 1 MiB maximum."""
    raw = b"\x01" * 200_008
    rec = routing.dlq_record("xumi_task", 0, 7, 0, raw, routing.Rejected("oversize", "record is 200008 bytes"), "v", 0)
    assert len(json.dumps(rec, separators=(",", ":"))) < 32 * 1024
    assert rec["payload_encoding"] == "base64" and rec["payload_truncated"] == 1


@pytest.mark.parametrize("ms, text", [
    (0, "1970-01-01 00:00:00.000"), (1_795_564_801_234, "2026-11-25 00:00:01.234"),
    (2**63 - 1, "2299-12-31 23:59:59.999"), (-(2**63), "1900-01-01 00:00:00.000"),
])
def test_datetime_text_stays_within_datetime64(ms, text):
    assert chtime.datetime_text(ms) == text


NOW_MS = 1_795_564_800_000
SKEW_MS = 300_000


@pytest.mark.parametrize("ts, record_ts, refused", [
    (NOW_MS, NOW_MS, None),
    (NOW_MS + SKEW_MS, NOW_MS + SKEW_MS, None),  # exactly the allowed skew
    (NOW_MS + SKEW_MS + 1, NOW_MS, "ts"),
    (NOW_MS, NOW_MS + 86_400_000, "Kafka timestamp"),  # the report: records stamped a day ahead
    (NOW_MS - 365 * 86_400_000, 0, None),  # old and unstamped: late or a correction, but never refused for time
])
def test_a_record_too_far_ahead_of_the_clock_is_refused(ts, record_ts, refused):
    result = routing.future_timestamp(ts, record_ts, NOW_MS, SKEW_MS)
    if refused is None:
        assert result is None
    else:
        assert result.reason == "future_timestamp" and result.message.startswith(refused)


def test_an_exception_is_an_internal_error_naming_it():
    rejected = routing.internal_error(KeyError("attempt"))
    assert (rejected.reason, rejected.message) == ("internal_error", "KeyError: 'attempt'")


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


def test_asset_transfers_are_audit_rows_without_counting_as_audit_events(simulated):
    """Uploads and downloads (seed 001) reach the audit log: who moved which asset which way; usage still counts
    them as transfers only, so the windows' audit_events stay what they were."""
    records, _ = simulated
    rows, _, _ = routed(records)
    transfers = [r for r in rows if r["topic"] == "asset_transfer"]
    assert "asset_transfer" in routing.AUDIT_TOPICS and transfers
    for row in transfers:
        event = json.loads(row["event_json"])
        assert (row["subject"], row["action"], row["resource"]) == (event["user_id"], event["direction"], event["asset_id"])
        assert (row["audit_events"], row["access_denied"], row["transfers"]) == (0, 0, 1)
