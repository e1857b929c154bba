"""The simulated nodes' metrics (dev/simulator/nodes.py, dev/node_exporter.py): deterministic, following the run's
attempts, valid exposition text (promtool), and, scraped by a real Prometheus, what the enrichment reads back for
the run's tasks: status ok for every attempt, values equal to the exporter's own within the 1 % of assert_close.
Last, the demo's wiring to the stack's Prometheus (marked stack: it starts that Prometheus).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from pipeline.enrichment import OK, EnrichmentConfig, PrometheusEnricher
from pipeline.enrichment.queries import window_grid
from pipeline.enrichment.stats import Stats, columns, window_stats
from dev import demo
from dev.node_exporter import NodeExporter
from dev.simulator.config import SimConfig
from dev.simulator.lifecycle import NodeUse
from dev.simulator.nodes import GIB, IDLE_FB_MIB, MIB, NodeMetrics, NodeSeries, node_uses, shift
from dev.stack.prometheus import SCRAPE_INTERVAL_S, SIMULATED_NODES_JOB
from telemetry.settings import REPO_ROOT
from tests.support.fixtures_prometheus import assert_close, run_prometheus
from tests.support.fixtures_stack import bring_up

# 8 s of a busy platform; tasks are short (time scale 8 / 300), as in `make demo`
RUN = SimConfig(seed=5, start_ms=1_771_675_200_000, rate=1_000, events=8_000)
SCRAPE_S = 1
STEP_S = 2  # >= the scrape interval: a finer step only repeats samples
RATE_WINDOW_S = 8  # >= 4 scrape intervals, as the enrichment's 1m is for the stack's 5 s (and 15 s in production)


@pytest.fixture(scope="module")
def uses() -> list[NodeUse]:
    return node_uses(RUN)


def test_the_attempts_are_the_runs_whatever_its_start(uses: list[NodeUse]) -> None:
    later = node_uses(replace(RUN, start_ms=RUN.start_ms + 123_457))
    assert later == shift(uses, 123_457)
    assert len(uses) > 100 and len({u.host_name for u in uses}) > 10


def test_a_node_holds_what_its_attempts_hold(uses: list[NodeUse]) -> None:
    metrics = NodeMetrics(RUN, uses)
    checked = exact = 0
    for host, s in metrics.series.items():
        mine = [u for u in uses if u.host_name == host]
        vm = s.node.vm
        for u in mine:
            if u.stop_ms == u.start_ms:
                continue
            mid = (u.start_ms + u.stop_ms) / 2
            at_mid = [v for v in mine if v.start_ms <= mid < v.stop_ms]
            gpus = min(vm.gpus, sum(v.gpus for v in at_mid))
            assert s.gpus_held.at(mid) == gpus
            assert s.fb_used_mib(0, mid) > IDLE_FB_MIB
            assert s.busy_cpus.at(mid) == pytest.approx(min(vm.vcpus, s.base.busy_cpus + sum(v.cpus for v in at_mid)))
            assert s.ram.at(mid) == pytest.approx(min(0.95 * vm.ram_gb * GIB,
                                                      (s.base.ram_gb + sum(v.mem_gb for v in at_mid)) * GIB))
            checked += 1
        # GPU-seconds: the held GPUs' integral over the run is what the attempts held, where none was overbooked
        held = sum(g.integral(RUN.end_ms + 60_000) - g.integral(RUN.start_ms - 60_000) for g in s.gpu_held)
        wanted = sum(u.gpus * (u.stop_ms - u.start_ms) / 1000 for u in mine)
        assert held <= wanted + 1e-6
        if peak_demand(mine) <= vm.gpus:
            assert held == pytest.approx(wanted)
            exact += 1
    assert checked == sum(u.stop_ms > u.start_ms for u in uses) and exact > 10


def peak_demand(uses: list[NodeUse]) -> int:
    """The most GPUs the attempts asked of their node at once."""
    changes = sorted([(u.start_ms, u.gpus) for u in uses] + [(u.stop_ms, -u.gpus) for u in uses],
                     key=lambda c: (c[0], c[1]))  # at equal times the releases come first
    level = peak = 0
    for _, delta in changes:
        level += delta
        peak = max(peak, level)
    return peak


def test_idle_nodes_and_monotonic_counters(uses: list[NodeUse]) -> None:
    metrics = NodeMetrics(RUN, uses)
    before = RUN.start_ms - 10_000
    grid = range(RUN.start_ms - 5_000, RUN.end_ms + 5_000, 37)
    for s in metrics.series.values():
        for i in range(s.node.vm.gpus):
            assert s.gpu_util(i, before) == 0 and s.fb_used_mib(i, before) == IDLE_FB_MIB
        assert s.busy_cpus.at(before) == pytest.approx(s.base.busy_cpus)
        for read in (lambda t, s=s: s.cpu_seconds(t)[0], lambda t, s=s: s.cpu_seconds(t)[1],
                     lambda t, s=s: s.counters(t)["rx"], lambda t, s=s: s.counters(t)["read"]):
            values = [read(t) for t in grid]
            assert all(b >= a for a, b in zip(values, values[1:]))


def test_same_seed_same_text_and_promtool_accepts_it(uses: list[NodeUse]) -> None:
    one = NodeExporter(RUN, port=0)
    two = NodeExporter(RUN, port=0)
    try:
        at = RUN.start_ms + 4_321
        text = one.render(at)
        assert text == two.render(at)
        assert text != one.render(at + 1_000)
        promtool = shutil.which("promtool")
        assert promtool, "promtool not on PATH: run `make system-deps` (Debian package prometheus)"
        lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        # 3: lint findings only. DCGM's and node_exporter's own names (MemTotal, modelName) are camelCase; the
        # enrichment queries them as they are, so that finding is expected and nothing else may be found.
        findings = [line for line in (lint.stdout + lint.stderr).splitlines() if line.strip()]
        assert lint.returncode in (0, 3), findings
        assert all("should be written in 'snake_case' not 'camelCase'" in line for line in findings), findings
        for name in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "node_cpu_seconds_total",
                     "node_memory_MemAvailable_bytes", "node_network_receive_bytes_total", "node_disk_read_bytes_total"):
            assert f"\n{name}{{" in text
    finally:
        one.close()
        two.close()


def test_only_metrics_is_served_and_a_run_is_placed_once_ahead() -> None:
    exporter = NodeExporter(RUN, start=False, port=0).serve()
    try:
        assert requests.get(exporter.url.replace("/metrics", "/nope"), timeout=5).status_code == 404
        got = requests.get(exporter.url, timeout=5)
        assert got.status_code == 200 and got.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        with pytest.raises(ValueError, match="in the future"):
            exporter.start_at(int(time.time() * 1000) - 1_000)
        exporter.start_at(int(time.time() * 1000) + 60_000)
        with pytest.raises(ValueError, match="once"):
            exporter.start_at(int(time.time() * 1000) + 120_000)
    finally:
        exporter.close()


def test_cli_refuses_bad_options_and_a_taken_port() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dev.node_exporter", "--events", "500", *args], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=120)

    bad = run("--rate", "-5")
    assert bad.returncode == 2 and "rate=-5.0: must be > 0" in bad.stderr
    exporter = NodeExporter(replace(RUN, events=500), port=0)
    try:
        taken = run("--port", str(exporter.server.server_address[1]))
        assert taken.returncode == 2 and "choose another --port" in taken.stderr
    finally:
        exporter.close()


# --- against a real Prometheus ------------------------------------------------------------------------------------


def prom(url: str, query: str, at: float) -> list[dict[str, Any]]:
    body = requests.get(f"{url}/api/v1/query", params={"query": query, "time": str(at)}, timeout=10).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def extrapolated_rate(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    """Prometheus 2.x rate() over the samples in [start, end] (promql/functions.go extrapolatedRate)."""
    picked = [(t, v) for t, v in samples if start <= t <= end]
    if len(picked) < 2:
        return None
    (t0, v0), (t1, v1) = picked[0], picked[-1]
    sampled = t1 - t0
    average = sampled / (len(picked) - 1)
    to_start, to_end = t0 - start, end - t1
    if v1 - v0 > 0 and v0 >= 0:
        to_start = min(to_start, sampled * v0 / (v1 - v0))
    span = sampled + (to_start if to_start < average * 1.1 else average / 2)
    span += to_end if to_end < average * 1.1 else average / 2
    return (v1 - v0) * span / sampled / (end - start)


def expected_columns(s: NodeSeries, scrapes: list[float], use: NodeUse) -> dict[str, Any]:
    """The enrichment columns from the exporter's own values at the times Prometheus stored, evaluated as the
    default templates' PromQL does on the enrichment's grid (gauges: the last sample; counters: rate())."""
    first, last = window_grid(use.start_ms, use.stop_ms, STEP_S)
    vm = s.node.vm
    per: dict[str, list[list[tuple[float, float]]]] = {}
    for t in range(first, last + 1, STEP_S):
        at = max(x for x in scrapes if x <= t)
        ms = round(at * 1000)

        def rate(read: Any) -> float:
            points = [(x, read(round(x * 1000))) for x in scrapes]
            value = extrapolated_rate(points, t - RATE_WINDOW_S, t)
            assert value is not None
            return value

        idle = rate(lambda m: s.cpu_seconds(m)[0])
        values = {
            "gpu_util": [s.gpu_util(i, ms) for i in range(vm.gpus)],
            "gpu_mem": [sum(s.fb_used_mib(i, ms) for i in range(vm.gpus)) * MIB] if vm.gpus else [],
            "cpu_util": [100 * (1 - idle)], "cpu_busy": [vm.vcpus * (1 - idle)],
            "ram": [s.ram.at(ms)],
            "net": [rate(lambda m: s.counters(m)["rx"]) + rate(lambda m: s.counters(m)["tx"])],
            "disk": [rate(lambda m: s.counters(m)["read"]) + rate(lambda m: s.counters(m)["written"])],
        }
        for name, vs in values.items():
            series = per.setdefault(name, [[] for _ in vs])
            for i, v in enumerate(vs):
                series[i].append((float(t), v))
    stats: dict[str, Stats | None] = {name: window_stats(series, first, last) for name, series in per.items()}
    return columns(stats, (use.stop_ms - use.start_ms) / 1000)


def test_prometheus_scraping_the_exporter_enriches_every_attempt_ok(tmp_path: Path) -> None:
    exporter = NodeExporter(RUN, start=False, port=0).serve()
    host, port = exporter.server.server_address[:2]
    config = (f"global:\n  scrape_interval: {SCRAPE_S}s\n  scrape_timeout: {SCRAPE_S}s\n"
              f"scrape_configs:\n  - job_name: simulated-nodes\n    static_configs:\n"
              f"      - targets: ['{host}:{port}']\n")
    try:
        with run_prometheus(tmp_path, config) as url:
            deadline = time.monotonic() + 30
            while not prom(url, 'up{job="simulated-nodes"} == 1', time.time()):
                assert time.monotonic() < deadline, "Prometheus did not scrape the exporter within 30 s"
                time.sleep(0.5)
            # the first evaluation time (a step before the first attempt at worst) has a full rate window
            start_ms = int((time.time() + RATE_WINDOW_S + 2 * STEP_S + 2) * 1000)
            exporter.start_at(start_ms)
            metrics = exporter.metrics
            uses = metrics.uses
            finished = max(u.stop_ms for u in uses) / 1000
            while time.time() < finished + STEP_S + 2 * SCRAPE_S:
                time.sleep(0.5)
            cfg = EnrichmentConfig(prometheus_url=url, step_s=STEP_S, rate_window=f"{RATE_WINDOW_S}s",
                                   final_after_s=0, timeout_s=10)

            async def enrich_all() -> list[dict[str, Any]]:
                enricher = PrometheusEnricher(cfg)
                try:
                    return list(await asyncio.gather(*(enricher.enrich(
                        {"host_name": u.host_name, "started_at": u.start_ms, "finished_at": u.stop_ms, "version": 2})
                        for u in uses)))
                finally:
                    await enricher.close()

            facts = asyncio.run(enrich_all())
            statuses = [f["enrichment_status"] for f in facts]
            assert statuses.count(OK) == len(uses), {s: statuses.count(s) for s in set(statuses)}

            # values: per GPU count, the attempt whose GPU 0 was busiest in the 8 s before it, against the exporter's
            # own at the times Prometheus stored. Its first evaluation reads a 5 s GPU average that lies in those 8 s,
            # so more than 3 s busy there leaves that average above 0.
            picked: dict[int, tuple[float, int]] = {}
            for i, u in enumerate(uses):
                s = metrics.series[u.host_name]
                g = s.gpu_held[0]
                busy = (g.integral(u.start_ms) - g.integral(u.start_ms - 8_000)) / 8
                picked[s.node.vm.gpus] = max(picked.get(s.node.vm.gpus, (-1.0, -1)), (busy, i))
            assert set(picked) == {1, 4} and min(busy for busy, _ in picked.values()) > 0.4, picked
            for _, i in picked.values():
                u, s = uses[i], metrics.series[uses[i].host_name]
                stored = prom(url, f'node_memory_MemTotal_bytes{{node="{u.host_name}"}}[5m]', finished + 5)
                scrapes = [float(t) for t, _ in stored[0]["values"]]
                want = expected_columns(s, scrapes, u)
                assert_close(facts[i], want)
                assert facts[i]["gpu_seconds"] > 0 and facts[i]["cpu_seconds"] > 0
    finally:
        exporter.close()


@pytest.mark.stack
def test_the_stacks_prometheus_scrapes_the_demos_exporter_while_it_is_listed(stack_env: dict[str, str]) -> None:
    """The demo's wiring: the stack's Prometheus (its generated configuration) finds the exporter through the
    targets file, scrapes it, and drops it once the file is gone."""
    s = bring_up(stack_env, "prometheus")
    exporter = NodeExporter(RUN, start=False, port=0)
    try:
        scraped_at = demo.serve_node_metrics(s, exporter)
        assert scraped_at is not None, "the stack's Prometheus did not scrape the exporter"
        host = exporter.metrics.nodes[0].host_name
        assert prom(s.prometheus_url, f'node_memory_MemTotal_bytes{{node="{host}",job="{SIMULATED_NODES_JOB}"}}',
                    time.time())
        run_ms = demo.first_record_at(scraped_at)
        assert run_ms / 1000 >= scraped_at + 2 * SCRAPE_INTERVAL_S + 15 and run_ms % 10_000 == 0
    finally:
        demo.withdraw_node_metrics(s, exporter)
    deadline = time.monotonic() + 30
    while any(t["labels"]["job"] == SIMULATED_NODES_JOB for t in requests.get(
            f"{s.prometheus_url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]):
        assert time.monotonic() < deadline, "Prometheus kept the exporter's target after its file was removed"
        time.sleep(0.5)
