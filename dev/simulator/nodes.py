"""The simulated nodes' metrics: what DCGM exporter and node_exporter would report for each node of a simulator
run, derived from the attempts that ran on it (their GPUs, cores, model memory and storage reads), so Prometheus
enrichment of the run's tasks finds series with the names and `node` label it queries.

Pure functions of the run's configuration and a time: `NodeMetrics(cfg).samples(t_ms)`; dev/node_exporter.py
serves them over HTTP. Outside the run's attempts a node shows a small idle baseline, seeded per node.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Iterator

from dev.simulator.config import SimConfig
from dev.simulator.lifecycle import NodeUse
from dev.simulator.rand import Rand
from dev.simulator.stream import Simulation
from dev.simulator.world import Node, build_world

ORIGIN_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: the nodes' counters count from here
GPU_AVERAGE_MS = 5_000  # GPU utilisation is the busy share of the last 5 s (DCGM averages over a sample period)
IDLE_FB_MIB = 256  # frame buffer a GPU holds with nothing loaded (driver, CUDA context)
REMOTE_STORAGE = frozenset({"nfs", "blob"})  # reads from these arrive over the network, the others from disk
MIB = 1_048_576
GIB = 1_073_741_824


class Steps:
    """A piecewise-constant function of time (ms): `base` before the first change, then the running sum of the
    changes passed through `shape`; its integral (value x seconds) from ORIGIN_MS in O(log n)."""

    def __init__(self, base: float, changes: Iterable[tuple[int, float]],
                 shape: Callable[[float], float] = lambda v: v) -> None:
        merged: dict[int, float] = {}
        for t, delta in changes:
            merged[t] = merged.get(t, 0.0) + delta
        self.times = sorted(merged)
        self.before = shape(base)
        self.values: list[float] = []
        self.cum: list[float] = []  # integral from ORIGIN_MS to times[k]
        level, area, last_t, last_v = base, 0.0, ORIGIN_MS, self.before
        for t in self.times:
            area += last_v * (t - last_t) / 1000
            level += merged[t]
            last_t, last_v = t, shape(round(level, 9))  # round: float sums of +x and -x must return to the base
            self.values.append(last_v)
            self.cum.append(area)

    def at(self, t_ms: float) -> float:
        k = bisect_right(self.times, t_ms) - 1
        return self.before if k < 0 else self.values[k]

    def integral(self, t_ms: float) -> float:
        """The integral from ORIGIN_MS to t_ms, in value x seconds."""
        k = bisect_right(self.times, t_ms) - 1
        if k < 0:
            return self.before * (t_ms - ORIGIN_MS) / 1000
        return self.cum[k] + self.values[k] * (t_ms - self.times[k]) / 1000


@dataclass(frozen=True)
class Baseline:
    """A node's load with nothing scheduled on it (system daemons, kubelet, log shipping)."""

    busy_cpus: float
    ram_gb: float
    net_rx: float  # bytes/s
    net_tx: float
    disk_read: float
    disk_written: float
    gpu_util: float  # percent a GPU shows while an attempt holds it


def baselines(nodes: list[Node], seed: int) -> dict[str, Baseline]:
    """One Baseline per node from `seed` alone (the run's traffic does not change them)."""
    rng = Rand(f"nodes:{seed}")
    return {n.host_name: Baseline(busy_cpus=0.1 + 0.4 * rng.random(), ram_gb=2 + 4 * rng.random(),
                                  net_rx=2e4 + 2e5 * rng.random(), net_tx=1e4 + 1e5 * rng.random(),
                                  disk_read=1e4 + 1e5 * rng.random(), disk_written=5e4 + 5e5 * rng.random(),
                                  gpu_util=85 + 13 * rng.random())
            for n in nodes}


class NodeSeries:
    """One node's time-varying state, built from the attempts that ran on it."""

    def __init__(self, node: Node, base: Baseline, uses: list[NodeUse]) -> None:
        self.node, self.base = node, base
        vm = node.vm
        held = [(u.start_ms, u.stop_ms, u) for u in uses if u.stop_ms > u.start_ms]
        # GPUs are filled from GPU 0: gpu_held[i] is 1 while at least i + 1 GPUs are held.
        self.gpus_held = Steps(0, _spans((s, e, u.gpus) for s, e, u in held), lambda v: min(vm.gpus, v))
        self.gpu_held = [Steps(0, _spans((s, e, u.gpus) for s, e, u in held), lambda v, i=i: float(v > i))
                         for i in range(vm.gpus)]
        self.model_mib = Steps(0, _spans((s, e, u.mem_gb * 1024) for s, e, u in held))
        cpus = list(_spans((s, e, u.cpus) for s, e, u in held))
        self.busy_cpus = Steps(base.busy_cpus, cpus, lambda v: min(float(vm.vcpus), v))
        # its own integral, not time minus busy: a difference of large sums can step back, a counter must not
        self.idle_cpus = Steps(base.busy_cpus, cpus, lambda v: max(0.0, vm.vcpus - v))
        self.ram = Steps(base.ram_gb * GIB, _spans((s, e, u.mem_gb * GIB) for s, e, u in held),
                         lambda v: min(0.95 * vm.ram_gb * GIB, v))
        reads = [r for _, _, u in held for r in u.reads if r[1] > r[0]]
        remote = node.storage_type in REMOTE_STORAGE
        self.net_rx = Steps(base.net_rx, _spans(reads) if remote else ())
        self.disk_read = Steps(base.disk_read, () if remote else _spans(reads))

    def gpu_util(self, i: int, t_ms: float) -> float:
        """Percent: the share of the last GPU_AVERAGE_MS that GPU i was held, at the node's busy utilisation."""
        held = self.gpu_held[i]
        share = (held.integral(t_ms) - held.integral(t_ms - GPU_AVERAGE_MS)) / (GPU_AVERAGE_MS / 1000)
        return self.base.gpu_util * min(1.0, max(0.0, share))

    def fb_used_mib(self, i: int, t_ms: float) -> float:
        """The held GPUs share the held models' memory evenly, up to the GPU's size."""
        held = self.gpus_held.at(t_ms)
        if i >= held:
            return float(IDLE_FB_MIB)
        per_gpu = self.model_mib.at(t_ms) / max(1.0, held)
        return min(float(self.node.vm.gpu_mem_gb * 1024), IDLE_FB_MIB + per_gpu)

    def cpu_seconds(self, t_ms: float) -> tuple[float, float]:
        """node_cpu_seconds_total of each core, (idle, user): the busy cores are spread evenly over them."""
        vcpus = self.node.vm.vcpus
        return self.idle_cpus.integral(t_ms) / vcpus, self.busy_cpus.integral(t_ms) / vcpus

    def counters(self, t_ms: float) -> dict[str, float]:
        """Byte counters since ORIGIN_MS: network (eth0) and disk."""
        seconds = (t_ms - ORIGIN_MS) / 1000
        return {"rx": self.net_rx.integral(t_ms), "tx": self.base.net_tx * seconds,
                "read": self.disk_read.integral(t_ms), "written": self.base.disk_written * seconds}


