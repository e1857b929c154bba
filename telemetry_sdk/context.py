"""Automatic context: who emits (NODE_ID, VM_TYPE, HOST_NAME, TENANT_ID from the environment) and the host's
state (CPU and RAM from /proc, GPUs from `nvidia-smi` when it is on PATH).

Sampling is cached for a short interval so a tight emit loop does not read /proc or spawn nvidia-smi per event.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from schemas import GpuInfo
from schemas.types import MAX_BYTES
from telemetry.settings import Settings

log = logging.getLogger(__name__)

# The env var behind each envelope field the SDK fills from the environment (seed 001's names).
ENV_OF_FIELD: dict[str, str] = {"tenant_id": "TENANT_ID", "node_id": "NODE_ID", "vm_type": "VM_TYPE",
                                "host_name": "HOST_NAME"}
GPU_QUERY = "index,name,utilization.gpu,memory.used,memory.total"
_MIB = 1024 * 1024
_HOST_NAME_MAX = 253


def host_identity(settings: Settings) -> dict[str, str | None]:
    """tenant_id, node_id, vm_type, host_name from the settings; host name detected and VM type empty
    (unknown, which the envelope allows) when unset. Missing ids stay None and are refused at emit time."""
    return {
        "tenant_id": settings.tenant_id,
        "node_id": settings.node_id,
        "vm_type": settings.vm_type or "",
        "host_name": (settings.host_name or socket.gethostname())[:_HOST_NAME_MAX],
    }


def _read_cpu(proc: Path) -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot from /proc/stat; None where there is no /proc."""
    try:
        with open(proc / "stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal (guest time is already inside user and nice)
    ticks = [int(x) for x in fields[1:9]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    total = sum(ticks)
    return total - idle, total


def _read_ram(proc: Path) -> tuple[int, int] | None:
    """(used, total) bytes from /proc/meminfo: used = total - available (what a new process could get)."""
    try:
        with open(proc / "meminfo") as f:
            info = {k: int(v.split()[0]) * 1024 for k, _, v in (line.partition(":") for line in f) if v.strip()}
    except (OSError, ValueError, IndexError):
        return None
    total = info.get("MemTotal")
    if total is None:
        return None
    available = info.get("MemAvailable", info.get("MemFree", 0) + info.get("Buffers", 0) + info.get("Cached", 0))
    return max(0, total - available), total


def _number(text: str) -> float | None:
    """nvidia-smi prints [N/A] or [Not Supported] for what a GPU does not report."""
    try:
        return float(text)
    except ValueError:
        return None


def parse_nvidia_smi(output: str) -> list[dict[str, Any]]:
    """GPUs from `nvidia-smi --query-gpu=<GPU_QUERY> --format=csv,noheader,nounits` (MiB -> bytes).

    A line that does not make a valid GpuInfo is skipped with a warning: the host's context must never be
    the reason a user's event is refused.
    """
    gpus: list[dict[str, Any]] = []
    for line in output.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            continue
        index, util, used, total = _number(parts[0]), _number(parts[2]), _number(parts[3]), _number(parts[4])
        gpu = {
            "index": int(index) if index is not None else None,
            "name": parts[1][:64],
            "utilization_percent": util,
            "memory_used_bytes": int(used * _MIB) if used is not None else None,
            "memory_total_bytes": int(total * _MIB) if total is not None else None,
        }
        try:
            gpus.append(GpuInfo(**gpu).model_dump())
        except ValidationError as exc:
            log.warning("skipping a GPU nvidia-smi reported (%r): %s", line, exc.errors()[0]["msg"])
    return gpus


class SystemSampler:
    """Samples CPU, RAM and GPUs at most every `interval_s` (GPUs every `gpu_interval_s`, since nvidia-smi
    takes tens of milliseconds). cpu_percent covers the time since the previous /proc/stat reading (since
    boot for the first). Thread-safe: one sampler serves a Telemetry and its flusher."""

    def __init__(
        self,
        interval_s: float = 1.0,
        gpu_interval_s: float = 10.0,
        proc: Path = Path("/proc"),
        nvidia_smi: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s, self.gpu_interval_s, self.proc, self.clock = interval_s, gpu_interval_s, proc, clock
        self.nvidia_smi = nvidia_smi if nvidia_smi is not None else shutil.which("nvidia-smi")
        self._lock = threading.Lock()
        self._cpu_prev: tuple[int, int] | None = None
        self._cached: dict[str, Any] | None = None
        self._cached_at = self._gpus_at = float("-inf")
        self._gpus: list[dict[str, Any]] = []

    def sample(self) -> dict[str, Any]:
        """The context dict (schemas.SystemContext's fields), cached for interval_s."""
        with self._lock:
            now = self.clock()
            if self._cached is None or now - self._cached_at >= self.interval_s:
                self._cached, self._cached_at = self._measure(now), now
            return self._cached

    def _measure(self, now: float) -> dict[str, Any]:
        cpu_percent = None
        cpu = _read_cpu(self.proc)
        if cpu is not None:
            busy, total = cpu
            if self._cpu_prev is not None and total > self._cpu_prev[1]:
                busy, total = busy - self._cpu_prev[0], total - self._cpu_prev[1]
            self._cpu_prev = cpu
            cpu_percent = round(min(100.0, max(0.0, 100.0 * busy / total)), 2) if total > 0 else None
        ram = _read_ram(self.proc)
        if self.nvidia_smi and now - self._gpus_at >= self.gpu_interval_s:
            self._gpus, self._gpus_at = self._query_gpus(), now
        return {
            "cpu_percent": cpu_percent,
            "cpu_count": os.cpu_count(),
            "ram_used_bytes": min(ram[0], MAX_BYTES) if ram else None,
            "ram_total_bytes": min(ram[1], MAX_BYTES) if ram else None,
            "gpus": self._gpus,
        }

    def _query_gpus(self) -> list[dict[str, Any]]:
        assert self.nvidia_smi is not None
        try:
            done = subprocess.run(
                [self.nvidia_smi, f"--query-gpu={GPU_QUERY}", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=5, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("nvidia-smi failed: %s", exc)
            return []
        if done.returncode != 0:  # e.g. the driver is not loaded: no usable GPU
            log.debug("nvidia-smi exited %s: %s", done.returncode, done.stderr.strip()[:200])
            return []
        return parse_nvidia_smi(done.stdout)
