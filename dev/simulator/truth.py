"""Ground truth: what the streaming job must find in the simulator's output, counted as the events are made.

The file (`--truth PATH`, JSON, keys in this order; rows sorted; same seed + start -> same bytes):

    {
      "format": "telemetry-simulator-truth/3",
      "meta": {"seed", "start_ms", "start", "end_ms" (largest event ts), "rate", "records", "window_ms": 10000,
               "max_out_of_order_ms", "task_time_scale", "config": {...every SimConfig field...}},
      "topics": {topic: {"produced": records sent to the topic (valid + duplicates + malformed),
                         "valid": unique valid events, "duplicates": extra deliveries of a valid event
                         (same event_id, same bytes), "malformed": {reason_code: n}}},
      "dlq": {reason_code: n},                     # malformed over all topics: the job's DLQ by reason
      "tasks": {"tasks", "attempts", "finished", "failed", "orphaned", "retried_attempts",
                "workflow_only": tasks only the Workflow service reported (one attempt each, counted in attempts),
                "late_starts": attempts whose xumi.task.started is delivered after their end,
                "orphans": [[task_id, attempt, last_event_ms], ...]},  # attempts that never end: last_event_ms
                                                 # is the ts of their last xumi_task / xumi_load event (of the
                                                 # TaskStarted for a Workflow-only task)
      "windows": {GROUP: {"key": ["window_start_ms", <DIMS of the group>], "metrics": [<METRICS of the group>],
                          "rows": [[window_start_ms, *dims, *metrics], ...]}, ...},
      "per_user": {"key": ["tenant_id", "department_id", "user_id"], "metrics": [<all METRICS>], "rows": [...]},
      "per_project": {"key": ["tenant_id", "department_id", "project_id"], "metrics": [...], "rows": [...]}
    }

Money (the credits group) is exact: JSON numbers with their exact decimal text; `load` reads them as Decimal.

Windows are 10 s tumbling windows of event time aligned to the epoch: window_start_ms = ts_ms - ts_ms % 10000.
A row exists only where its group has at least one event. Groups, their dims and the events they count (every
valid event counts once, however often it is delivered; malformed records count in no row):

  llm      dims D8: telemetry.events.v1; model = model_id, model_version, checkpoint_id, checkpoint_version "".
           requests, errors (status != ok), tokens_in, tokens_out, latency_ms_sum, and err_<error_type> for
           each of ERROR_TYPES.
  tasks    dims D8: one task fact per xumi.task.finished / xumi.task.failed event (windowed by its ts); model,
           model_version, checkpoint_id, checkpoint_version from it ("" for a base-model-only run).
           tasks_finished, tasks_failed, task_retries (ended attempts with attempt > 1), and per ended attempt
           (an attempt's xumi_task events carry task_id and attempt; its xumi_load events carry task_id and
           labels["attempt"], as xumi_load has no attempt field; a failed load has a start and no finish):
             task_queue_ms_sum     = started.ts - queued.ts
             task_load_ms_sum      = sum of duration_ms of the attempt's xumi_load *.finish events
             task_init_ms_sum      = initialized.ts - started.ts - task load ms  (0 if it failed before)
             task_inference_ms_sum = end.ts - initialized.ts                     (0 if never initialized)
             task_total_ms_sum     = end.ts - queued.ts
           A task only the Workflow service reported (no XUMI event) is one fact, attempt 1, windowed by its
           TaskCompleted / TaskFailed, with model dims "" and every phase sum 0 (it reports no phase).
  loads    dims D8: xumi_load *.finish events; model = base_model, model_version = labels["model_version"],
           checkpoint_id / checkpoint_version (a weights load names the base weights: checkpoint_id = model,
           checkpoint_version = model_version). loads, load_cache_hits, load_bytes, load_ms_sum.
  credits  dims D8: wkf_cpu, wkf_gpu, kuber_cpu, kuber_gpu; model dims from labels model, model_version,
           checkpoint_id, checkpoint_version (the simulator tags credits with the task's model, so the job
           needs no join to group them; "" where absent). wkf_cpu_s, wkf_gpu_s, kuber_cpu_s, kuber_gpu_s
           (units x seconds), wkf_credits, kuber_credits: exact decimals (credits to the micro-credit), so
           their sums are exact in any order.
  audit    dims D4: pbac_access, pbac_politics, pbac_service, asset_access -> audit_events, access_denied
           (decision deny); asset_transfer (completed and failed) -> transfers, transfer_bytes.

D8 = tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id, checkpoint_version;
D4 = its first four, from the envelope of every event.
per_user / per_project: every group's metrics summed over all windows and the other dims.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from schemas.types import format_ts, parse_ts
from dev.simulator.config import WINDOW_MS, SimConfig

FORMAT = "telemetry-simulator-truth/3"
D8 = ("tenant_id", "department_id", "project_id", "user_id", "model", "model_version", "checkpoint_id",
      "checkpoint_version")
D4 = D8[:4]
ERROR_TYPES = ("upstream_timeout", "rate_limit_exceeded", "http_500", "http_503", "model_error",
               "context_length_exceeded", "client_cancelled")
LLM, TASKS, LOADS, CREDITS, AUDIT = "llm", "tasks", "loads", "credits", "audit"
GROUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    LLM: (D8, ("requests", "errors", "tokens_in", "tokens_out", "latency_ms_sum", *(f"err_{e}" for e in ERROR_TYPES))),
    TASKS: (D8, ("tasks_finished", "tasks_failed", "task_retries", "task_queue_ms_sum", "task_load_ms_sum",
                 "task_init_ms_sum", "task_inference_ms_sum", "task_total_ms_sum")),
    LOADS: (D8, ("loads", "load_cache_hits", "load_bytes", "load_ms_sum")),
    CREDITS: (D8, ("wkf_cpu_s", "wkf_gpu_s", "wkf_credits", "kuber_cpu_s", "kuber_gpu_s", "kuber_credits")),
    AUDIT: (D4, ("audit_events", "access_denied", "transfers", "transfer_bytes")),
}
METRICS = tuple(m for _, metrics in GROUPS.values() for m in metrics)
COL = {m: i for _, metrics in GROUPS.values() for i, m in enumerate(metrics)}  # metric -> index in its group
ERR_COL = {e: COL[f"err_{e}"] for e in ERROR_TYPES}
_MONEY_GROUPS = {CREDITS}


class Truth:
    """Accumulates the expected results while the stream is generated (order-independent sums)."""

    def __init__(self, cfg: SimConfig, topics: tuple[str, ...]) -> None:
        self.cfg = cfg
        self.rows: dict[str, dict[tuple[int, tuple[str, ...]], list[Any]]] = {g: {} for g in GROUPS}
        self._zero = {g: [Decimal(0) if g in _MONEY_GROUPS else 0] * len(m) for g, (_, m) in GROUPS.items()}
        self.produced = {t: 0 for t in topics}
        self.valid = {t: 0 for t in topics}
        self.duplicates = {t: 0 for t in topics}
        self.malformed: dict[str, dict[str, int]] = {t: {} for t in topics}
        self.tasks = {"tasks": 0, "attempts": 0, "finished": 0, "failed": 0, "orphaned": 0, "retried_attempts": 0,
                      "workflow_only": 0, "late_starts": 0}
        self.orphans: list[list[Any]] = []
        self.max_ts = cfg.start_ms

    def row(self, group: str, ts_ms: int, dims: tuple[str, ...]) -> list[Any]:
        """The metric list of `group` for ts_ms's window and dims (created on first use); callers add to it."""
        rows = self.rows[group]
        key = (ts_ms - ts_ms % WINDOW_MS, dims)
        row = rows.get(key)
        if row is None:
            row = rows[key] = self._zero[group].copy()
        return row

    def add_malformed(self, topic: str, reason: str) -> None:
        counts = self.malformed[topic]
        counts[reason] = counts.get(reason, 0) + 1

    # --- output ----------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        cfg = self.cfg
        dlq: dict[str, int] = {}
        topics = {}
        for t in self.produced:
            mal = dict(sorted(self.malformed[t].items()))
            for reason, n in mal.items():
                dlq[reason] = dlq.get(reason, 0) + n
            topics[t] = {"produced": self.produced[t], "valid": self.valid[t], "duplicates": self.duplicates[t],
                         "malformed": mal}
        windows = {
            g: {"key": ["window_start_ms", *dims], "metrics": list(metrics),
                "rows": [[w, *d, *m] for (w, d), m in sorted(self.rows[g].items())]}
            for g, (dims, metrics) in GROUPS.items()
        }
        return {
            "format": FORMAT,
            "meta": {
                "seed": cfg.seed, "start_ms": cfg.start_ms, "start": _iso(cfg.start_ms), "end_ms": self.max_ts,
                "rate": cfg.rate, "records": sum(self.produced.values()), "window_ms": WINDOW_MS,
                "max_out_of_order_ms": cfg.max_out_of_order_ms, "task_time_scale": cfg.time_scale,
                "config": cfg.as_meta(),
            },
            "topics": topics,
            "dlq": dict(sorted(dlq.items())),
            "tasks": {**self.tasks, "orphans": sorted(self.orphans)},
            "windows": windows,
            "per_user": self._rollup(3, ["tenant_id", "department_id", "user_id"]),
            "per_project": self._rollup(2, ["tenant_id", "department_id", "project_id"]),
        }

    def _rollup(self, who: int, key: list[str]) -> dict[str, Any]:
        """Sum every group over windows and dims, by (tenant, department, dims[who])."""
        acc: dict[tuple[str, ...], list[Any]] = {}
        offset = 0
        for g, (_, metrics) in GROUPS.items():
            for (_, dims), values in self.rows[g].items():
                k = (dims[0], dims[1], dims[who])
                total = acc.get(k)
                if total is None:
                    total = acc[k] = [Decimal(0) if m in MONEY_METRICS else 0 for m in METRICS]
                for i, v in enumerate(values):
                    total[offset + i] += v
            offset += len(metrics)
        return {"key": key, "metrics": list(METRICS), "rows": [[*k, *m] for k, m in sorted(acc.items())]}

    def write(self, path: str | Path) -> None:
        Path(path).write_text(dumps(self.to_dict()))


