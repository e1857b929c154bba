"""A real Prometheus (Debian's 2.42) serving known node history: series written as OpenMetrics, loaded with
`promtool tsdb create-blocks-from openmetrics`, served read-only on a free 127.0.0.1 port; or, with
`run_prometheus`, one with a configuration of the test's own (scraping what the test serves).

Import the fixture into a test module (`from tests.support.fixtures_prometheus import prometheus_history`), or serve
other nodes' history with `serve_history`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from pipeline.enrichment.queries import window_grid

BASE_S = 1_767_225_600  # 2026-01-01T00:00:00Z
SCRAPE_S = 15
HISTORY = range(BASE_S - 900, BASE_S + 7200 + 1, SCRAPE_S)  # scrape times of every series
RAM_STEP_S = BASE_S + 3600  # MemAvailable drops here, so windows on either side see different RAM


@dataclass(frozen=True)
class Node:
    """A node's known behaviour: every gauge is constant (RAM steps once), every counter grows linearly."""

    name: str
    gpu_util: tuple[float, ...] = ()  # percent per GPU
    gpu_fb_mib: tuple[float, ...] = ()  # MiB used per GPU
    cpus: int = 4
    idle_per_cpu: float = 0.5  # idle seconds per second per CPU
    mem_total: float = 64e9
    mem_available: tuple[float, float] = (40e9, 20e9)  # before / from RAM_STEP_S
    net_rx: float = 1e6  # bytes/s on eth0 (lo carries extra traffic that must not count)
    net_tx: float = 2e6
    disk_read: float = 1e5
    disk_written: float = 3e5
    extra: dict[str, float] = field(default_factory=dict)

    def ram(self, t: float) -> float:
        return self.mem_total - self.mem_available[t >= RAM_STEP_S]


NODES = (
    Node("aks-gpu-a", gpu_util=(40.0, 80.0), gpu_fb_mib=(1000.0, 3000.0), cpus=4, idle_per_cpu=0.25),
    Node("aks-gpu-b", gpu_util=(10.0, 20.0, 30.0, 40.0), gpu_fb_mib=(500.0,) * 4, cpus=8, idle_per_cpu=0.9,
         net_rx=5e5, net_tx=5e5, disk_read=2e6, disk_written=1e6, mem_available=(60e9, 50e9)),
    Node("aks-cpu-c", cpus=2, idle_per_cpu=0.6),  # no GPUs: GPU queries come back empty
)


MIB = 1_048_576
def expected(node: Node, start_ms: int, end_ms: int) -> dict[str, Any]:
    """The enrichment columns from the node's known series, sampled on the query grid."""
    first, last = window_grid(start_ms, end_ms, SCRAPE_S)
    grid = range(first, last + 1, 15)
    ram = [node.ram(t) for t in grid]
    seconds = (end_ms - start_ms) / 1000
    util = 100 * (1 - node.idle_per_cpu)
    out: dict[str, Any] = {
        "cpu_util_avg": util, "cpu_util_max": util, "ram_avg": sum(ram) / len(ram), "ram_max": max(ram),
        "net_avg": node.net_rx + node.net_tx, "net_max": node.net_rx + node.net_tx,
        "disk_avg": node.disk_read + node.disk_written, "disk_max": node.disk_read + node.disk_written,
        "cpu_seconds": node.cpus * (1 - node.idle_per_cpu) * seconds,
        "gpu_util_avg": None, "gpu_util_max": None, "gpu_mem_avg": None, "gpu_mem_max": None, "gpu_seconds": 0.0,
    }
    if node.gpu_util:
        mem = sum(node.gpu_fb_mib) * MIB
        out.update(gpu_util_avg=sum(node.gpu_util) / len(node.gpu_util), gpu_util_max=max(node.gpu_util),
                   gpu_mem_avg=mem, gpu_mem_max=mem, gpu_seconds=sum(node.gpu_util) / 100 * seconds)
    return out


def assert_close(got: dict[str, Any], want: dict[str, Any]) -> None:
    for key, value in want.items():
        if value is None:
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(value, rel=0.01, abs=1e-9), key


