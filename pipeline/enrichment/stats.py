"""Turning query_range answers into the task fact's resource columns: avg, max, CPU- and GPU-seconds.

GPU-seconds = sum over GPUs of (mean utilisation % over the window's samples / 100) x window seconds, i.e. the
integral of utilisation over time x GPUs / 100 with the samples as a step function; CPU-seconds likewise from
busy cores. Values are the node's over [started_at, finished_at]: other work on the node counts too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

Series = list[tuple[float, float]]  # (unix seconds, value)


class BadResponse(ValueError):
    """Prometheus answered something that is not a successful matrix."""


def parse_matrix(payload: Any) -> list[Series]:
    """The series of a query_range JSON answer; NaN and infinite samples are dropped (no data, not a value)."""
    if not isinstance(payload, dict) or payload.get("status") != "success":
        raise BadResponse(f"query failed: {str(payload)[:200]}")
    data = payload.get("data") or {}
    if data.get("resultType") != "matrix":
        raise BadResponse(f"expected a matrix, got {data.get('resultType')!r}")
    out = []
    for item in data.get("result", []):
        points = [(float(t), float(v)) for t, v in item.get("values", [])]
        out.append([(t, v) for t, v in points if math.isfinite(v)])
    return out


@dataclass(frozen=True)
class Stats:
    avg: float
    max: float
    sum_of_means: float  # sum over series of each series' mean: GPUs' total utilisation, busy cores, ...


def window_stats(series: Iterable[Series], first_s: float, last_s: float) -> Stats | None:
    """Stats of the samples at evaluation times in [first_s, last_s]; None when no series has one."""
    picked = [[v for t, v in s if first_s <= t <= last_s] for s in series]
    picked = [p for p in picked if p]
    if not picked:
        return None
    values = [v for p in picked for v in p]
    return Stats(avg=sum(values) / len(values), max=max(values), sum_of_means=sum(sum(p) / len(p) for p in picked))


def columns(stats: dict[str, Stats | None], duration_s: float) -> dict[str, Any]:
    """task_facts' enrichment columns from per-resource stats (None where a resource had no data)."""
    out: dict[str, Any] = {}
    for resource, prefix in (("gpu_util", "gpu_util"), ("gpu_mem", "gpu_mem"), ("cpu_util", "cpu_util"),
                             ("ram", "ram"), ("net", "net"), ("disk", "disk")):
        s = stats.get(resource)
        out[f"{prefix}_avg"] = s.avg if s else None
        out[f"{prefix}_max"] = s.max if s else None
    gpu, busy = stats.get("gpu_util"), stats.get("cpu_busy")
    out["gpu_seconds"] = gpu.sum_of_means / 100 * duration_s if gpu else 0.0
    out["cpu_seconds"] = busy.sum_of_means * duration_s if busy else 0.0
    return out
