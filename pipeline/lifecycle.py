"""Lifecycle join for one task_id: xumi_task, xumi_load and wkf_task events in, one task fact per ended attempt out.

Plain Python: udfs/lifecycle.py keeps `TaskState` (JSON bytes) in a Flink ValueState and the returned deadline in
an event-time timer. Phase durations follow dev/simulator/truth.py exactly; facts carry task_facts' columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

from schemas.envelope import Envelope
from schemas.registry import EVENT_NAME_FAMILY
from schemas.xumi import MAX_ATTEMPT, MIN_ATTEMPT
from schemas.types import parse_ts, ts_to_millis

FINISHED, FAILED, ORPHANED = "finished", "failed", "orphaned"
JAVA_LONG_MAX = 2**63 - 1  # Flink's final watermark; also the clamp for timers handed to Flink

# task_facts' columns in table order (sql/clickhouse/migrations/0002_task_facts.sql) with the Python type of each value;
# ingested_at is left to its server default. Timestamps (*_at) are epoch milliseconds (int).
FACT_COLUMNS: tuple[tuple[str, type], ...] = (
    ("task_id", str), ("attempt", int), ("status", str), ("tenant_id", str), ("department_id", str),
    ("project_id", str), ("user_id", str), ("base_model", str), ("model_version", str), ("checkpoint_id", str),
    ("checkpoint_version", str), ("node_id", str), ("host_name", str), ("vm_type", str), ("queued_at", int),
    ("started_at", int), ("finished_at", int), ("queue_ms", int), ("checkpoint_load_ms", int), ("init_ms", int),
    ("inference_ms", int), ("total_ms", int), ("input_bytes", int), ("output_bytes", int), ("error_type", str),
    ("error_message", str), ("enrichment_status", str), ("gpu_util_avg", float), ("gpu_util_max", float),
    ("gpu_mem_avg", float), ("gpu_mem_max", float), ("cpu_util_avg", float), ("cpu_util_max", float),
    ("ram_avg", float), ("ram_max", float), ("net_avg", float), ("net_max", float), ("disk_avg", float),
    ("disk_max", float), ("cpu_seconds", float), ("gpu_seconds", float), ("credits", float), ("job_version", str),
    ("version", int),
)
ENRICHMENT_COLUMNS = tuple(name for name, _ in FACT_COLUMNS[FACT_COLUMNS.index(("gpu_util_avg", float)):
                                                          FACT_COLUMNS.index(("disk_max", float)) + 1])

# Which event's envelope and model fields describe an attempt when its events disagree: the end event first,
# then started, queued, initialized, then loads. A fixed rank (not arrival order) keeps the fact order-independent.
_INFO_RANK = {"finished": 0, "failed": 0, "started": 1, "queued": 2, "initialized": 3, "load": 4}
_INFO_FIELDS = ("tenant_id", "department_id", "project_id", "user_id", "node_id", "host_name", "vm_type",
                "base_model", "model_version", "checkpoint_id", "checkpoint_version", "input_bytes")
MAX_LOADS_PER_ATTEMPT = 32  # a producer looping on load events must not grow the state without bound


@dataclass(frozen=True)
class LifecycleConfig:
    """Event-time rules of the join. orphan_timeout_ms: an attempt with no event for this long is orphaned.
    tombstone_ms: how long an ended attempt's number is remembered so late duplicates are dropped.
    settle_ms: wait this much event time after an end before emitting (the watermark already bounds lateness)."""

    orphan_timeout_ms: int = 30 * 60_000
    tombstone_ms: int = 5 * 60_000
    settle_ms: int = 0
    job_version: str = "dev"


@dataclass
class Attempt:
    """What is known of one attempt. marks: queued/started/initialized/end -> [ts, event_id, end fields]."""

    last_ts: int  # newest xumi event of the attempt: the orphan clock and an orphan's finished_at
    marks: dict[str, list[Any]] = field(default_factory=dict)
    loads: dict[str, int | None] = field(default_factory=dict)  # event_id -> duration_ms (finish) or None (start)
    info: dict[str, Any] = field(default_factory=dict)
    info_key: list[Any] = field(default_factory=list)  # [rank, ts, event_id] of the event `info` came from


@dataclass
class TaskState:
    """Per-task_id state: open attempts, tombstones of ended ones, and the Workflow service's view."""

    attempts: dict[int, Attempt] = field(default_factory=dict)
    ended: dict[int, int] = field(default_factory=dict)  # attempt -> event time until which it stays ended
    k8s_node: str = ""  # from wkf TaskStarted
    wkf_key: list[Any] = field(default_factory=list)  # [ts, event_id] of the TaskStarted used
    wkf_user: dict[str, str] = field(default_factory=dict)  # tenant/department/project/user of the Workflow events
    wkf_last_ts: int | None = None
    # The Flink adapter's (udfs/lifecycle.py) earliest event-time timer that has not fired yet; kept here so one
    # state read per event serves both. The rules above never read it.
    armed: int | None = None

    def to_bytes(self) -> bytes:
        # vars() rather than dataclasses.asdict, which deep-copies every nested dict and list first: json.dumps
        # needs no copy, and asdict was a third of the lifecycle join's time per event.
        plain = {**vars(self), "attempts": {n: vars(a) for n, a in self.attempts.items()}}
        return json.dumps(plain, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> TaskState:
        d = json.loads(raw)
        d["attempts"] = {int(n): Attempt(**a) for n, a in d["attempts"].items()}
        d["ended"] = {int(n): t for n, t in d["ended"].items()}
        return cls(**d)


Result = tuple[TaskState | None, list[dict[str, Any]], int | None]


def step(state: TaskState | None, event: Envelope | Mapping[str, Any], now_ms: int,
         cfg: LifecycleConfig = LifecycleConfig()) -> Result:
    """Apply one validated xumi_task / xumi_load / wkf_task event (model or dict) at watermark now_ms.

    Returns the new state (None when nothing is left to remember), the facts now due, and the earliest
    event time at which `expire` must run next (None: no deadline)."""
    e = _view(event)
    state = state or TaskState()
    family = EVENT_NAME_FAMILY.get(e["event_name"])
    if family == "wkf_task":
        _apply_wkf(state, e)
    elif family in ("xumi_task", "xumi_load"):
        _apply_xumi(state, e, family)
    else:
        raise ValueError(f"not a lifecycle event: {e['event_name']!r}")
    return _advance(state, e["task_id"], now_ms, cfg)


def expire(state: TaskState | None, timer_ms: int, task_id: str, cfg: LifecycleConfig = LifecycleConfig()) -> Result:
    """Event time reached timer_ms: emit the ended and orphaned attempts now due and drop stale tombstones."""
    if state is None:
        return None, [], None
    return _advance(state, task_id, timer_ms, cfg)


# --- applying events ------------------------------------------------------------------------------------------

def _view(event: Envelope | Mapping[str, Any]) -> dict[str, Any]:
    """The fields the join reads, with ts as epoch ms and event_id as str, from a model or its dict."""
    get = event.get if isinstance(event, Mapping) else (lambda k, d=None: getattr(event, k, d))
    e = {k: get(k) for k in ("event_name", "task_id", "attempt", "labels", "duration_ms", "k8s_node", "model",
                              "base_model", "model_version", "checkpoint_id", "checkpoint_version", "input_bytes",
                              "output_bytes", "error_type", "error_message", *_INFO_FIELDS[:7])}
    ts = get("ts")
    e["ts"] = ts_to_millis(ts if isinstance(ts, datetime) else parse_ts(ts))
    e["event_id"] = str(get("event_id"))
    return e


def _first(old: list[Any] | None, key: list[Any]) -> bool:
    """True when `key` should replace `old`: the smallest key wins, so any delivery order gives the same pick."""
    return not old or key < old[: len(key)]


def _attempt(state: TaskState, n: int, ts: int) -> Attempt | None:
    if n in state.ended:
        return None  # a late duplicate (or late straggler) of an attempt already reported
    a = state.attempts.get(n)
    if a is None:
        a = state.attempts[n] = Attempt(last_ts=ts)
    a.last_ts = max(a.last_ts, ts)
    return a


def _take_info(a: Attempt, key: list[Any], info: dict[str, Any]) -> None:
    if _first(a.info_key, key):
        a.info, a.info_key = info, key


def _apply_xumi(state: TaskState, e: dict[str, Any], family: str) -> None:
    envelope = {k: e[k] for k in _INFO_FIELDS[:7]}
    if family == "xumi_task":
        a = _attempt(state, int(e["attempt"]), e["ts"])
        if a is None:
            return
        kind = e["event_name"].rsplit(".", 1)[1]
        slot = "end" if kind in (FINISHED, FAILED) else kind
        key = [e["ts"], e["event_id"]]
        if _first(a.marks.get(slot), key):
            a.marks[slot] = [*key, {"status": kind, "output_bytes": e["output_bytes"], "error_type": e["error_type"],
                                    "error_message": e["error_message"]} if slot == "end" else None]
        _take_info(a, [_INFO_RANK[kind], *key], {
            **envelope, "base_model": e["model"], "model_version": e["model_version"],
            "checkpoint_id": e["checkpoint_id"] or "", "checkpoint_version": e["checkpoint_version"] or "",
            "input_bytes": e["input_bytes"]})
        return
    # xumi_load has no attempt field: the attempt rides in labels["attempt"]. Loads without it (warm-ups,
    # other producers) cannot be attributed to an attempt and are left out of the join.
    attempt = attempt_label((e["labels"] or {}).get("attempt", ""))
    if attempt is None:
        return
    a = _attempt(state, attempt, e["ts"])
    if a is None or (e["event_id"] not in a.loads and len(a.loads) >= MAX_LOADS_PER_ATTEMPT):
        return
    a.loads[e["event_id"]] = e["duration_ms"] if e["event_name"].endswith(".finish") else None
    ckpt = e["event_name"].startswith("xumi.checkpoint.")
    _take_info(a, [_INFO_RANK["load"], e["ts"], e["event_id"]], {
        **envelope, "base_model": e["base_model"], "model_version": (e["labels"] or {}).get("model_version", ""),
        "checkpoint_id": e["checkpoint_id"] if ckpt else "", "checkpoint_version": e["checkpoint_version"] if ckpt else "",
        "input_bytes": 0})


def attempt_label(label: str) -> int | None:
    """The attempt a load's labels["attempt"] names: ASCII digits within xumi_task's attempt bounds, else None
    (str.isdigit() alone takes "²" and other Unicode digits, which int() refuses)."""
    if not (label.isascii() and label.isdigit()):
        return None
    attempt = int(label)
    return attempt if MIN_ATTEMPT <= attempt <= MAX_ATTEMPT else None


def _apply_wkf(state: TaskState, e: dict[str, Any]) -> None:
    state.wkf_last_ts = max(state.wkf_last_ts or e["ts"], e["ts"])
    key = [e["ts"], e["event_id"]]
    if e["k8s_node"] and _first(state.wkf_key, key):
        state.k8s_node, state.wkf_key = e["k8s_node"], key
        state.wkf_user = {k: e[k] for k in ("tenant_id", "department_id", "project_id", "user_id")}
    elif not state.wkf_user:
        state.wkf_user = {k: e[k] for k in ("tenant_id", "department_id", "project_id", "user_id")}


# --- deadlines and facts -------------------------------------------------------------------------------------

def _advance(state: TaskState, task_id: str, now: int, cfg: LifecycleConfig) -> Result:
    """Emit every attempt whose deadline is <= now, expire tombstones, and compute the next deadline."""
    facts = []
    pending: list[int] = []
    for n in sorted(state.attempts):
        a = state.attempts[n]
        end = a.marks.get("end")
        due = end[0] + cfg.settle_ms if end else a.last_ts + cfg.orphan_timeout_ms
        if due > now:
            pending.append(due)
            continue
        facts.append(_fact(task_id, n, a, state, cfg))
        del state.attempts[n]
        state.ended[n] = due + cfg.tombstone_ms
    for n, until in list(state.ended.items()):
        if until <= now:
            del state.ended[n]
        else:
            pending.append(until)
    if state.wkf_last_ts is not None:
        # Workflow-only knowledge (no xumi event yet, or all attempts long done) lives as long as an orphan would.
        wkf_until = state.wkf_last_ts + cfg.orphan_timeout_ms
        if wkf_until > now:
            pending.append(wkf_until)
        elif not state.attempts and not state.ended:
            state.wkf_last_ts = None
        # else: kept for the open attempts, whose own deadlines re-arm the timer. Re-arming at a time already
        # reached would fire the same timer forever (it did, at the final watermark of a bounded run).
    if not state.attempts and not state.ended and state.wkf_last_ts is None:
        return None, facts, None
    return state, facts, min(pending)


def _span(start: int | None, end: int | None, minus: int = 0) -> int | None:
    """end - start - minus; None when a bound is missing or clocks disagree (task_facts holds UInt32)."""
    if start is None or end is None or end - start - minus < 0:
        return None
    return end - start - minus


def _fact(task_id: str, n: int, a: Attempt, state: TaskState, cfg: LifecycleConfig) -> dict[str, Any]:
    """The task_facts row of an ended (or orphaned) attempt, not yet enriched."""
    ts = {slot: mark[0] for slot, mark in a.marks.items()}
    end = a.marks.get("end")
    body = end[2] if end else {"status": ORPHANED, "output_bytes": None, "error_type": None,
                               "error_message": f"no end event within {cfg.orphan_timeout_ms} ms of event time"}
    finished_at = end[0] if end else a.last_ts
    finishes = [d for d in a.loads.values() if d is not None]
    load_ms = sum(finishes) if a.loads else None
    started, initialized = ts.get("started"), ts.get("initialized")
    info = {**{k: "" for k in _INFO_FIELDS[:-1]}, "input_bytes": 0, **a.info}
    who = {k: info[k] or state.wkf_user.get(k, "") for k in ("tenant_id", "department_id", "project_id", "user_id")}
    fact: dict[str, Any] = {
        "task_id": task_id, "attempt": n, "status": body["status"], **who,
        "base_model": info["base_model"], "model_version": info["model_version"],
        "checkpoint_id": info["checkpoint_id"], "checkpoint_version": info["checkpoint_version"],
        "node_id": info["node_id"], "host_name": info["host_name"] or state.k8s_node, "vm_type": info["vm_type"],
        "queued_at": ts.get("queued"), "started_at": started, "finished_at": finished_at,
        "queue_ms": _span(ts.get("queued"), started),
        "checkpoint_load_ms": load_ms,
        "init_ms": _span(started, initialized, load_ms or 0),
        "inference_ms": _span(initialized, end[0]) if end else None,
        "total_ms": _span(ts.get("queued"), end[0]) if end else None,
        "input_bytes": info["input_bytes"], "output_bytes": body["output_bytes"] or 0,
        "error_type": body["error_type"] or "", "error_message": body["error_message"] or "",
        "enrichment_status": "pending", **{k: None for k in ENRICHMENT_COLUMNS},
        "cpu_seconds": 0.0, "gpu_seconds": 0.0, "credits": 0.0,
        "job_version": cfg.job_version, "version": fact_version(finished_at, body["status"]),
    }
    return fact


def fact_version(finished_at: int, status: str, enriched: bool = False) -> int:
    """ReplacingMergeTree version: deterministic, so a replay writes the same row. An end event's fact beats an
    orphan fact of the same attempt (+2), and the enriched row beats its pending one (+1)."""
    return finished_at * 4 + (0 if status == ORPHANED else 2) + int(enriched)


def run(events: Iterable[Envelope | Mapping[str, Any]], out_of_order_ms: int,
        cfg: LifecycleConfig = LifecycleConfig()) -> list[dict[str, Any]]:
    """Join a whole stream in delivery order, as the Flink job would with a bounded-out-of-orderness watermark
    (max ts seen - out_of_order_ms - 1) and its final watermark at the end; for backfills, tools and tests."""
    states: dict[str, TaskState] = {}
    timers: dict[str, int] = {}
    facts: list[dict[str, Any]] = []
    watermark = -JAVA_LONG_MAX
    for event in events:
        e = _view(event)
        task_id = e["task_id"]
        if task_id is None:
            continue
        state, out, timer = step(states.get(task_id), event, watermark, cfg)
        facts += out
        _keep(states, timers, task_id, state, timer)
        watermark = max(watermark, e["ts"] - out_of_order_ms - 1)
        for due_id in [t for t, when in timers.items() if when <= watermark]:
            state, out, timer = expire(states.get(due_id), watermark, due_id, cfg)
            facts += out
            _keep(states, timers, due_id, state, timer)
    for task_id in list(states):
        facts += expire(states[task_id], JAVA_LONG_MAX, task_id, cfg)[1]
    return facts


def _keep(states: dict[str, TaskState], timers: dict[str, int], task_id: str, state: TaskState | None,
          timer: int | None) -> None:
    if state is None:
        states.pop(task_id, None)
    else:
        states[task_id] = state
    if timer is None:
        timers.pop(task_id, None)
    else:
        timers[task_id] = timer
