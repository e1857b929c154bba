"""Watermark heartbeats: every interval, one small record into each partition of every source topic, stamped with
the wall clock (minus a delay). No partition of the job's Kafka source then goes quiet, so windows close about
out-of-orderness + interval after real time even on topics with little traffic, and the idle timeout is only a
safety net. The job drops heartbeats by their header before validation: they reach no DLQ, lake or count.

Run beside the job: `python -m services.heartbeat` (HEARTBEAT_INTERVAL_MS, HEARTBEAT_DELAY_MS).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, Producer

from telemetry import settings, topics

# The header the job filters on; its value is the heartbeat's timestamp, for people reading the topic.
HEADER = topics.HEARTBEAT_HEADER
# How often the partition lists are read again, so partitions added to a topic get heartbeats too.
REFRESH_S = 60.0


@dataclass(frozen=True)
class Beat:
    """One heartbeat record: where it goes and its Kafka timestamp (epoch ms)."""

    topic: str
    partition: int
    timestamp_ms: int

    def value(self) -> bytes:
        return json.dumps({"heartbeat": self.timestamp_ms, "topic": self.topic, "partition": self.partition},
                          separators=(",", ":")).encode()


def beats(partitions: Mapping[str, int], now_ms: int, delay_ms: int) -> list[Beat]:
    """One beat per partition of each topic, stamped now_ms - delay_ms. A delay gives producers whose events reach
    Kafka later than their own ts that much more room before the job counts them as out of order."""
    stamp = now_ms - delay_ms
    return [Beat(topic, p, stamp) for topic, count in sorted(partitions.items()) for p in range(count)]


def partition_counts(producer: Producer, names: Iterable[str], timeout_s: float = 10.0) -> dict[str, int]:
    """Partitions per topic as the broker has them; a missing topic is an error naming it and the fix."""
    metadata = producer.list_topics(timeout=timeout_s).topics
    missing = [name for name in names if name not in metadata or metadata[name].error is not None]
    if missing:
        raise SystemExit(f"heartbeat: topics {', '.join(missing)} do not exist on the broker; create them first "
                         "with `python -m telemetry.topic_admin`")
    return {name: len(metadata[name].partitions) for name in names}


class Heartbeat:
    """Sends a round of beats every interval until stopped; counts delivery errors (none is retried: the next
    round supersedes it)."""

    def __init__(self, producer: Producer, names: Iterable[str], interval_ms: int, delay_ms: int,
                 clock: Callable[[], float] = time.time, metadata_timeout_s: float = 10.0) -> None:
        self.producer = producer
        self.metadata_timeout_s = metadata_timeout_s
        self.names = tuple(names)
        self.interval_s = interval_ms / 1000
        self.delay_ms = delay_ms
        self.clock = clock
        self.stopped = threading.Event()
        self.sent = 0
        self.errors = 0
        self.partitions: dict[str, int] = {}
        self._refreshed = float("-inf")

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.errors += 1

    def refresh(self) -> None:
        """Read the topics' partition counts from the broker."""
        self.partitions = partition_counts(self.producer, self.names, self.metadata_timeout_s)
        self._refreshed = time.monotonic()

    def beat(self) -> int:
        """Send one round now; returns the number of records handed to the producer. While the broker is away,
        the known partitions keep getting beats (queued by the producer, counted as errors once it is full)."""
        if time.monotonic() - self._refreshed >= REFRESH_S:
            try:
                self.refresh()
            except KafkaException as exc:
                if not self.partitions:
                    raise
                self._refreshed = time.monotonic()
                print(f"heartbeat: cannot read the topics' partitions, keeping the last known: {exc}",
                      file=sys.stderr, flush=True)
        sent = 0
        for b in beats(self.partitions, int(self.clock() * 1000), self.delay_ms):
            try:
                self.producer.produce(b.topic, b.value(), partition=b.partition, timestamp=b.timestamp_ms,
                                      headers=[(HEADER, str(b.timestamp_ms).encode())], on_delivery=self._delivered)
            except BufferError:  # the producer's queue is full: the broker has been away for a while
                self.errors += 1
                continue
            sent += 1
        self.producer.poll(0)
        self.sent += sent
        return sent

    def run(self, progress_s: float = 60.0, out: Any = sys.stdout, alive: Path | None = None) -> None:
        """Rounds at a fixed rate (a slow round is not caught up: the next one is due an interval after it);
        alive, when given, is touched after each round, for a container's healthcheck."""
        next_at = time.monotonic()
        last_report = next_at
        while not self.stopped.is_set():
            self.beat()
            if alive is not None:
                alive.touch()
            now = time.monotonic()
            if now - last_report >= progress_s:
                print(f"heartbeat: {self.sent:,} records to {sum(self.partitions.values())} partitions of "
                      f"{len(self.partitions)} topics, delivery errors {self.errors}", file=out, flush=True)
                last_report = now
            next_at = max(next_at + self.interval_s, now)
            self.stopped.wait(next_at - now)
        self.producer.flush(10)


def build_parser(s: settings.Settings) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m services.heartbeat", description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default=s.kafka_direct_url, help="Kafka bootstrap servers (KAFKA_DIRECT_URL)")
    p.add_argument("--topics", default=",".join(topics.SOURCE_TOPICS),
                   help="comma-separated topics (default: every source topic of telemetry/topics.py)")
    p.add_argument("--interval-ms", type=int, default=s.heartbeat_interval_ms,
                   help=f"time between rounds (HEARTBEAT_INTERVAL_MS, default {s.heartbeat_interval_ms})")
    p.add_argument("--delay-ms", type=int, default=s.heartbeat_delay_ms,
                   help=f"stamp beats this far behind the wall clock (HEARTBEAT_DELAY_MS, default {s.heartbeat_delay_ms})")
    p.add_argument("--alive-file", type=Path, default=None, metavar="PATH",
                   help="touch this file after every round (a container healthcheck reads its age)")
    p.add_argument("--progress-interval", type=float, default=60.0, metavar="SECONDS",
                   help="seconds between progress lines (default 60)")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        s = settings.load()
    except settings.SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    a = build_parser(s).parse_args(argv)
    names = [t for t in a.topics.split(",") if t]
    if not 10 <= a.interval_ms <= 60_000 or not 0 <= a.delay_ms <= 3_600_000 or not names:
        print(f"configuration error: --interval-ms {a.interval_ms} must be 10-60000, --delay-ms {a.delay_ms} "
              f"0-3600000, and --topics must name at least one topic", file=sys.stderr)
        return 2
    producer = Producer({"bootstrap.servers": a.bootstrap, "client.id": "telemetry-heartbeat", "linger.ms": 5})
    heartbeat = Heartbeat(producer, names, a.interval_ms, a.delay_ms)
    signal.signal(signal.SIGTERM, lambda *_: heartbeat.stopped.set())
    signal.signal(signal.SIGINT, lambda *_: heartbeat.stopped.set())
    try:
        heartbeat.refresh()
    except KafkaException as exc:
        print(f"heartbeat: error: Kafka at {a.bootstrap}: {exc}", file=sys.stderr)
        return 1
    print(f"heartbeat: every {a.interval_ms} ms into {sum(heartbeat.partitions.values())} partitions of "
          f"{len(names)} topics at {a.bootstrap}, stamped {a.delay_ms} ms behind the wall clock", flush=True)
    heartbeat.run(a.progress_interval, alive=a.alive_file)
    print(f"heartbeat: stopped after {heartbeat.sent:,} records, delivery errors {heartbeat.errors}", flush=True)
    return 0
