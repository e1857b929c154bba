"""Sending the record stream: to Kafka (paced to a target rate, with a progress line) or to a JSONL file.

Pacing only decides when a record leaves, never what it contains, so a paced and an unpaced run are
byte-identical. Delivery errors are counted per error code and reported; nothing is dropped silently.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import pickle
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterator, Protocol

from dev.simulator.config import SimConfig
from dev.simulator.stream import Record, Simulation


class SinkError(RuntimeError):
    """The destination cannot take records (unreachable, missing topics); the message says what to do."""


class Sink(Protocol):
    def send(self, batch: list[Record]) -> None: ...
    def in_flight(self) -> int: ...
    def errors(self) -> dict[str, int]: ...
    def close(self, timeout_s: float) -> None: ...


# Batching for throughput: lz4 is the cheapest codec on CPU (this box also runs the broker), 20 ms linger
# fills batches of a few hundred records per partition at 20k records/s; idempotence keeps librdkafka's
# retries from writing duplicates we did not plan (the truth counts exactly the duplicates we inject).
PRODUCER_CONFIG: dict[str, Any] = {
    "client.id": "telemetry-simulator",
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "batch.num.messages": 10_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "enable.idempotence": True,
    "acks": "all",
    # Java's partitioner: a task's records land on the same partition whichever client produced them.
    "partitioner": "murmur2_random",
    # Only failures come back through the delivery callback: one Python call per error, not per record.
    "delivery.report.only.error": True,
}


@dataclass
class KafkaSink:
    """confluent_kafka Producer with the Kafka record timestamp set to the event's ts."""

    bootstrap: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from confluent_kafka import Producer  # imported here so file-only runs do not need librdkafka

        self._errors: dict[str, int] = {}
        self.client_errors: list[str] = []
        self._producer = Producer({**PRODUCER_CONFIG, **self.extra, "bootstrap.servers": self.bootstrap,
                                   "on_delivery": self._on_delivery, "error_cb": self._on_error})

    def preflight(self, topics: tuple[str, ...], timeout_s: float = 10.0) -> None:
        """Fail fast, naming the fix, when the broker is unreachable or a topic is missing (a broker that
        auto-creates topics would otherwise create them with the wrong partition counts)."""
        from confluent_kafka import KafkaException

        try:
            present = self._producer.list_topics(timeout=timeout_s).topics
        except KafkaException as exc:
            raise SinkError(f"Kafka at {self.bootstrap} is unreachable ({exc.args[0].str()}); start the local "
                            "broker with `python -m dev.stack up kafka` or set KAFKA_DIRECT_URL") from None
        missing = [t for t in topics if t not in present]
        if missing:
            raise SinkError(f"Kafka at {self.bootstrap} lacks the topics {missing}; `python -m dev.stack up "
                            "kafka` creates the catalogue's topics")

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            name = err.name()
            self._errors[name] = self._errors.get(name, 0) + 1

    def _on_error(self, err: Any) -> None:
        # Client-level errors (broker unreachable, ...): librdkafka keeps retrying; keep the latest few to show.
        self.client_errors = (self.client_errors + [str(err)])[-5:]

    def send(self, batch: list[Record]) -> None:
        produce, poll = self._producer.produce, self._producer.poll
        for topic, key, value, ts in batch:
            while True:
                try:
                    produce(topic, value, key, timestamp=ts)
                    break
                except BufferError:  # local queue full: let librdkafka drain it, then retry
                    poll(0.05)
        poll(0)

    def in_flight(self) -> int:
        return len(self._producer)

    def errors(self) -> dict[str, int]:
        return dict(self._errors)

    def close(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self._producer) and time.monotonic() < deadline:
            self._producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
        left = len(self._producer)
        if left:
            name = "NOT_DELIVERED_BEFORE_FLUSH_TIMEOUT"
            self._errors[name] = self._errors.get(name, 0) + left


class JsonlSink:
    """One JSON object per record: {"topic", "key", "ts", "value"}; "value_b64" replaces "value" when the
    bytes are not UTF-8 (some malformed records)."""

    def __init__(self, path: str) -> None:
        self._file: IO[str] = open(path, "w", encoding="utf-8")

    def send(self, batch: list[Record]) -> None:
        lines = []
        for topic, key, value, ts in batch:
            rec: dict[str, Any] = {"topic": topic, "key": key.decode() if key is not None else None, "ts": ts}
            try:
                rec["value"] = value.decode("utf-8")
            except UnicodeDecodeError:
                rec["value_b64"] = base64.b64encode(value).decode()
            lines.append(json.dumps(rec, separators=(",", ":")))
        self._file.write("\n".join(lines) + "\n")

    def in_flight(self) -> int:
        return 0

    def errors(self) -> dict[str, int]:
        return {}

    def close(self, timeout_s: float) -> None:
        self._file.close()