def openmetrics(nodes: tuple[Node, ...] = NODES) -> str:
    """Every node's series over HISTORY in OpenMetrics text (one family at a time, series contiguous)."""
    lines: list[str] = []

    def family(name: str, kind: str, series: list[tuple[str, str, object]]) -> None:
        lines.append(f"# TYPE {name} {kind}")
        for sample, labels, value in series:
            for t in HISTORY:
                v = value(t) if callable(value) else value
                lines.append(f"{sample}{{{labels}}} {v!r} {t}")

    def counter(rate: float):  # noqa: ANN202 - a sample function
        return lambda t: rate * (t - HISTORY[0]) + 1000.0

    family("DCGM_FI_DEV_GPU_UTIL", "gauge", [("DCGM_FI_DEV_GPU_UTIL", f'gpu="{i}",node="{n.name}"', u)
                                             for n in nodes for i, u in enumerate(n.gpu_util)])
    family("DCGM_FI_DEV_FB_USED", "gauge", [("DCGM_FI_DEV_FB_USED", f'gpu="{i}",node="{n.name}"', m)
                                            for n in nodes for i, m in enumerate(n.gpu_fb_mib)])
    family("node_cpu_seconds", "counter", [
        ("node_cpu_seconds_total", f'cpu="{c}",mode="{mode}",node="{n.name}"', counter(r))
        for n in nodes for c in range(n.cpus)
        for mode, r in (("idle", n.idle_per_cpu), ("user", 1 - n.idle_per_cpu))])
    family("node_memory_MemTotal_bytes", "gauge", [("node_memory_MemTotal_bytes", f'node="{n.name}"', n.mem_total)
                                                   for n in nodes])
    family("node_memory_MemAvailable_bytes", "gauge", [
        ("node_memory_MemAvailable_bytes", f'node="{n.name}"', (lambda n: lambda t: n.mem_total - n.ram(t))(n))
        for n in nodes])
    for metric, attr in (("node_network_receive_bytes", "net_rx"), ("node_network_transmit_bytes", "net_tx")):
        family(metric, "counter", [
            (f"{metric}_total", f'device="{dev}",node="{n.name}"', counter(getattr(n, attr) if dev == "eth0" else 7e6))
            for n in nodes for dev in ("eth0", "lo")])
    for metric, attr in (("node_disk_read_bytes", "disk_read"), ("node_disk_written_bytes", "disk_written")):
        family(metric, "counter", [(f"{metric}_total", f'device="sda",node="{n.name}"', counter(getattr(n, attr)))
                                   for n in nodes])
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class PrometheusHistory:
    url: str
    nodes: tuple[Node, ...]


@contextmanager
def serve_history(work: Path, nodes: tuple[Node, ...]) -> Iterator[PrometheusHistory]:
    """A Prometheus on 127.0.0.1 whose TSDB in `work` holds the nodes' series over HISTORY (no scraping)."""
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.fail("promtool not on PATH: run `make system-deps` (Debian package prometheus)")
    (work / "history.om").write_text(openmetrics(nodes))
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(work / "history.om"),
                    str(work / "data")], check=True, capture_output=True, timeout=120)
    # the history is months old: a long retention keeps it
    with run_prometheus(work, "global:\n  scrape_interval: 15s\n", retention="3650d") as url:
        yield PrometheusHistory(url, nodes)


@contextmanager
def run_prometheus(work: Path, config: str, retention: str = "15d") -> Iterator[str]:
    """A Prometheus on a free 127.0.0.1 port with this configuration (YAML) and its TSDB in work/data; its URL."""
    prometheus = shutil.which("prometheus")
    if not prometheus:
        pytest.fail("prometheus not on PATH: run `make system-deps` (Debian package prometheus)")
    (work / "prometheus.yml").write_text(config)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(work / "prometheus.log", "wb") as log:
        proc = subprocess.Popen([prometheus, f"--config.file={work / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={work / 'data'}",
                                 f"--storage.tsdb.retention.time={retention}",
                                 f"--web.listen-address=127.0.0.1:{port}",
                                 f"--web.console.templates={work}", f"--web.console.libraries={work}"],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"prometheus did not start:\n{(work / 'prometheus.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def prometheus_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusHistory]:
    """A Prometheus on 127.0.0.1 whose TSDB holds NODES' series over HISTORY (no scraping)."""
    with serve_history(tmp_path_factory.mktemp("prometheus"), NODES) as history:
        yield history


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=1).status_code == 200
    except requests.RequestException:
        return False
