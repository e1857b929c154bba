"""Lifecycle facts as ClickHouse rows: the task_facts row of each revision, and the usage_10s deltas that keep
usage equal to the newest counted revision of each attempt (its end's 10 s window; orphans and attempts whose end
came late count in task_facts only).

`bill` is the ledger of one attempt: what usage_10s holds for it, and the delta a new revision makes. Revisions
reach it after enrichment, which may reorder them; the revision number in their version puts them back in order.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

from pipeline.lifecycle import revision_of
from pipeline.chtime import datetime_text
from pipeline.routing import DIMS, WINDOW_MS, window_start

TIMESTAMPS = ("queued_at", "started_at", "finished_at")
ENDED = frozenset({"finished", "failed"})
TASK_SUMS = ("tasks", "task_failures", "task_retries", "task_queue_ms_sum", "task_load_ms_sum", "task_init_ms_sum",
             "task_inference_ms_sum", "task_duration_ms_sum", "cpu_seconds", "gpu_seconds")


def task_fact_row(fact: Mapping[str, Any]) -> dict[str, Any]:
    """task_facts' JSONEachRow object: epoch-ms timestamps as DateTime64 text, everything else as is."""
    row = dict(fact)
    for name in TIMESTAMPS:
        if row.get(name) is not None:
            row[name] = datetime_text(row[name])
    return row


def task_usage_delta(fact: Mapping[str, Any]) -> dict[str, Any] | None:
    """What an attempt adds to usage_10s, in the window of its end event; None for one counted nowhere: an orphan,
    or an attempt whose end came past the allowed lateness (its window was closed for billing)."""
    if fact["status"] not in ENDED or fact.get("late"):
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


@dataclass
class Ledger:
    """What usage_10s holds for one attempt: the delta of its counted revision, and until when a revision may
    still change it (its window's close for billing; then the ledger is forgotten)."""

    revision: int
    delta: dict[str, Any]
    until: int

    def to_text(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str) -> Ledger:
        return cls(**json.loads(text))


def bill(ledger: Ledger | None, fact: Mapping[str, Any], allowed_lateness_ms: int) -> tuple[Ledger | None,
                                                                                        list[dict[str, Any]]]:
    """Apply one revision of an attempt: the ledger after it, and the usage_10s rows that take usage from the
    counted revision to this one (none when they agree). A revision older than the counted one (overtaken in
    enrichment) and one whose end came late change nothing."""
    if fact.get("late"):
        return ledger, []
    revision = revision_of(fact["version"])
    if ledger is not None and revision <= ledger.revision:
        return ledger, []
    new = task_usage_delta(fact)
    rows = difference(ledger.delta if ledger else None, new)
    if new is None:
        return None, rows
    return Ledger(revision, new, new["window_start"] * 1000 + WINDOW_MS + allowed_lateness_ms), rows


def difference(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """usage_10s rows that turn `old` into `new`: one row of differences when both fall in the same window and
    key, else old negated plus new; nothing when they are equal."""
    if old is not None and new is not None and _key(old) == _key(new):
        row = {**new, **{m: new[m] - old[m] for m in TASK_SUMS}}
        return [row] if any(row[m] for m in TASK_SUMS) else []
    rows = []
    if old is not None:
        rows.append({**old, **{m: -old[m] for m in TASK_SUMS}})
    if new is not None:
        rows.append(dict(new))
    return rows


def _key(delta: Mapping[str, Any]) -> tuple[Any, ...]:
    return (delta["window_start"], *(delta[d] for d in DIMS))


def bill_all(revisions: Iterable[Mapping[str, Any]], allowed_lateness_ms: int) -> list[dict[str, Any]]:
    """The usage_10s rows a stream of fact revisions makes, in order, as the job's ledger would (without its
    clean-up, which only forgets what can no longer change); for tools and tests, like lifecycle.run."""
    ledgers: dict[tuple[str, int], Ledger | None] = {}
    rows: list[dict[str, Any]] = []
    for fact in revisions:
        key = (fact["task_id"], fact["attempt"])
        ledgers[key], out = bill(ledgers.get(key), fact, allowed_lateness_ms)
        rows += out
    return rows
