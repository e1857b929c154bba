"""Lifecycle join for one task_id: xumi_task, xumi_load and wkf_task events in, task facts out: one per attempt
when it ends (or is orphaned), and a new revision of it whenever a later event changes it.

Plain Python: udfs/lifecycle.py keeps `TaskState` (JSON text) in a Flink ValueState and the returned deadline in
an event-time timer; pipeline.facts.bill turns the revisions into usage deltas. Phase durations follow
dev/simulator/truth.py exactly; facts carry task_facts' columns. The rules, as the README states them:

- XUMI events name their attempt. The Workflow service's TaskStarted and TaskCompleted / TaskFailed name none:
  when its end is due and no XUMI event of the task is known, they make attempt 1 (a task only the Workflow
  service reported); otherwise they only fill in the node and the user.
- An attempt is reported when event time passes its end, or as orphaned orphan_timeout_ms after its last event.
  It stays in the state after that: an event that arrives later and changes it (a start delivered after the end,
  the end of an orphan) makes a new revision at once, with a higher version (task_facts keeps the highest).
- A `late` event (past the allowed lateness: its window is closed for billing) never opens an attempt and never
  changes one whose usage was counted; it may still complete one that was not (an orphan, or one whose end came
  late too). An attempt whose end came late is reported with late = 1 and counted in no usage window.
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
from pipeline.routing import WINDOW_MS, is_late, window_start

FINISHED, FAILED, ORPHANED = "finished", "failed", "orphaned"
JAVA_LONG_MAX = 2**63 - 1  # Flink's final watermark; also the clamp for timers handed to Flink

# task_facts' columns in table order (sql/clickhouse/migrations/0002_task_facts.sql, then 0008) with the Python type
# of each value; ingested_at is left to its server default. Timestamps (*_at) are epoch milliseconds (int).
FACT_COLUMNS: tuple[tuple[str, type], ...] = (
    ("task_id", str), ("attempt", int), ("status", str), ("tenant_id", str), ("department_id", str),
    ("project_id", str), ("user_id", str), ("base_model", str), ("model_version", str), ("checkpoint_id", str),
    ("checkpoint_version", str), ("node_id", str), ("host_name", str), ("vm_type", str), ("queued_at", int),
    ("started_at", int), ("finished_at", int), ("queue_ms", int), ("checkpoint_load_ms", int), ("init_ms", int),
    ("inference_ms", int), ("total_ms", int), ("input_bytes", int), ("output_bytes", int), ("error_type", str),
    ("error_message", str), ("enrichment_status", str), ("gpu_util_avg", float), ("gpu_util_max", float),
    ("gpu_mem_avg", float), ("gpu_mem_max", float), ("cpu_util_avg", float), ("cpu_util_max", float),
    ("ram_avg", float), ("ram_max", float), ("net_avg", float), ("net_max", float), ("disk_avg", float),
    ("disk_max", float), ("cpu_seconds", float), ("gpu_seconds", float), ("job_version", str),
    ("version", int), ("late", int),
)
ENRICHMENT_COLUMNS = tuple(name for name, _ in FACT_COLUMNS[FACT_COLUMNS.index(("gpu_util_avg", float)):
                                                          FACT_COLUMNS.index(("disk_max", float)) + 1])

# Which event's envelope and model fields describe an attempt when its events disagree: the end event first,
# then started, queued, initialized, then loads. A fixed rank (not arrival order) keeps the fact order-independent.
_INFO_RANK = {"finished": 0, "failed": 0, "started": 1, "queued": 2, "initialized": 3, "load": 4}
_INFO_FIELDS = ("tenant_id", "department_id", "project_id", "user_id", "node_id", "host_name", "vm_type",
                "base_model", "model_version", "checkpoint_id", "checkpoint_version", "input_bytes")
MAX_LOADS_PER_ATTEMPT = 32  # a producer looping on load events must not grow the state without bound
# Source of a mark, its first sort key: an attempt's own XUMI events win over the Workflow service's view.
XUMI, WKF = 0, 1
WKF_ATTEMPT = 1  # the attempt a task reported by the Workflow service alone becomes
_WKF_STATUS = {"wkf.task.completed": FINISHED, "wkf.task.failed": FAILED}


@dataclass(frozen=True)
class LifecycleConfig:
    """Event-time rules of the join. orphan_timeout_ms: an attempt with no event for this long is orphaned.
    allowed_lateness_ms: the job's; a reported attempt counted in usage stays correctable until its end's window
    closes for billing (window end + this). tombstone_ms: how long after its report an attempt counted in no usage
    (an orphan, a late end) is kept, so its late end still gives it its real status. settle_ms: wait this much
    event time after an end before reporting (the watermark already bounds lateness)."""

    orphan_timeout_ms: int = 30 * 60_000
    allowed_lateness_ms: int = 10 * 60_000
    tombstone_ms: int = 5 * 60_000
    settle_ms: int = 0
    job_version: str = "dev"


@dataclass
class Attempt:
    """What is known of one attempt. marks: queued/started/initialized/end -> [source, ts, event_id, late, end
    fields]; the smallest [source, ts, event_id] of a slot wins."""

    last_ts: int  # newest event of the attempt: the orphan clock and an orphan's finished_at
    marks: dict[str, list[Any]] = field(default_factory=dict)
    loads: dict[str, int | None] = field(default_factory=dict)  # event_id -> duration_ms (finish) or None (start)
    info: dict[str, Any] = field(default_factory=dict)
    info_key: list[Any] = field(default_factory=list)  # [rank, ts, event_id] of the event `info` came from
    revision: int = 0  # facts reported so far; 0 while the attempt is open
    keep_until: int = 0  # once reported: the event time at which it is forgotten


@dataclass
class TaskState:
    """Per-task_id state: its attempts (open, and reported ones still correctable) and the Workflow service's view."""

    attempts: dict[int, Attempt] = field(default_factory=dict)
    k8s_node: str = ""  # from wkf TaskStarted
    wkf_key: list[Any] = field(default_factory=list)  # [ts, event_id] of the TaskStarted used
    wkf_user: dict[str, str] = field(default_factory=dict)  # tenant/department/project/user of the Workflow events
    wkf_last_ts: int | None = None
    wkf_marks: dict[str, list[Any]] = field(default_factory=dict)  # its start / end, until they make attempt 1
    xumi_seen: bool = False  # a XUMI event of the task was applied: the Workflow view makes no attempt
    wkf_attempt: bool = False  # attempt 1 was made from the Workflow view

    def to_bytes(self) -> bytes:
        # vars() rather than dataclasses.asdict, which deep-copies every nested dict and list first: json.dumps
        # needs no copy, and asdict was a third of the lifecycle join's time per event.
        plain = {**vars(self), "attempts": {n: vars(a) for n, a in self.attempts.items()}}
        return json.dumps(plain, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> TaskState:
        d = json.loads(raw)
        d["attempts"] = {int(n): Attempt(**a) for n, a in d["attempts"].items()}
        return cls(**d)


Result = tuple[TaskState | None, list[dict[str, Any]], int | None]


def step(state: TaskState | None, event: Envelope | Mapping[str, Any], now_ms: int,
         cfg: LifecycleConfig = LifecycleConfig(), late: bool = False) -> Result:
    """Apply one validated xumi_task / xumi_load / wkf_task event (model or dict) at watermark now_ms; `late`:
    it arrived past the allowed lateness (the job's LATE lane).

    Returns the new state (None when nothing is left to remember), the facts now due (first reports and
    revisions), and the earliest event time at which `expire` must run next (None: no deadline)."""
    e = _view(event)
    family = EVENT_NAME_FAMILY.get(e["event_name"])
    if family not in ("wkf_task", "xumi_task", "xumi_load"):
        raise ValueError(f"not a lifecycle event: {e['event_name']!r}")
    if state is None and late:
        return None, [], None  # nothing to complete: late_events keeps it
    state = state or TaskState()
    if family == "wkf_task":
        revised = _apply_wkf(state, e, late)
    else:
        revised = _apply_xumi(state, e, family, late)
    return _advance(state, e["task_id"], now_ms, cfg, revised)


def expire(state: TaskState | None, timer_ms: int, task_id: str, cfg: LifecycleConfig = LifecycleConfig()) -> Result:
    """Event time reached timer_ms: report the attempts now due and forget the ones no longer correctable."""
    if state is None:
        return None, [], None
    return _advance(state, task_id, timer_ms, cfg, None)


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


def _billed(a: Attempt) -> bool:
    """Reported with an end that came in time: the attempt is counted in usage (facts.bill)."""
    end = a.marks.get("end")
    return a.revision > 0 and end is not None and not end[3]


def _attempt(state: TaskState, n: int, ts: int, late: bool) -> Attempt | None:
    """The attempt a XUMI event applies to, opened if need be; None when the event must be left out."""
    a = state.attempts.get(n)
    if a is None:
        if late:
            return None  # a late event never opens an attempt (nor revives a forgotten one)
        a = state.attempts[n] = Attempt(last_ts=ts)
    elif late and _billed(a):
        return None  # its usage window is closed: the fact keeps agreeing with usage_10s
    return a


def _mark(a: Attempt, slot: str, mark: list[Any]) -> bool:
    if _first(a.marks.get(slot), mark[:3]):
        a.marks[slot] = mark
        return True
    return False


def _take_info(a: Attempt, key: list[Any], info: dict[str, Any]) -> bool:
    if _first(a.info_key, key):
        a.info, a.info_key = info, key
        return True
    return False


def _touch(a: Attempt, ts: int) -> bool:
    if ts > a.last_ts:
        a.last_ts = ts
        return True
    return False


def _apply_xumi(state: TaskState, e: dict[str, Any], family: str, late: bool) -> int | None:
    """Apply a XUMI event; returns the attempt it changed, if any."""
    envelope = {k: e[k] for k in _INFO_FIELDS[:7]}
    if family == "xumi_task":
        n = int(e["attempt"])
        a = _attempt(state, n, e["ts"], late)
        if a is None:
            return None
        kind = e["event_name"].rsplit(".", 1)[1]
        slot = "end" if kind in (FINISHED, FAILED) else kind
        body = {"status": kind, "output_bytes": e["output_bytes"], "error_type": e["error_type"],
                "error_message": e["error_message"]} if slot == "end" else None
        changed = _mark(a, slot, [XUMI, e["ts"], e["event_id"], late, body])
        changed |= _take_info(a, [_INFO_RANK[kind], e["ts"], e["event_id"]], {
            **envelope, "base_model": e["model"], "model_version": e["model_version"],
            "checkpoint_id": e["checkpoint_id"] or "", "checkpoint_version": e["checkpoint_version"] or "",
            "input_bytes": e["input_bytes"]})
    else:
        # xumi_load has no attempt field: the attempt rides in labels["attempt"]. Loads without it (warm-ups,
        # other producers) cannot be attributed to an attempt and are left out of the join.
        n = attempt_label((e["labels"] or {}).get("attempt", ""))
        if n is None:
            return None
        a = _attempt(state, n, e["ts"], late)
        if a is None or (e["event_id"] not in a.loads and len(a.loads) >= MAX_LOADS_PER_ATTEMPT):
            return None
        changed = e["event_id"] not in a.loads
        a.loads[e["event_id"]] = e["duration_ms"] if e["event_name"].endswith(".finish") else None
        ckpt = e["event_name"].startswith("xumi.checkpoint.")
        changed |= _take_info(a, [_INFO_RANK["load"], e["ts"], e["event_id"]], {
            **envelope, "base_model": e["base_model"], "model_version": (e["labels"] or {}).get("model_version", ""),
            "checkpoint_id": e["checkpoint_id"] if ckpt else "",
            "checkpoint_version": e["checkpoint_version"] if ckpt else "", "input_bytes": 0})
    changed |= _touch(a, e["ts"])
    state.xumi_seen = True
    state.wkf_marks = {}
    return n if changed else None


def attempt_label(label: str) -> int | None:
    """The attempt a load's labels["attempt"] names: ASCII digits within xumi_task's attempt bounds, else None
    (str.isdigit() alone takes "²" and other Unicode digits, which int() refuses)."""
    if not (label.isascii() and label.isdigit()):
        return None
    attempt = int(label)
    return attempt if MIN_ATTEMPT <= attempt <= MAX_ATTEMPT else None


def _apply_wkf(state: TaskState, e: dict[str, Any], late: bool) -> int | None:
    """Apply a Workflow event; returns the attempt it changed, if any (attempt 1 once made from this view)."""
    state.wkf_last_ts = max(state.wkf_last_ts or e["ts"], e["ts"])
    key = [e["ts"], e["event_id"]]
    if e["k8s_node"] and _first(state.wkf_key, key):
        state.k8s_node, state.wkf_key = e["k8s_node"], key
        state.wkf_user = {k: e[k] for k in ("tenant_id", "department_id", "project_id", "user_id")}
    elif not state.wkf_user:
        state.wkf_user = {k: e[k] for k in ("tenant_id", "department_id", "project_id", "user_id")}
    status = _WKF_STATUS.get(e["event_name"])
    slot = "end" if status else "started"
    body = {"status": status, "output_bytes": None, "error_type": None, "error_message": None} if status else None
    mark = [WKF, e["ts"], e["event_id"], late, body]
    if state.wkf_attempt:
        a = state.attempts.get(WKF_ATTEMPT)
        if a is None or (late and _billed(a)):
            return None
        changed = _mark(a, slot, mark) | _touch(a, e["ts"])
        return WKF_ATTEMPT if changed else None
    if not state.xumi_seen and _first(state.wkf_marks.get(slot), mark[:3]):
        state.wkf_marks[slot] = mark
    return None


# --- deadlines and facts -------------------------------------------------------------------------------------

def _advance(state: TaskState, task_id: str, now: int, cfg: LifecycleConfig, revised: int | None) -> Result:
    """Report every attempt now due and the one `revised`, forget the ones past keeping, and compute the next
    deadline."""
    facts = []
    pending: list[int] = []
    _wkf_attempt(state, now, cfg, pending)
    for n in sorted(state.attempts):
        a = state.attempts[n]
        if a.revision == 0:
            end = a.marks.get("end")
            due = end[1] + cfg.settle_ms if end else a.last_ts + cfg.orphan_timeout_ms
            if due > now:
                pending.append(due)
                continue
        elif n != revised:
            if a.keep_until <= now:
                del state.attempts[n]
            else:
                pending.append(a.keep_until)
            continue
        a.revision += 1
        facts.append(_fact(task_id, n, a, state, cfg))
        a.keep_until = _keep_until(a, now, cfg)
        if a.keep_until <= now:
            del state.attempts[n]
        else:
            pending.append(a.keep_until)
    if state.wkf_last_ts is not None:
        # Workflow-only knowledge (no xumi event yet, or all attempts long done) lives as long as an orphan would.
        wkf_until = state.wkf_last_ts + cfg.orphan_timeout_ms
        if wkf_until > now:
            pending.append(wkf_until)
        elif not state.attempts:
            state.wkf_last_ts = None
        # else: kept for the attempts, whose own deadlines re-arm the timer. Re-arming at a time already
        # reached would fire the same timer forever (it did, at the final watermark of a bounded run).
    if not state.attempts and state.wkf_last_ts is None:
        return None, facts, None
    return state, facts, min(pending) if pending else None


def _wkf_attempt(state: TaskState, now: int, cfg: LifecycleConfig, pending: list[int]) -> None:
    """Attempt 1 made of the Workflow view, once its end is due (its start's orphan deadline without an end) and
    no XUMI event of the task is known."""
    if state.xumi_seen or state.wkf_attempt or not state.wkf_marks or state.wkf_last_ts is None:
        return
    end = state.wkf_marks.get("end")
    due = end[1] + cfg.settle_ms if end else state.wkf_last_ts + cfg.orphan_timeout_ms
    if due > now:
        pending.append(due)
        return
    state.attempts[WKF_ATTEMPT] = Attempt(last_ts=state.wkf_last_ts, marks=state.wkf_marks)
    state.wkf_marks, state.wkf_attempt = {}, True


def _keep_until(a: Attempt, now: int, cfg: LifecycleConfig) -> int:
    """A counted attempt is kept until its end's window closes for billing: later, all its events are late. One
    counted in no usage is kept tombstone_ms after its latest report."""
    if _billed(a):
        return window_start(a.marks["end"][1]) + WINDOW_MS + cfg.allowed_lateness_ms
    return max(a.keep_until, now + cfg.tombstone_ms)


def _span(start: int | None, end: int | None, minus: int = 0) -> int | None:
    """end - start - minus; None when a bound is missing or clocks disagree (task_facts holds UInt32)."""
    if start is None or end is None or end - start - minus < 0:
        return None
    return end - start - minus


def _fact(task_id: str, n: int, a: Attempt, state: TaskState, cfg: LifecycleConfig) -> dict[str, Any]:
    """The task_facts row of a reported attempt at its current revision, not yet enriched."""
    ts = {slot: mark[1] for slot, mark in a.marks.items()}
    end = a.marks.get("end")
    body = end[4] if end else {"status": ORPHANED, "output_bytes": None, "error_type": None,
                               "error_message": f"no end event within {cfg.orphan_timeout_ms} ms of event time"}
    finished_at = end[1] if end else a.last_ts
    finishes = [d for d in a.loads.values() if d is not None]
    load_ms = sum(finishes) if a.loads else None
    started, initialized = ts.get("started"), ts.get("initialized")
    info = {**{k: "" for k in _INFO_FIELDS[:-1]}, "input_bytes": 0, **a.info}
    who = {k: info[k] or state.wkf_user.get(k, "") for k in ("tenant_id", "department_id", "project_id", "user_id")}
    return {
        "task_id": task_id, "attempt": n, "status": body["status"], **who,
        "base_model": info["base_model"], "model_version": info["model_version"],
        "checkpoint_id": info["checkpoint_id"], "checkpoint_version": info["checkpoint_version"],
        "node_id": info["node_id"], "host_name": info["host_name"] or state.k8s_node, "vm_type": info["vm_type"],
        "queued_at": ts.get("queued"), "started_at": started, "finished_at": finished_at,
        "queue_ms": _span(ts.get("queued"), started),
        "checkpoint_load_ms": load_ms,
        "init_ms": _span(started, initialized, load_ms or 0),
        "inference_ms": _span(initialized, end[1]) if end else None,
        "total_ms": _span(ts.get("queued"), end[1]) if end else None,
        "input_bytes": info["input_bytes"], "output_bytes": body["output_bytes"] or 0,
        "error_type": body["error_type"] or "", "error_message": body["error_message"] or "",
        "enrichment_status": "pending", **{k: None for k in ENRICHMENT_COLUMNS},
        "cpu_seconds": 0.0, "gpu_seconds": 0.0,
        "job_version": cfg.job_version, "version": fact_version(a.revision), "late": int(bool(end and end[3])),
    }


def fact_version(revision: int, enriched: bool = False) -> int:
    """ReplacingMergeTree version: each revision of an attempt beats the ones before it, and the enriched row
    beats its pending one (+1). The revision is counted in the join's checkpointed state, so a restart writes the
    revisions that follow from it; what a crash left uncommitted is never read (Kafka transactions)."""
    return revision * 2 + int(enriched)


def revision_of(version: int) -> int:
    return version >> 1


def run(events: Iterable[Envelope | Mapping[str, Any]], out_of_order_ms: int,
        cfg: LifecycleConfig = LifecycleConfig()) -> list[dict[str, Any]]:
    """Join a whole stream in delivery order, as the Flink job would with a bounded-out-of-orderness watermark
    (max ts seen - out_of_order_ms - 1), the job's late lane and its final watermark at the end; every revision
    in the order reported (`latest` keeps each attempt's last). For backfills, tools and tests."""
    states: dict[str, TaskState] = {}
    timers: dict[str, int] = {}
    facts: list[dict[str, Any]] = []
    watermark = -JAVA_LONG_MAX
    for event in events:
        e = _view(event)
        task_id = e["task_id"]
        if task_id is None:
            continue
        late = is_late(e["ts"], watermark, cfg.allowed_lateness_ms)
        state, out, timer = step(states.get(task_id), event, watermark, cfg, late)
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


def latest(facts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The newest revision of each attempt (what task_facts FINAL shows), in (task_id, attempt) order."""
    newest: dict[tuple[str, int], dict[str, Any]] = {}
    for f in facts:
        key = (f["task_id"], f["attempt"])
        if key not in newest or f["version"] > newest[key]["version"]:
            newest[key] = dict(f)
    return [newest[k] for k in sorted(newest)]


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
