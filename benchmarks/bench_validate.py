"""Benchmark of schemas.validate: microseconds per record, valid and invalid, per family and per reason; and of the
whole hop the job runs per record, pipeline.routing.route (validate, then the wide row, credits read exactly).

Prints figures only (no asserts): `PYTHONPATH=. python benchmarks/bench_validate.py [--seconds 0.3]`.
The job runs route once per record in its single Python hop, so these numbers add directly to that hop.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Callable

import pydantic

from schemas import FAMILIES, to_json, validate
from schemas.examples import EXAMPLES, example
from schemas.registry import topics_for_family
from pipeline import routing


def per_call_us(fn: Callable[[], object], seconds: float) -> float:
    """Median of 5 runs of a loop sized to take about `seconds` / 5 each; returns µs per call."""
    n = 1
    while True:  # size the loop so timer overhead is negligible
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        if (elapsed := time.perf_counter() - t0) > 0.02:
            break
        n *= 4
    n = max(1, int(n * (seconds / 5) / elapsed))
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return sorted(runs)[2]


def dumps(obj: object) -> bytes:
    return json.dumps(obj).encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.5, help="time per figure")
    args = ap.parse_args()
    print(f"python {platform.python_version()}, pydantic {pydantic.VERSION}, {platform.machine()}")

    print("\nvalid records (validate -> Valid), per family:")
    total = []
    for family in FAMILIES:
        topic = topics_for_family(family)[0]
        raw = dumps(EXAMPLES[family][0])
        us = per_call_us(lambda: validate(topic, raw), args.seconds)
        total.append(us)
        print(f"  {family:15s} {len(raw):5d} B  {us:6.2f} µs/record")
    print(f"  {'mean':15s}         {sum(total) / len(total):6.2f} µs/record")

    print("\ninvalid records (validate -> Invalid), per reason, on xumi_task / llm_request:")
    t_task, t_llm = "xumi_task", "telemetry.events.v1"
    cases: list[tuple[str, str, bytes]] = [
        ("unknown_topic", "nope", dumps(example("xumi_task"))),
        ("oversize", t_task, b" " * (64 * 1024 + 1)),
        ("not_json", t_task, b'{"event_id": '),
        ("not_object", t_task, b"[1, 2, 3]"),
        ("missing_field", t_task, dumps(example("xumi_task", task_id=...))),
        ("unknown_field", t_task, dumps(example("xumi_task", prompt="hello"))),
        ("wrong_type", t_task, dumps(example("xumi_task", attempt="1"))),
        ("bad_event_name", t_task, dumps(example("xumi_task", event_name="XUMI.Task.Queued"))),
        ("unknown_event_name", t_task, dumps(example("xumi_task", event_name="xumi.task.paused"))),
        ("bad_uuid", t_task, dumps(example("xumi_task", event_id="not-a-uuid"))),
        ("bad_timestamp", t_task, dumps(example("xumi_task", ts="2026-02-21 12:00:00"))),
        ("out_of_range", t_llm, dumps(example("llm_request", latency_ms=120_001))),
        ("bad_enum", t_llm, dumps(example("llm_request", status="maybe"))),
        ("field_too_long", t_llm, dumps(example("llm_request", region="x" * 65))),
        ("cardinality", t_llm, dumps(example("llm_request", labels={f"k{i}": "v" for i in range(17)}))),
        ("inconsistent", t_llm, dumps(example("llm_request", error_type="boom"))),
    ]
    for expected, topic, raw in cases:
        result = validate(topic, raw)
        got = getattr(result, "reason", None)
        mark = "" if got is not None and got.value == expected else f"  (!! got {got})"
        us = per_call_us(lambda: validate(topic, raw), args.seconds)
        print(f"  {expected:18s} {us:6.2f} µs/record{mark}")

    print("\nthe job's hop (routing.route: validate + wide row), valid records per family:")
    total = []
    for family in FAMILIES:
        topic = topics_for_family(family)[0]
        raw = dumps(EXAMPLES[family][0])
        us = per_call_us(lambda: routing.route(topic, raw), args.seconds)
        total.append(us)
        print(f"  {family:15s} {us:6.2f} µs/record")
    print(f"  {'mean':15s} {sum(total) / len(total):6.2f} µs/record")
    # 18 significant digits: the exact text path a double could not take
    huge = dumps(example("wkf_gpu")).replace(b'"credits": 12.5', b'"credits": 734512345678.123456')
    us = per_call_us(lambda: routing.route("wkf_gpu", huge), args.seconds)
    print(f"  {'wkf_gpu, credits 734512345678.123456':36s} {us:6.2f} µs/record")

    print("\nproducer side (simulator/SDK): construct model + to_json:")
    for family in ("xumi_task", "llm_request"):
        cls = FAMILIES[family]
        data = json.loads(to_json(cls.model_validate_json(dumps(EXAMPLES[family][0]))))
        us = per_call_us(lambda: to_json(cls(**data)), args.seconds)
        print(f"  {family:15s} {us:6.2f} µs/event")
    return 0


if __name__ == "__main__":
    sys.exit(main())
