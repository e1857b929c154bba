"""Benchmark: the streaming job end to end on the local stack. The simulator produces at a steady rate in real
time (event time = wall time), the job runs on the session cluster (`flink run`), the loader inserts its rows and
services.heartbeat keeps every source partition's watermark moving (--heartbeat-ms 0: none); ClickHouse is
polled until every window of the run holds the ground truth. Prints figures; asserts nothing.

  sustained   records produced per second, and whether the job kept up (its consumer lag while producing,
              and how long after the last record the last window was complete)
  freshness   per LLM request, the time from its event time until ClickHouse's usage_10s counts it.
              ClickHouse shows a window's count, not single events, so the k-th request of a window to become
              visible is taken to be the k-th by event time, spread evenly over the window (the simulator
              sends at an even rate); each poll's new requests get that poll's time.

--catch-up measures the job's capacity instead: the simulator (with the heartbeat) fills Kafka first, with no job
running, then the job starts on that backlog, and the figure is records per second from the job running until it
has read them all (its committed consumer lag reaches 0), with no producer competing for the CPU.

Run with the stack up and migrated (`make stack-up migrate`):
    PYTHONPATH=. python benchmarks/bench_job.py [--rate 10000] [--duration 60] [-- JOB OPTIONS...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402
from confluent_kafka import Consumer, TopicPartition  # noqa: E402

from telemetry import clickhouse  # noqa: E402
from telemetry import settings as cfg  # noqa: E402
from dev.demo import next_window_start, simulate, stop_run, submit_job, wait_running  # noqa: E402
from pipeline.routing import WINDOW_MS  # noqa: E402
from telemetry.topics import SOURCE_TOPICS  # noqa: E402

POLL_S = 0.5
LANE_COUNTERS = ("events_valid", "events_corrections", "events_late")
TAIL_RATE = 200  # without heartbeats: clean records/s after the run, so event time moves and the last windows close


def job_lag(s: cfg.Settings, group: str, ends: dict[tuple[str, int], int] | None = None) -> int:
    """Records of the source topics beyond what the job's consumer group committed (it commits per checkpoint):
    up to each partition's end now, or up to the offsets in ends. -1 while the group has committed nothing."""
    consumer = Consumer({"bootstrap.servers": s.kafka_direct_url, "group.id": group, "enable.auto.commit": False})
    try:
        lag = 0
        for tp in consumer.committed(source_partitions(consumer), timeout=10):
            end = ends[(tp.topic, tp.partition)] if ends else consumer.get_watermark_offsets(tp, timeout=10)[1]
            if tp.offset < 0 and end > 0:
                return -1  # nothing committed yet: the job has not completed a checkpoint
            lag += max(0, end - max(tp.offset, 0))
        return lag
    except Exception:  # noqa: BLE001 - the coordinator may not know the group yet: no figure this time
        return -1
    finally:
        consumer.close()


def end_offsets(s: cfg.Settings) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": s.kafka_direct_url, "group.id": "bench-job-ends"})
    try:
        return {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1]
                for tp in source_partitions(consumer)}
    finally:
        consumer.close()


def source_partitions(consumer: Consumer) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t in SOURCE_TOPICS for p in consumer.list_topics(t, timeout=10).topics[t].partitions]


def visible_requests(ch: Any, db: str, start_ms: int, end_ms: int) -> dict[int, int]:
    """LLM requests usage_10s counts per window of [start_ms, end_ms)."""
    rows = ch.query(f"SELECT toUnixTimestamp(window_start) * 1000, sum(requests) FROM {db}.usage_10s "
                    f"WHERE window_start >= toDateTime({start_ms // 1000}) "
                    f"AND window_start < toDateTime({end_ms // 1000}) GROUP BY window_start").result_rows
    return {int(window): int(count) for window, count in rows}


def start_heartbeat(interval_ms: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "services.heartbeat", "--interval-ms", str(interval_ms)])


def start_loader(log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the loader keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "services.loader"], stdout=out, stderr=subprocess.STDOUT)


def window_requests(truth: dict[str, Any]) -> dict[int, int]:
    llm = truth["windows"]["llm"]
    at = len(llm["key"]) + llm["metrics"].index("requests")
    out: dict[int, int] = {}
    for row in llm["rows"]:
        out[row[0]] = out.get(row[0], 0) + row[at]
    return out


def freshness(seen: dict[int, list[tuple[float, int]]], want: dict[int, int], since_ms: int) -> list[float]:
    """Seconds from event time to visibility for every request of the windows from since_ms on (see the module
    doc for the estimate)."""
    out: list[float] = []
    for window, total in want.items():
        if window < since_ms:
            continue
        shown = 0
        for at, count in seen.get(window, []):
            for k in range(shown, min(count, total)):
                event_s = (window + WINDOW_MS * (k + 0.5) / total) / 1000
                out.append(at - event_s)
            shown = max(shown, count)
    return out