def _spans(spans: Iterable[tuple[int, int, float]]) -> Iterator[tuple[int, float]]:
    """(start, stop, amount) -> the changes +amount at start, -amount at stop."""
    for start, stop, amount in spans:
        yield start, amount
        yield stop, -amount


def node_uses(cfg: SimConfig) -> list[NodeUse]:
    """Every attempt of the run `cfg` describes, by running the simulation (its records are discarded)."""
    uses: list[NodeUse] = []
    sim = Simulation(cfg, node_uses=uses)
    for _ in sim.records():
        pass
    return uses


def shift(uses: list[NodeUse], by_ms: int) -> list[NodeUse]:
    """The same attempts by_ms later (a run's activity depends on its start only through this offset)."""
    return [replace(u, start_ms=u.start_ms + by_ms, stop_ms=u.stop_ms + by_ms,
                    reads=tuple((s + by_ms, e + by_ms, r) for s, e, r in u.reads)) for u in uses]


class NodeMetrics:
    """Every node of a run, queried at any time. `uses` defaults to the run's attempts (simulated here)."""

    def __init__(self, cfg: SimConfig, uses: list[NodeUse] | None = None) -> None:
        self.cfg = cfg
        self.nodes = build_world(cfg, Rand(f"world:{cfg.seed}")).nodes
        self.baselines = baselines(self.nodes, cfg.seed)
        self.uses = node_uses(cfg) if uses is None else uses
        by_host: dict[str, list[NodeUse]] = {n.host_name: [] for n in self.nodes}
        for u in self.uses:
            by_host[u.host_name].append(u)
        self.series = {n.host_name: NodeSeries(n, self.baselines[n.host_name], by_host[n.host_name])
                       for n in self.nodes}

    def samples(self, t_ms: float) -> Iterator[tuple[str, tuple[str, ...], float]]:
        """(metric, label values in FAMILIES' order, value) of every series at t_ms."""
        for host, s in self.series.items():
            vm = s.node.vm
            for i in range(vm.gpus):
                gpu = (str(i), vm.gpu_type, host, host)
                yield "DCGM_FI_DEV_GPU_UTIL", gpu, s.gpu_util(i, t_ms)
                yield "DCGM_FI_DEV_FB_USED", gpu, s.fb_used_mib(i, t_ms)
            idle, user = s.cpu_seconds(t_ms)
            for cpu in range(vm.vcpus):
                yield "node_cpu_seconds_total", (str(cpu), "idle", host), idle
                yield "node_cpu_seconds_total", (str(cpu), "user", host), user
            yield "node_memory_MemTotal_bytes", (host,), float(vm.ram_gb * GIB)
            yield "node_memory_MemAvailable_bytes", (host,), vm.ram_gb * GIB - s.ram.at(t_ms)
            c = s.counters(t_ms)
            yield "node_network_receive_bytes_total", ("eth0", host), c["rx"]
            yield "node_network_transmit_bytes_total", ("eth0", host), c["tx"]
            yield "node_disk_read_bytes_total", ("sda", host), c["read"]
            yield "node_disk_written_bytes_total", ("sda", host), c["written"]


_GPU = ("gpu", "modelName", "Hostname", "node")
_DEVICE = ("device", "node")
# metric -> (type, help, label names): DCGM exporter's and node_exporter's names, with the `node` label a
# Kubernetes scrape config adds
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "DCGM_FI_DEV_GPU_UTIL": ("gauge", "GPU utilization (in %).", _GPU),
    "DCGM_FI_DEV_FB_USED": ("gauge", "Framebuffer memory used (in MiB).", _GPU),
    "node_cpu_seconds_total": ("counter", "Seconds the CPUs spent in each mode.", ("cpu", "mode", "node")),
    "node_memory_MemTotal_bytes": ("gauge", "Memory information field MemTotal_bytes.", ("node",)),
    "node_memory_MemAvailable_bytes": ("gauge", "Memory information field MemAvailable_bytes.", ("node",)),
    "node_network_receive_bytes_total": ("counter", "Network device statistic receive_bytes.", _DEVICE),
    "node_network_transmit_bytes_total": ("counter", "Network device statistic transmit_bytes.", _DEVICE),
    "node_disk_read_bytes_total": ("counter", "The total number of bytes read successfully.", _DEVICE),
    "node_disk_written_bytes_total": ("counter", "The total number of bytes written successfully.", _DEVICE),
}
