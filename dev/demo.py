"""`make demo`: the streaming job on the local session cluster, fed by the simulator, checked in ClickHouse.

Submits jobs/telemetry_job.py with `flink run` (as production does), starts the loader, serves the simulated
nodes' metrics to the stack's Prometheus (dev/node_exporter.py, so the job's enrichment finds them), sends about
200k records over every topic (malformed ones included, Workflow-only tasks and starts delivered after their end
among them), waits until ClickHouse holds the simulator's ground truth (expected_totals), prints a summary per
role and the share of task facts enriched, cancels the job and stops the loader, then starts the API and prints
one call per role with a token of that role (dev/demo_api.py).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import requests

from telemetry import clickhouse
from telemetry import settings as cfg
from pipeline.enrichment import load_config
from pipeline.routing import WINDOW_MS
from dev import demo_api
from dev.node_exporter import NodeExporter
from dev.simulator import truth as ground_truth
from dev.simulator.config import SimConfig
from dev.stack.flink import cli
from dev.stack.prometheus import SCRAPE_INTERVAL_S, SIMULATED_NODES_JOB, node_targets

TIMEOUT_S = 240
SEED = 1
SCRAPE_WAIT_S = 30


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def submit_job(s: cfg.Settings, start_ms: int, log: Path, options: list[str] | None = None) -> str:
    """`flink run` the job from the records of start_ms on, consumer group demo-<start_ms>; its job id."""
    flink, env = cli(s)
    command = [str(flink), "run", "-d", "-py", str(cfg.REPO_ROOT / "jobs" / "telemetry_job.py"), "--",
               "--startup-mode", "timestamp", "--startup-timestamp-ms", str(start_ms),
               "--group-id", f"demo-{start_ms}", "--lake-uri", Path(s.effective_lake_uri).as_uri(), *(options or [])]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    log.write_text(done.stdout + done.stderr)
    found = re.search(r"JobID ([0-9a-f]{32})", done.stdout)
    if done.returncode != 0 or not found:
        raise SystemExit(f"flink run failed (exit {done.returncode}); its output is in {log}")
    return found.group(1)


def next_window_start(lead_ms: int) -> int:
    """The first window boundary at least lead_ms from now: where a run's event time starts once the job runs, so
    it fills whole windows and no record is stamped before the heartbeats beside it (which would send it down the
    job's correction path)."""
    return -(-(int(time.time() * 1000) + lead_ms) // WINDOW_MS) * WINDOW_MS


def wait_running(s: cfg.Settings, job_id: str) -> None:
    for _ in range(120):
        job = requests.get(f"{s.flink_rest_url}/jobs/{job_id}", timeout=5).json()
        if job["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in job["vertices"]):
            return
        if job["state"] in ("FAILED", "CANCELED", "FINISHED"):
            raise SystemExit(f"job {job_id} is {job['state']}: see {s.flink_rest_url}/#/job/{job_id}/exceptions")
        time.sleep(1)
    raise SystemExit(f"job {job_id} did not start running within 120 s")


def serve_node_metrics(s: cfg.Settings, exporter: NodeExporter) -> float | None:
    """Serve the exporter, list it in the file the stack's Prometheus watches (job simulated-nodes) and wait for
    its first scrape; the time of that scrape (epoch s), or None if Prometheus did not scrape it in time."""
    exporter.serve()
    path = node_targets(s)
    path.parent.mkdir(parents=True, exist_ok=True)
    host, port = exporter.server.server_address[:2]
    staged = path.with_suffix(".tmp")  # renamed into place: Prometheus never reads half a file
    staged.write_text(json.dumps([{"targets": [f"{host}:{port}"]}]))
    staged.replace(path)
    deadline = time.monotonic() + SCRAPE_WAIT_S
    while time.monotonic() < deadline:
        active = requests.get(f"{s.prometheus_url}/api/v1/targets", params={"state": "active"},
                              timeout=5).json()["data"]["activeTargets"]
        if any(t["labels"].get("job") == SIMULATED_NODES_JOB and t["health"] == "up" for t in active):
            return time.time()
        time.sleep(1)
    return None


def withdraw_node_metrics(s: cfg.Settings, exporter: NodeExporter | None) -> None:
    node_targets(s).unlink(missing_ok=True)
    if exporter is not None:
        exporter.close()


def first_record_at(scraped_at: float | None) -> int:
    """When the run starts: the next window boundary, late enough that Prometheus holds two scrapes of the
    simulated nodes before the enrichment's first evaluation time (a step before the first task at worst), so
    rate() has its two samples."""
    lead_ms = 1000
    if scraped_at is not None:
        ready_ms = (scraped_at + 2 * SCRAPE_INTERVAL_S + load_config().step_s) * 1000
        lead_ms = max(lead_ms, int(ready_ms - time.time() * 1000))
    return next_window_start(lead_ms)


def enrichment_shares(ch: Any, db: str, span: dict[str, int]) -> str:
    """The run's task facts by enrichment status, e.g. "ok 97.9 % (3,712), partial 2.1 % (80)"."""
    rows = ch.query(f"SELECT enrichment_status, count() FROM {db}.task_facts FINAL WHERE {in_span('finished_at')} "
                    "GROUP BY enrichment_status ORDER BY count() DESC", parameters=span).result_rows
    total = sum(n for _, n in rows) or 1
    return ", ".join(f"{status} {100 * n / total:.1f} % ({n:,})" for status, n in rows)


def simulate(s: cfg.Settings, start_ms: int, events: int, rate: int, truth: Path | None, clean: bool = False,
             seed: int = SEED) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "dev.simulator", "--seed", str(seed), "--events", str(events),
               "--rate", str(rate), "--start", str(start_ms), "--bootstrap", s.kafka_direct_url]
    if truth:
        command += ["--truth", str(truth)]
    if clean:
        command += ["--malformed", "0", "--duplicates", "0", "--progress-every", "3600"]
    return subprocess.Popen(command)


def stop_run(s: cfg.Settings, job_id: str, loader: subprocess.Popen[bytes],
             feeder: subprocess.Popen[bytes] | None) -> None:
    """Stop what keeps event time moving (heartbeats, a tail of traffic), cancel the job, let the loader finish
    its batch and exit."""
    if feeder:
        feeder.terminate()
        feeder.wait()
    requests.patch(f"{s.flink_rest_url}/jobs/{job_id}", params={"mode": "cancel"}, timeout=10)
    loader.send_signal(signal.SIGTERM)
    loader.wait(timeout=60)


def column_total(truth: dict[str, Any], group: str, metric: str) -> Any:
    table = truth["windows"][group]
    at = len(table["key"]) + table["metrics"].index(metric)
    return sum(r[at] for r in table["rows"])


def expected_totals(truth: dict[str, Any]) -> dict[str, Any]:
    """What ClickHouse must hold: the ended tasks include the Workflow-only ones, the queue time the starts
    delivered after their end (a correction each), the credits every micro-credit."""
    ended = truth["tasks"]["finished"] + truth["tasks"]["failed"]
    return {"requests": column_total(truth, "llm", "requests"), "dlq": sum(truth["dlq"].values()),
            "ended tasks": ended, "tasks in usage": ended,
            "task queue ms": column_total(truth, "tasks", "task_queue_ms_sum"),
            "credits": column_total(truth, "credits", "wkf_credits") + column_total(truth, "credits", "kuber_credits")}


# This run's event time: earlier demo runs' rows stay in ClickHouse.
def in_span(column: str) -> str:
    return f"{column} >= toDateTime({{since:UInt32}}) AND {column} < toDateTime({{until:UInt32}})"


def loaded_totals(ch: Any, db: str, span: dict[str, int]) -> dict[str, Any]:
    def q(sql: str) -> Any:
        return ch.query(sql, parameters=span).result_rows[0][0]

    usage = f"FROM {db}.usage_10s WHERE {in_span('window_start')}"
    return {
        "requests": q(f"SELECT sum(requests) {usage}"),
        "dlq": q(f"SELECT count() FROM {db}.dlq_events FINAL WHERE {in_span('ts')}"),
        "ended tasks": q(f"SELECT count() FROM {db}.task_facts FINAL WHERE status IN ('finished', 'failed') "
                         f"AND {in_span('finished_at')}"),
        "tasks in usage": q(f"SELECT sum(tasks) {usage}"),
        "task queue ms": q(f"SELECT sum(task_queue_ms_sum) {usage}"),
        "credits": q(f"SELECT sum(credits) {usage}"),
    }


def cell(value: Any) -> str:
    """A table cell: large numbers with one decimal, small ones (rates, shares) with three significant digits."""
    if isinstance(value, (float, Decimal)):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return str(value)


def role_summaries(db: str) -> dict[str, str]:
    """The summary's queries per role, title -> SQL with {since:UInt32} / {until:UInt32} (epoch seconds); each reads the
    coarsest table that answers it (benchmarks/bench_history.py times them over a year of history)."""
    return {
        "Financial Director: top users by GPU-seconds (credits)": f"""
            SELECT user_id, department_id, round(sum(wkf_gpu_seconds + kuber_gpu_seconds), 1) AS gpu_seconds,
                   round(sum(credits), 4) AS credits
            FROM {db}.usage_span(lo = toDateTime({{since:UInt32}}), hi = toDateTime({{until:UInt32}}), step = 86400)
            GROUP BY user_id, department_id ORDER BY gpu_seconds DESC LIMIT 5""",
        "Pipeline TD: model x checkpoint failure rate and p95 inference time": f"""
            SELECT base_model, checkpoint_id, count() AS runs, round(countIf(status = 'failed') / count(), 3) AS failure_rate,
                   quantile(0.95)(inference_ms) AS p95_inference_ms
            FROM {db}.task_facts FINAL WHERE status IN ('finished', 'failed') AND {in_span('finished_at')}
            GROUP BY base_model, checkpoint_id ORDER BY runs DESC LIMIT 5""",
        "Admin: VM types: task runs, busy seconds, enrichment": f"""
            SELECT vm_type, count() AS runs, round(sum(total_ms) / 1000, 1) AS busy_seconds,
                   groupUniqArray(enrichment_status) AS enrichment
            FROM {db}.task_facts FINAL WHERE {in_span('finished_at')}
            GROUP BY vm_type ORDER BY runs DESC""",
        "Pipeline health: DLQ by reason": f"""
            SELECT reason, count() AS records FROM {db}.dlq_events FINAL WHERE {in_span('ts')}
            GROUP BY reason ORDER BY records DESC""",
    }


def summary(ch: Any, db: str, span: dict[str, int]) -> None:
    for title, sql in role_summaries(db).items():
        result = ch.query(sql, parameters=span)
        print(f"\n  {title}")
        print("    " + " | ".join(result.column_names))
        for row in result.result_rows:
            print("    " + " | ".join(cell(v) for v in row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="records the simulator sends (default 200,000)")
    parser.add_argument("--rate", type=int, default=20_000, help="records per second (default 20,000)")
    args = parser.parse_args(argv)
    s = cfg.load()
    work = s.state_dir / "demo"
    work.mkdir(parents=True, exist_ok=True)
    truth_path = work / "truth.json"
    started = time.monotonic()
    # The run's attempts are simulated for the node metrics while Flink starts the job; the run is placed later.
    pool = ThreadPoolExecutor(1)
    building: Future[NodeExporter] = pool.submit(
        NodeExporter, SimConfig(seed=SEED, events=args.events, rate=args.rate), start=False, port=0)
    pool.shutdown(wait=False)
    say("submitting jobs/telemetry_job.py to the session cluster (flink run)")
    job_id = submit_job(s, int(time.time() * 1000), work / "flink-run.log")
    wait_running(s, job_id)
    say(f"job {job_id} running: Flink UI {s.flink_rest_url}/#/job/{job_id}/overview")
    loader_log = open(work / "loader.log", "wb")
    loader = subprocess.Popen([sys.executable, "-m", "services.loader"], stdout=loader_log, stderr=subprocess.STDOUT)
    say(f"loader running (log {work / 'loader.log'})")
    heartbeat = subprocess.Popen([sys.executable, "-m", "services.heartbeat"], stdout=loader_log,
                                 stderr=subprocess.STDOUT)
    say("heartbeats running: a record per source partition every "
        f"{s.heartbeat_interval_ms} ms, so quiet partitions never hold windows back")
    exporter: NodeExporter | None = None
    try:
        exporter = building.result()
        scraped_at = serve_node_metrics(s, exporter)
        if scraped_at is None:
            say(f"WARNING: Prometheus ({s.prometheus_url}) did not scrape the simulated nodes ({exporter.url}) "
                f"within {SCRAPE_WAIT_S} s, so task enrichment will be `unavailable`. A Prometheus started before "
                f"the stack scraped them lacks the job {SIMULATED_NODES_JOB}: `python -m dev.stack down "
                "prometheus`, then run the demo again")
        else:
            say(f"simulated nodes' metrics at {exporter.url}, scraped by Prometheus (job {SIMULATED_NODES_JOB})")
        # Heartbeats keep every partition's watermark moving, so the last windows fire although the traffic stops.
        start_ms = first_record_at(scraped_at)
        exporter.start_at(start_ms)
        duration_ms = -(-args.events * 1000 // args.rate // WINDOW_MS) * WINDOW_MS
        span = {"since": start_ms // 1000, "until": (start_ms + duration_ms) // 1000}
        while time.time() * 1000 < start_ms - 200:
            time.sleep(0.05)
        say(f"simulator: {args.events:,} records at {args.rate:,}/s")
        main_run = simulate(s, start_ms, args.events, args.rate, truth_path)
        if main_run.wait() != 0:
            raise SystemExit("the simulator failed")
        want = expected_totals(ground_truth.load(truth_path))
        ch = clickhouse.connect(s)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            have = loaded_totals(ch, s.clickhouse_database, span)
            say("in ClickHouse: " + ", ".join(f"{k} {have[k]:,}/{want[k]:,}" for k in want))
            if have == want:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"ClickHouse did not reach the ground truth within {TIMEOUT_S} s")
            time.sleep(3)
        say(f"ground truth reached in ClickHouse {time.monotonic() - started:.0f} s after submitting the job")
        summary(ch, s.clickhouse_database, span)
        print()
        say("task facts by enrichment status: " + enrichment_shares(ch, s.clickhouse_database, span))
        say(f"raw lake (Parquet, topic=/date=/hour=): {s.effective_lake_uri}")
        say(f"ground truth: {truth_path}")
    finally:
        stop_run(s, job_id, loader, heartbeat)
        withdraw_node_metrics(s, exporter)
        loader_log.close()
        say(f"job {job_id} cancelled, loader stopped")
    demo_api.show(s, SEED, start_ms, start_ms + duration_ms, work, say)
    say("API stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