def route_counters(s: cfg.Settings, job_id: str, wait_s: float = 20.0) -> dict[str, int]:
    """The job's events_valid / events_corrections / events_late so far, summed over the subtasks of `validate and
    route` (Flink's REST API); {} if unavailable. The JobManager fetches a job's metrics from the TaskManagers when
    asked and at most every 10 s, so the first answers are empty."""
    base = f"{s.flink_rest_url}/jobs/{job_id}"
    names = ",".join(f"validate_and_route.{c}" for c in LANE_COUNTERS)
    deadline = time.time() + wait_s
    try:
        vertex = next(v["id"] for v in requests.get(base, timeout=5).json()["vertices"] if "validate and route" in v["name"])
        while True:
            values = requests.get(f"{base}/vertices/{vertex}/subtasks/metrics", params={"get": names, "agg": "sum"},
                                  timeout=5).json()
            if values or time.time() > deadline:
                return {m["id"].rsplit(".", 1)[-1]: int(m["sum"]) for m in values}
            time.sleep(1)
    except (requests.RequestException, StopIteration, KeyError, ValueError) as exc:
        print(f"[bench] no lane counters from {base}: {exc!r}", flush=True)
        return {}


def print_lanes(lanes: dict[str, int]) -> None:
    """Which path the valid events took: a run whose events mostly took the correction path (one row each instead
    of one per slice and key) measured something other than the job's normal work."""
    valid = lanes.get("events_valid", 0)
    if not valid:
        print("[bench] the job's lane counters were not available", flush=True)
        return
    print(f"[bench] lanes: {lanes.get('events_corrections', 0) / valid:.1%} of valid events were corrections, "
          f"{lanes.get('events_late', 0) / valid:.1%} late", flush=True)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=int, default=10_000, help="records per second (default 10,000)")
    p.add_argument("--duration", type=int, default=60, help="seconds of production (default 60)")
    p.add_argument("--timeout", type=int, default=300, help="give up this long after production ends")
    p.add_argument("--warmup", type=int, default=30,
                   help="seconds at the start left out of the steady-state freshness (default 30: the job's idle "
                        "timeout, for which, without heartbeats, partitions that never get a record hold the first "
                        "windows back; with them, the job's start-up and JIT warm-up)")
    p.add_argument("--heartbeat-ms", type=int, default=200,
                   help="run services.heartbeat at this interval beside the job (default 200); 0: none, and a "
                        "clean low-rate tail of traffic after the run closes its last windows instead")
    p.add_argument("--catch-up", action="store_true",
                   help="produce first, then start the job on the backlog: the job's capacity, not freshness")
    p.add_argument("job_options", nargs="*", help="extra options for jobs/telemetry_job.py (after --)")
    a = p.parse_args(argv)
    s = cfg.load()
    work = s.state_dir / "bench-job"
    work.mkdir(parents=True, exist_ok=True)
    if a.catch_up:
        if not a.heartbeat_ms:
            p.error("--catch-up needs heartbeats to close the backlog's last windows: give --heartbeat-ms above 0")
        return catch_up(a, s, work)
    events = a.rate * a.duration
    job_from_ms = int(time.time() * 1000)
    print(f"[bench] submitting the job; then {events:,} records at {a.rate:,}/s", flush=True)
    job_id = submit_job(s, job_from_ms, work / "flink-run.log", a.job_options)
    wait_running(s, job_id)
    group = f"demo-{job_from_ms}"  # submit_job's consumer group
    loader = start_loader(work / "loader.log")
    ch = clickhouse.connect(s)
    seen: dict[int, list[tuple[float, int]]] = {}
    lags: list[int] = []
    feeder = None  # what moves event time on after the run: the heartbeat, or a tail of clean traffic
    want: dict[int, int] | None = None
    try:
        if a.heartbeat_ms:
            feeder = start_heartbeat(a.heartbeat_ms)
        # The simulator starts just before it: a run that started late would measure the correction path.
        start_ms = next_window_start(2000)
        end_ms = start_ms + a.duration * 1000  # planned; the truth's meta.end_ms says where the run really ended
        print(f"[bench] job running; records from {time.strftime('%H:%M:%S', time.gmtime(start_ms / 1000))} UTC",
              flush=True)
        while time.time() * 1000 < start_ms - 200:
            time.sleep(0.05)
        producer = simulate(s, start_ms, events, a.rate, work / "truth.json", seed=3)
        last_lag = 0.0
        while True:
            now = time.time()
            for window, count in visible_requests(ch, s.clickhouse_database, start_ms, end_ms + 60_000).items():
                history = seen.setdefault(window, [])
                if not history or history[-1][1] != count:
                    history.append((now, count))
            if producer.poll() is None and now - last_lag >= 5:
                lags.append(job_lag(s, group))
                print(f"[bench] {now - start_ms / 1000:5.0f} s: job lag {lags[-1]:,} records, "
                      f"{sum(c[-1][1] for c in seen.values()):,} requests visible", flush=True)
                last_lag = now
            if producer.poll() is not None:
                if producer.returncode != 0:
                    raise SystemExit("the simulator failed")
                if want is None:
                    produced_at = now
                    truth = json.loads((work / "truth.json").read_text())
                    want = window_requests(truth)
                    # The tail starts in the window after the run's last one, so it adds to none of the run's.
                    last_event_ms = truth["meta"]["end_ms"]
                    end_ms = (last_event_ms // WINDOW_MS + 1) * WINDOW_MS
                    if feeder is None:
                        feeder = simulate(s, end_ms, TAIL_RATE * a.timeout, TAIL_RATE, None, clean=True, seed=4)
                if all(seen.get(w, [(0, 0)])[-1][1] >= n for w, n in want.items()):
                    complete_at = now
                    lanes = route_counters(s, job_id)
                    break
                if now - produced_at > a.timeout:
                    raise SystemExit(f"the run's windows were not complete {a.timeout} s after production ended")
            time.sleep(POLL_S)
    finally:
        stop_run(s, job_id, loader, feeder)
    fresh = freshness(seen, want, start_ms)
    steady = freshness(seen, want, start_ms + a.warmup * 1000)
    valid_lags = [x for x in lags if x >= 0]
    print(f"[bench] produced {events:,} records in {produced_at - start_ms / 1000:.1f} s "
          f"({events / (produced_at - start_ms / 1000):,.0f} records/s); job lag while producing: max "
          f"{max(valid_lags, default=-1):,}, last {valid_lags[-1] if valid_lags else -1:,} records")
    print(f"[bench] every window complete {complete_at - last_event_ms / 1000:.1f} s after the run's last event time; "
          f"end to end {events / (complete_at - start_ms / 1000):,.0f} records/s")
    print(f"[bench] freshness of {len(fresh):,} LLM requests: p50 {quantile(fresh, 0.5):.2f} s, "
          f"p99 {quantile(fresh, 0.99):.2f} s, max {max(fresh):.2f} s")
    if steady:
        print(f"[bench] after the first {a.warmup} s ({len(steady):,} requests): p50 {quantile(steady, 0.5):.2f} s, "
              f"p99 {quantile(steady, 0.99):.2f} s, max {max(steady):.2f} s")
    print_lanes(lanes)
    return 0


def catch_up(a: argparse.Namespace, s: cfg.Settings, work: Path) -> int:
    start_ms = (int(time.time() * 1000) // WINDOW_MS + 1) * WINDOW_MS
    events = a.rate * a.duration
    print(f"[bench] catch-up: {events:,} records at {a.rate:,}/s into Kafka first, then the job", flush=True)
    feeder = start_heartbeat(a.heartbeat_ms)
    loader = None
    job_id = None
    try:
        while time.time() * 1000 < start_ms:
            time.sleep(0.05)
        producer = simulate(s, start_ms, events, a.rate, work / "truth.json", seed=3)
        if producer.wait() != 0:
            raise SystemExit("the simulator failed")
        truth = json.loads((work / "truth.json").read_text())
        want = window_requests(truth)
        # The backlog ends here; heartbeats after it only close the last windows.
        ends = end_offsets(s)
        job_id = submit_job(s, start_ms, work / "flink-run.log", a.job_options)
        wait_running(s, job_id)
        running_at = time.time()
        loader = start_loader(work / "loader.log")
        group = f"demo-{start_ms}"
        while (lag := job_lag(s, group, ends)) != 0:
            now = time.time()
            print(f"[bench] {now - running_at:5.0f} s after the job started: lag {lag:,} records", flush=True)
            if now - running_at > a.timeout:
                raise SystemExit(f"the job had not caught up {a.timeout} s after it started")
            time.sleep(2)
        drained_at = time.time()
        ch = clickhouse.connect(s)
        end_ms = truth["meta"]["end_ms"] + WINDOW_MS
        while True:
            rows = visible_requests(ch, s.clickhouse_database, start_ms, end_ms)
            if all(rows.get(w, 0) >= n for w, n in want.items()):
                complete_at = time.time()
                lanes = route_counters(s, job_id)
                break
            if time.time() - drained_at > a.timeout:
                raise SystemExit(f"the run's windows were not complete {a.timeout} s after the job caught up")
            time.sleep(POLL_S)
    finally:
        if job_id and loader:
            stop_run(s, job_id, loader, feeder)
        else:
            feeder.terminate()
            feeder.wait()
    took = drained_at - running_at
    print(f"[bench] the job read the backlog of {events:,} records (and the heartbeats among them) in {took:.1f} s "
          f"after it was running, as its checkpoints committed: {events / took:,.0f} records/s")
    print(f"[bench] every window complete in ClickHouse {complete_at - running_at:.1f} s after the job was running")
    print_lanes(lanes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