def read_jsonl(path: str) -> Iterator[Record]:
    """Records back from a JsonlSink file."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            value = rec["value"].encode() if "value" in rec else base64.b64decode(rec["value_b64"])
            key = rec["key"].encode() if rec["key"] is not None else None
            yield rec["topic"], key, value, rec["ts"]


# --- generation, in this process or in a worker -----------------------------------------------------------

Generated = tuple[Iterator[list[Record]], Callable[[], dict[str, Any]]]  # record batches, then the truth


def generate_here(cfg: SimConfig, check: bool = False) -> Generated:
    sim = Simulation(cfg, check)
    return sim.records(), sim.truth.to_dict


def _worker(cfg: SimConfig, check: bool, conn: Any, parents_end: Any) -> None:
    # The fork copied the parent's reading end: closed here, a parent that dies makes the next send fail instead
    # of blocking this process forever on a pipe only it still holds open.
    parents_end.close()
    sim = Simulation(cfg, check)
    pending: list[Record] = []
    for batch in sim.records():
        pending.extend(batch)
        if len(pending) >= 2048:
            conn.send_bytes(pickle.dumps(pending, protocol=pickle.HIGHEST_PROTOCOL))
            pending = []
    if pending:
        conn.send_bytes(pickle.dumps(pending, protocol=pickle.HIGHEST_PROTOCOL))
    conn.send_bytes(b"")  # end of records, so the sender can flush while the truth is being assembled
    conn.send_bytes(pickle.dumps(sim.truth.to_dict(), protocol=pickle.HIGHEST_PROTOCOL))
    conn.close()


def generate_in_worker(cfg: SimConfig, check: bool = False) -> Generated:
    """Generate in a child process (the pipe's buffer is the back-pressure) so generation and producing use
    both cores. Start it before any Kafka client exists: fork and librdkafka's threads do not mix."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(cfg, check, child, parent), name="simulator-generator", daemon=True)
    proc.start()
    child.close()
    def receive() -> bytes:
        try:
            return parent.recv_bytes()
        except EOFError:
            raise RuntimeError(f"the generator process died (exit code {proc.exitcode})") from None

    def batches() -> Iterator[list[Record]]:
        while raw := receive():
            yield pickle.loads(raw)

    def truth() -> dict[str, Any]:
        """The truth; call after the batches are exhausted (it follows them on the pipe)."""
        try:
            return pickle.loads(receive())
        finally:
            proc.join(timeout=30)
            parent.close()

    return batches(), truth


# --- the send loop --------------------------------------------------------------------------------------------

@dataclass
class RunStats:
    sent: int = 0
    elapsed_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


def run(batches: Iterator[list[Record]], sink: Sink, rate: float | None, total: int, progress_every_s: float = 5.0,
        out: IO[str] = sys.stderr, flush_timeout_s: float = 120.0) -> RunStats:
    """Send every batch to `sink`, paced to `rate` records/s (None: as fast as possible), printing progress."""
    stats = RunStats()
    t0 = time.monotonic()
    next_report = t0 + progress_every_s
    last_sent, last_t = 0, t0
    for batch in batches:
        if rate:
            # Record i leaves at t0 + i / rate; sleeping per batch keeps the schedule without per-record cost.
            ahead = t0 + stats.sent / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        sink.send(batch)
        stats.sent += len(batch)
        now = time.monotonic()
        if now >= next_report:
            window_rate = (stats.sent - last_sent) / (now - last_t)
            _progress(out, stats.sent, total, window_rate, stats.sent / (now - t0), rate, sink)
            last_sent, last_t = stats.sent, now
            next_report = now + progress_every_s
    stats.elapsed_s = time.monotonic() - t0  # the send phase: what the rate refers to
    sink.close(flush_timeout_s)
    stats.errors = sink.errors()
    return stats


def _progress(out: IO[str], sent: int, total: int, window_rate: float, avg_rate: float, target: float | None,
              sink: Sink) -> None:
    errors = sum(sink.errors().values())
    target_text = f"target {target:,.0f}/s" if target else "unpaced"
    extra = ""
    client_errors = getattr(sink, "client_errors", None)
    if client_errors:
        extra = f"  last client error: {client_errors[-1]}"
    print(f"[simulator] sent {sent:,}/{total:,}  {window_rate:,.0f}/s now, {avg_rate:,.0f}/s avg ({target_text})  "
          f"in flight {sink.in_flight():,}  delivery errors {errors:,}{extra}", file=out, flush=True)