MONEY_METRICS = frozenset(GROUPS[CREDITS][1])


def dumps(data: dict[str, Any]) -> str:
    """Compact JSON, one table row per line: diffable, byte-stable, quick to load. Decimals are written as the
    exact numbers they are (json cannot)."""
    def row(r: list[Any]) -> str:
        return "[" + ",".join(format(x, "f") if isinstance(x, Decimal) else json.dumps(x) for x in r) + "]"

    def table(v: dict[str, Any]) -> str:
        head = json.dumps({k: x for k, x in v.items() if k != "rows"}, separators=(",", ":"))[:-1]
        body = ",\n".join(row(r) for r in v["rows"])
        return f'{head},"rows":[\n{body}\n]}}'

    parts = []
    for k, v in data.items():
        if k == "windows":
            inner = ",\n".join(f'"{g}":{table(t)}' for g, t in v.items())
            parts.append(f'"{k}":{{\n{inner}}}')
        elif isinstance(v, dict) and "rows" in v:
            parts.append(f'"{k}":{table(v)}')
        else:
            parts.append(f'"{k}":{json.dumps(v, separators=(",", ":"))}')
    return "{\n" + ",\n".join(parts) + "\n}\n"


def load(path: str | Path) -> dict[str, Any]:
    """A truth file, its numbers with a fraction as Decimal (money is exact; no other metric has a fraction)."""
    return loads(Path(path).read_text())


def loads(text: str) -> dict[str, Any]:
    return json.loads(text, parse_float=Decimal)


def _iso(ms: int) -> str:
    return format_ts(parse_ts(ms))
