"""Prometheus query templates per resource and the query_range requests that cover a task's time window.

Templates are PromQL with {node} (the node's label value, escaped) and {rate} (the rate() window) placeholders;
the defaults use DCGM exporter and node_exporter metric names and a `node` label, overridable per deployment.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

import yaml

# One expression per resource; each must return the node's value(s) over time. gpu_util returns one series per
# GPU (GPU-seconds need the GPU count); the others aggregate to one series. DCGM_FI_DEV_FB_USED is in MiB.
DEFAULT_TEMPLATES: dict[str, str] = {
    "gpu_util": 'DCGM_FI_DEV_GPU_UTIL{node="{node}"}',
    "gpu_mem": 'sum(DCGM_FI_DEV_FB_USED{node="{node}"}) * 1048576',
    "cpu_util": '100 * (1 - avg(rate(node_cpu_seconds_total{mode="idle",node="{node}"}[{rate}])))',
    "cpu_busy": 'count(node_cpu_seconds_total{mode="idle",node="{node}"})'
                ' - sum(rate(node_cpu_seconds_total{mode="idle",node="{node}"}[{rate}]))',
    "ram": 'node_memory_MemTotal_bytes{node="{node}"} - node_memory_MemAvailable_bytes{node="{node}"}',
    "net": 'sum(rate(node_network_receive_bytes_total{node="{node}",device!="lo"}[{rate}]))'
           ' + sum(rate(node_network_transmit_bytes_total{node="{node}",device!="lo"}[{rate}]))',
    "disk": 'sum(rate(node_disk_read_bytes_total{node="{node}"}[{rate}]))'
            ' + sum(rate(node_disk_written_bytes_total{node="{node}"}[{rate}]))',
}


class EnrichmentConfigError(ValueError):
    """A template or setting is unusable; the message names it."""


@dataclass(frozen=True)
class EnrichmentConfig:
    """Where Prometheus is, what to ask it, and how hard to try. Times in seconds."""

    prometheus_url: str = "http://127.0.0.1:9090"
    templates: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_TEMPLATES))
    node_field: str = "host_name"  # the fact field whose value the {node} label matches (k8s node name)
    step_s: int = 15  # one scrape interval: finer steps only repeat samples
    bucket_s: int = 600  # cache granularity: one query_range per resource x node x 10 minutes
    rate_window: str = "1m"  # >= 4 scrape intervals, so rate() always has two samples
    max_buckets: int = 144  # a window longer than this many buckets (24 h) is skipped, not queried in bulk
    timeout_s: float = 2.0  # per HTTP request
    retries: int = 2  # after the first try, on connection errors, timeouts, 429 and 5xx
    backoff_s: float = 0.1  # doubled per retry
    cache_size: int = 4096  # bucket results kept (LRU)
    # A point's value is final once Prometheus has every sample up to it: at most a scrape timeout after it.
    final_after_s: float = 10.0
    breaker_failures: int = 5  # consecutive failed requests that open the circuit ...
    breaker_cooldown_s: float = 10.0  # ... for this long: lookups are then `unavailable` at once

    def __post_init__(self) -> None:
        unknown = set(self.templates) - set(DEFAULT_TEMPLATES)
        if unknown:
            raise EnrichmentConfigError(f"unknown resources in templates: {sorted(unknown)}; "
                                        f"known: {sorted(DEFAULT_TEMPLATES)}")
        for name, text in self.templates.items():
            if "{node}" not in text:
                raise EnrichmentConfigError(f"template {name!r} has no {{node}} placeholder: {text!r}")
        if self.step_s <= 0 or self.bucket_s % self.step_s:
            raise EnrichmentConfigError(f"bucket_s={self.bucket_s} must be a positive multiple of step_s={self.step_s}")
        if self.final_after_s < 0:
            raise EnrichmentConfigError(f"final_after_s={self.final_after_s} must be 0 or more (seconds)")


def load_config(environ: Mapping[str, str] = os.environ, **overrides: object) -> EnrichmentConfig:
    """Config from the environment: PROMETHEUS_URL, ENRICH_TEMPLATES (a YAML or JSON file whose mapping
    replaces the named templates), ENRICH_TIMEOUT_S, ENRICH_RETRIES, ENRICH_STEP_S, ENRICH_NODE_FIELD and
    ENRICH_FINAL_AFTER_S (raise it when samples reach Prometheus late, e.g. through remote write)."""
    cfg = EnrichmentConfig()
    templates = dict(cfg.templates)
    path = environ.get("ENRICH_TEMPLATES")
    if path:
        text = Path(path).read_text()
        loaded = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise EnrichmentConfigError(f"ENRICH_TEMPLATES={path!r}: expected a mapping of resource -> PromQL")
        templates.update(loaded)
    try:
        values: dict[str, object] = {
            "prometheus_url": environ.get("PROMETHEUS_URL", cfg.prometheus_url),
            "templates": templates,
            "timeout_s": float(environ.get("ENRICH_TIMEOUT_S", cfg.timeout_s)),
            "retries": int(environ.get("ENRICH_RETRIES", cfg.retries)),
            "step_s": int(environ.get("ENRICH_STEP_S", cfg.step_s)),
            "final_after_s": float(environ.get("ENRICH_FINAL_AFTER_S", cfg.final_after_s)),
            "node_field": environ.get("ENRICH_NODE_FIELD", cfg.node_field),
        }
    except ValueError as exc:
        raise EnrichmentConfigError(f"bad enrichment setting: {exc}") from None
    return replace(cfg, **{**values, **overrides})  # type: ignore[arg-type]


def render(template: str, node: str, rate_window: str) -> str:
    """The PromQL for one node; the node value is escaped as a PromQL string literal."""
    escaped = node.replace("\\", "\\\\").replace('"', '\\"')
    return template.replace("{node}", escaped).replace("{rate}", rate_window)


def window_grid(start_ms: int, end_ms: int, step_s: int) -> tuple[int, int]:
    """First and last step-aligned evaluation time (s) for [start, end]: from the step at or before the start
    (the value in force when the task began, so a task shorter than a step still gets one sample)."""
    first = math.floor(start_ms / 1000 / step_s) * step_s
    last = max(first, math.floor(end_ms / 1000 / step_s) * step_s)
    return first, last


def buckets(start_ms: int, end_ms: int, cfg: EnrichmentConfig) -> list[int]:
    """Start times (s) of the cache buckets covering the window's evaluation grid."""
    first, last = window_grid(start_ms, end_ms, cfg.step_s)
    b0 = first - first % cfg.bucket_s
    return list(range(b0, last + 1, cfg.bucket_s))


def range_params(query: str, bucket_start: int, cfg: EnrichmentConfig) -> dict[str, str]:
    """query_range parameters for one bucket: every step-aligned time in [bucket_start, bucket_start + bucket_s)."""
    return {"query": query, "start": str(bucket_start), "end": str(bucket_start + cfg.bucket_s - cfg.step_s),
            "step": str(cfg.step_s)}
