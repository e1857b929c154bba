"""Lifecycle facts as ClickHouse rows: the task_facts row, and the usage delta an ended attempt adds to the
10 s window of its end event (orphans count in task_facts only, as they never ended).
"""

from __future__ import annotations

from typing import Any, Mapping

from pipeline.routing import ch_datetime, window_start

TIMESTAMPS = ("queued_at", "started_at", "finished_at")
ENDED = frozenset({"finished", "failed"})


def task_fact_row(fact: Mapping[str, Any]) -> dict[str, Any]:
    """task_facts' JSONEachRow object: epoch-ms timestamps as DateTime64 text, everything else as is."""
    row = dict(fact)
    for name in TIMESTAMPS:
        if row.get(name) is not None:
            row[name] = ch_datetime(row[name])
    return row


def task_usage_delta(fact: Mapping[str, Any]) -> dict[str, Any] | None:
    """usage_10s delta of an ended attempt, in the window of its end event; None for an orphan."""
    if fact["status"] not in ENDED:
        return None
    return {
        "window_start": window_start(fact["finished_at"]) // 1000,
        "tenant_id": fact["tenant_id"], "department_id": fact["department_id"], "project_id": fact["project_id"],
        "user_id": fact["user_id"], "model": fact["base_model"], "model_version": fact["model_version"],
        "checkpoint_id": fact["checkpoint_id"] or "", "checkpoint_version": fact["checkpoint_version"] or "",
        "tasks": 1, "task_failures": int(fact["status"] == "failed"), "task_retries": int(fact["attempt"] > 1),
        "task_queue_ms_sum": fact["queue_ms"] or 0, "task_load_ms_sum": fact["checkpoint_load_ms"] or 0,
        "task_init_ms_sum": fact["init_ms"] or 0, "task_inference_ms_sum": fact["inference_ms"] or 0,
        "task_duration_ms_sum": fact["total_ms"] or 0,
        "cpu_seconds": fact.get("cpu_seconds") or 0.0, "gpu_seconds": fact.get("gpu_seconds") or 0.0,
    }
