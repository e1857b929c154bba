"""Benchmark: the simulator into the local Kafka at a target rate (default 20,000 records/s for 60 s), then a
consumer reads the topics back and compares its counts with the ground truth's. Prints figures; asserts nothing.

Run with the local broker up (`python -m dev.stack up kafka` or `make stack-up`):
    PYTHONPATH=. python benchmarks/bench_simulator.py [--rate 20000] [--duration 60] [--max-speed]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import Consumer, KafkaException, TopicPartition  # noqa: E402

from telemetry import settings  # noqa: E402
from dev.simulator.config import SimConfig  # noqa: E402
from dev.simulator.producer import KafkaSink, generate_here, generate_in_worker, run  # noqa: E402
from dev.simulator.stream import SIMULATED_TOPICS, Record  # noqa: E402
from dev.simulator.truth import dumps  # noqa: E402


def end_offsets(consumer: Consumer) -> dict[tuple[str, int], int]:
    """High watermark of every partition of the simulated topics (retrying while leaders are elected)."""
    out = {}
    for topic in SIMULATED_TOPICS:
        for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            for attempt in range(60):
                try:
                    out[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
                    break
                except KafkaException:
                    if attempt == 59:
                        raise
                    time.sleep(0.5)
    return out


def sampled(batches: Iterator[list[Record]], samples: list[tuple[float, int]]) -> Iterator[list[Record]]:
    """Pass batches through, noting (time, records handed to the sink so far) about every second."""
    sent, last = 0, 0.0
    for batch in batches:
        yield batch
        sent += len(batch)
        now = time.monotonic()
        if now - last >= 1.0:
            samples.append((now, sent))
            last = now


def window_rates(samples: list[tuple[float, int]], width_s: float = 5.0) -> list[float]:
    rates = []
    i = 0
    for j in range(len(samples)):
        while samples[j][0] - samples[i][0] > width_s:
            i += 1
        if samples[j][0] - samples[i][0] >= width_s * 0.8:
            rates.append((samples[j][1] - samples[i][1]) / (samples[j][0] - samples[i][0]))
    return rates


Offsets = dict[tuple[str, int], int]  # (topic, partition) -> offset


def consume(bootstrap: str, start: Offsets, end: Offsets) -> tuple[dict[str, int], float]:
    """Read every partition from `start` to `end`; count records per topic; return counts and seconds taken."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-simulator", "enable.auto.commit": False,
                         "fetch.max.bytes": 64 * 1024 * 1024, "queued.max.messages.kbytes": 262144})
    todo = {tp: end[tp] for tp in end if end[tp] > start.get(tp, 0)}
    consumer.assign([TopicPartition(t, p, start.get((t, p), 0)) for (t, p) in todo])
    counts = {t: 0 for t in SIMULATED_TOPICS}
    t0 = time.monotonic()
    idle = 0
    while todo and idle < 30:
        msgs = consumer.consume(10_000, 1.0)
        idle = 0 if msgs else idle + 1
        for msg in msgs:
            if msg.error():
                print(f"  consumer error: {msg.error()}", file=sys.stderr)
                continue
            tp = (msg.topic(), msg.partition())
            if tp in todo and msg.offset() < todo[tp]:
                counts[msg.topic()] += 1
                if msg.offset() + 1 >= todo[tp]:
                    del todo[tp]
    elapsed = time.monotonic() - t0
    consumer.close()
    if todo:
        print(f"  (stopped after 30 s without records; {len(todo)} partitions not read to their end)")
    return counts, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20_000.0, help="target records/s (default 20,000)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of records at the rate (default 60)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-speed", action="store_true", help="send unpaced, to find the ceiling")
    parser.add_argument("--in-process", action="store_true", help="generate in the sending process (no worker)")
    parser.add_argument("--bootstrap", default=None, help="default: KAFKA_DIRECT_URL or 127.0.0.1:9092")
    parser.add_argument("--truth", default=None, help="where to keep the truth file (default: a temporary file)")
    args = parser.parse_args()
    bootstrap = args.bootstrap or settings.load().kafka_direct_url
    cfg = SimConfig(seed=args.seed, start_ms=(int(time.time()) // 60) * 60_000, rate=args.rate,
                    events=int(args.rate * args.duration))

    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-simulator-probe"})
    before = end_offsets(probe)
    print(f"simulator -> Kafka {bootstrap}: {cfg.events:,} records, target "
          f"{'unpaced' if args.max_speed else f'{cfg.rate:,.0f}/s'}, "
          f"generation {'in process' if args.in_process else 'in a worker process'}; {os.cpu_count()} CPUs, "
          f"load average before {os.getloadavg()[0]:.2f}")
    gen = generate_here if args.in_process else generate_in_worker
    batches, truth_fn = gen(cfg)  # the worker forks before the Kafka client exists
    samples: list[tuple[float, int]] = []
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    samples.append((t0, 0))
    stats = run(sampled(batches, samples), KafkaSink(bootstrap), None if args.max_speed else cfg.rate, cfg.events,
                progress_every_s=5.0, out=sys.stdout)
    total_s = time.monotonic() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    truth: dict[str, Any] = truth_fn()  # also joins the generator worker, so its CPU time is counted below
    cpu_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    truth_path = Path(args.truth) if args.truth else Path(tempfile.mkstemp(suffix=".json", prefix="sim-truth-")[1])
    truth_path.write_text(dumps(truth))
    load_during = os.getloadavg()[0]

    rates = window_rates(samples)
    errors = sum(stats.errors.values())
    print(f"\nproduced {stats.sent:,} records in {stats.elapsed_s:.1f} s of sending = {stats.rate:,.0f} records/s "
          f"({total_s:.1f} s including the final flush = {stats.sent / total_s:,.0f}/s); delivery errors {errors}"
          + (f" {stats.errors}" if errors else ""))
    if rates:
        rates_sorted = sorted(rates)
        print(f"5 s windows: min {rates_sorted[0]:,.0f}/s, median {rates_sorted[len(rates) // 2]:,.0f}/s, "
              f"max {rates_sorted[-1]:,.0f}/s over {len(rates)} windows")
    worker = "" if args.in_process else (f", generator worker {cpu_children.ru_utime + cpu_children.ru_stime:.1f} s "
                                         "(truth assembly included)")
    print(f"CPU: sender {cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime:.1f} s{worker}; "
          f"1-min load average at the end {load_during:.2f}")

    after = end_offsets(probe)
    probe.close()
    counts, read_s = consume(bootstrap, before, after)
    consumed = sum(counts.values())
    print(f"\nconsumer read {consumed:,} records in {read_s:.1f} s ({consumed / max(read_s, 1e-9):,.0f}/s)")
    print(f"{'topic':<22}{'consumed':>10}{'truth produced':>16}{'valid':>10}{'dups':>7}{'malformed':>11}  match")
    all_match = True
    for topic in SIMULATED_TOPICS:
        t = truth["topics"][topic]
        ok = counts[topic] == t["produced"]
        all_match &= ok
        print(f"{topic:<22}{counts[topic]:>10,}{t['produced']:>16,}{t['valid']:>10,}{t['duplicates']:>7,}"
              f"{sum(t['malformed'].values()):>11,}  {'yes' if ok else 'NO'}")
    print(f"{'total':<22}{consumed:>10,}{truth['meta']['records']:>16,}")
    print(f"\nconsumed == truth produced on every topic: {all_match}; DLQ expected by reason: "
          f"{json.dumps(truth['dlq'])}; truth file {truth_path}")


if __name__ == "__main__":
    main()
