"""Compare usage rows (routing's wide rows or the job's window deltas) with the simulator's ground truth.

Rows use usage_10s' column names; the truth's own names map onto them (TRUTH_TO_TABLE)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

TRUTH_TO_TABLE = {"wkf_cpu_s": "wkf_cpu_seconds", "wkf_gpu_s": "wkf_gpu_seconds", "kuber_cpu_s": "kuber_cpu_seconds",
                  "kuber_gpu_s": "kuber_gpu_seconds", "tasks_failed": "task_failures",
                  "task_total_ms_sum": "task_duration_ms_sum"}


def metric(row: dict[str, Any], name: str) -> Any:
    if name == "tasks_finished":  # usage_10s counts ended attempts (tasks) and failures
        return row.get("tasks", 0) - row.get("task_failures", 0)
    return row.get(TRUTH_TO_TABLE.get(name, name), 0)


# Which topics feed each truth group that routing computes without the lifecycle join.
GROUP_TOPICS = {
    "llm": {"telemetry.events.v1"},
    "loads": {"xumi_load"},
    "credits": {"wkf_cpu", "wkf_gpu", "kuber_cpu", "kuber_gpu"},
    "audit": {"pbac_access", "pbac_politics", "pbac_service", "asset_access", "asset_transfer"},
}


def expected(truth: dict[str, Any], group: str) -> dict[tuple, dict[str, Any]]:
    spec = truth["windows"][group]
    width = len(spec["key"])
    return {tuple(r[:width]): dict(zip(spec["metrics"], r[width:])) for r in spec["rows"]}


def summed(truth: dict[str, Any], group: str, rows: Iterable[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """Rows summed per (window_start_ms, dims of the group); rows whose group metrics are all zero are left out.

    A row has window_start_ms, the dims, the plain metrics, and either error_type (one event) or
    errors_by_type (a delta: error type -> count)."""
    spec = truth["windows"][group]
    dims = spec["key"][1:]
    plain = [m for m in spec["metrics"] if not m.startswith("err_")]
    has_errors = any(m.startswith("err_") for m in spec["metrics"])
    acc: dict[tuple, dict[str, Any]] = defaultdict(lambda: dict.fromkeys(spec["metrics"], 0))
    for row in rows:
        sums = acc[(row["window_start_ms"], *(row[d] for d in dims))]
        for m in plain:
            sums[m] += metric(row, m)
        if has_errors:
            errors = row.get("errors_by_type") or ({row["error_type"]: 1} if row.get("error_type") else {})
            for kind, n in errors.items():
                sums[f"err_{kind}"] += n
    return {k: v for k, v in acc.items() if any(v.values())}


def ingest_totals(truth: dict[str, Any]) -> dict[str, tuple[int, int, int, int]]:
    """Per source topic with records: (consumed, valid, dlq, duplicates), as ingest_stats_10s sums them."""
    return {t: (v["produced"], v["valid"], sum(v["malformed"].values()), v["duplicates"])
            for t, v in truth["topics"].items() if v["produced"]}


def ended_attempts(truth: dict[str, Any]) -> dict[str, int]:
    """Task facts per status (finished, failed, orphaned), statuses without any left out."""
    return {k: truth["tasks"][k] for k in ("finished", "failed", "orphaned") if truth["tasks"][k]}
