"""The lifecycle join's Python work per task event, as udfs/lifecycle.py does it: load the task's state (JSON text),
step, store it again; and the task usage ledger's per fact revision (pipeline.facts.bill).

Prints figures only: `PYTHONPATH=. python benchmarks/bench_lifecycle.py [--events 20000]`. The events are the
simulator's task topics (Workflow-only tasks and starts delivered after their end included), validated and
deduplicated, in delivery order, with the watermark trailing them by the simulator's out-of-orderness.
"""

from __future__ import annotations

import argparse
import json
import time

import schemas
from pipeline import facts, lifecycle
from dev.simulator import SimConfig, Simulation

TASK_TOPICS = ("xumi_task", "xumi_load", "wkf_task")


def task_events(events: int) -> list[dict]:
    sim = Simulation(SimConfig(seed=4, start_ms=1_767_225_600_000, rate=1_000, events=events))
    seen, out = set(), []
    for batch in sim.records():
        for topic, _key, value, _ts in batch:
            if topic in TASK_TOPICS:
                result = schemas.validate(topic, value)
                if result.ok and result.event.event_id not in seen:
                    seen.add(result.event.event_id)
                    out.append(json.loads(value))
    return out


def best_of(runs: int, fn) -> float:
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000, help="simulator records to draw the task events from")
    args = ap.parse_args()
    events = task_events(args.events)
    cfg = lifecycle.LifecycleConfig(orphan_timeout_ms=60_000)
    written: list[int] = []

    def join() -> None:
        stored: dict[str, bytes] = {}
        watermark = -lifecycle.JAVA_LONG_MAX
        written.clear()
        for e in events:
            raw = stored.get(e["task_id"])
            state = lifecycle.TaskState.from_bytes(raw) if raw else None
            state, _, _ = lifecycle.step(state, e, watermark, cfg)
            if state is not None:
                stored[e["task_id"]] = state.to_bytes()
                written.append(len(stored[e["task_id"]]))
            watermark = max(watermark, lifecycle._view(e)["ts"] - 5_001)

    seconds = best_of(5, join)
    print(f"lifecycle join: {len(events):,} task events, {seconds / len(events) * 1e6:.1f} µs per event "
          f"(load state, step, store state), state {sum(written) / max(len(written), 1):.0f} B per event written")
    revisions = lifecycle.run(events, 5_000, cfg)
    ledger_text: dict[tuple, str] = {}

    def ledger() -> None:
        ledger_text.clear()
        for fact in revisions:
            key = (fact["task_id"], fact["attempt"])
            text = ledger_text.get(key)
            after, _ = facts.bill(facts.Ledger.from_text(text) if text else None, fact, cfg.allowed_lateness_ms)
            if after is not None:
                ledger_text[key] = after.to_text()

    seconds = best_of(5, ledger)
    print(f"task usage ledger: {len(revisions):,} revisions of {len(lifecycle.latest(revisions)):,} attempts, "
          f"{seconds / len(revisions) * 1e6:.1f} µs per revision (load ledger, bill, store)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
