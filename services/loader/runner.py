"""The loader's loop: consume the ClickHouse topics read_committed, cut batches per partition, insert each once.

Before a batch's insert its offset range is recorded in loader_progress (with the 'loaded' marks of earlier
batches), so at most one inserted batch is ever unmarked: the latest insert, which its deduplication token
covers when a restart replays it. The consumer group's committed offsets are only informational.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, replace
from types import FrameType
from typing import Callable, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from services.loader.dlq import dlq_record
from services.loader.insert import RejectedRow, RowsRejected, clickhouse_message, insert_rows
from services.loader.metrics import LoaderMetrics, serve
from services.loader.partition import PartitionBuffer, ReplayError
from services.loader.progress import Mark, ProgressStore

# A batch with more refused rows than this is a systematic mismatch (a migration not applied, a job bug):
# routing all of it to the DLQ row by row would cost an insert per row and bury the cause, so it stops instead.
MAX_REJECTED_PER_BATCH = 100
ONCE_INSERT_ATTEMPTS = 5  # --once gives up on an unreachable ClickHouse after this many tries; a service keeps trying
MAX_RETRY_DELAY_S = 10.0
T = TypeVar("T")
CONSUME_BATCH = 10_000


class LoaderError(Exception):
    """The loader cannot go on; the message says what to fix."""


@dataclass(frozen=True)
class LoaderConfig:
    bootstrap_servers: str
    clickhouse_url: str
    clickhouse_user: str
    clickhouse_password: str
    database: str
    group_id: str
    instance_id: str
    topics: dict[str, str]  # topic -> table
    dlq_topic: str
    batch_rows: int
    batch_ms: int
    metrics_port: int
    metrics_host: str
    on_reject: str  # "dlq" or "stop"
    once: bool
    progress_interval_s: float = 5.0


class Loader:
    """One loader process; `run()` returns its exit status."""

    def __init__(self, cfg: LoaderConfig, say: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.say = say or (lambda line: print(line, flush=True))
        self.metrics = LoaderMetrics()
        self.buffers: dict[tuple[str, int], PartitionBuffer] = {}
        self.pending: list[Mark] = []  # 'loaded' marks not yet written; written before the next insert
        self.stop_requested = False
        self.stopped: dict[str, str] = {}  # "topic[partition]" -> why, for partitions stopped by a rejected row
        self.client = clickhouse_connect.get_client(
            dsn=cfg.clickhouse_url, username=cfg.clickhouse_user, password=cfg.clickhouse_password, compress=False
        )
        self.progress = ProgressStore(self.client, cfg.database)
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.loaded_since = 0.0

    # --- lifecycle ------------------------------------------------------------------------------------

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        """SIGTERM / SIGINT: finish the batches in hand, record them, exit."""
        self.stop_requested = True

    def run(self) -> int:
        cfg = self.cfg
        if not self._clickhouse("startup check", lambda: self.client.command(f"EXISTS TABLE {cfg.database}.loader_progress")):
            raise LoaderError(f"{cfg.database}.loader_progress does not exist: run `python -m telemetry.migrate` first")
        _, port = serve(self.metrics, cfg.metrics_port, cfg.metrics_host)
        self.say(f"loader: metrics on http://{cfg.metrics_host}:{port}/metrics")
        self.consumer = Consumer(
            {
                "bootstrap.servers": cfg.bootstrap_servers,
                "group.id": cfg.group_id,
                # Static membership: a restart after a crash takes the partitions back at once, instead of
                # waiting out the dead member's session (45 s).
                "group.instance.id": cfg.instance_id,
                "isolation.level": "read_committed",  # only what the job's checkpoints committed
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,  # how --once knows it caught up
                "max.partition.fetch.bytes": 8 * 1024 * 1024,
                "fetch.wait.max.ms": 100,
                # While ClickHouse is away the loader waits inside an insert and polls nothing; its position is in
                # ClickHouse, so the group may keep its partitions through the wait instead of rebalancing.
                "max.poll.interval.ms": 86_400_000,
                "error_cb": self._kafka_error,
            }
        )
        self._check_topics()
        self.consumer.subscribe(list(cfg.topics), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        mode = "until caught up" if cfg.once else "until SIGTERM"
        self.say(f"loader: {len(cfg.topics)} topics -> {cfg.database} ({', '.join(f'{t} -> {tb}' for t, tb in cfg.topics.items())}), {mode}")
        started = time.monotonic()
        try:
            self._loop()
        finally:
            self._shutdown()
        self.say(self._summary(time.monotonic() - started))
        for where, why in self.stopped.items():
            self.say(f"loader: {where} is stopped: {why}")
        return 1 if self.stopped else 0

    def _loop(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        max_age = self.cfg.batch_ms / 1000
        last_report = time.monotonic()
        while not self.stop_requested:
            for msg in consumer.consume(CONSUME_BATCH, 0.05):
                err = msg.error()
                buf = self.buffers.get((msg.topic(), msg.partition()))  # type: ignore[arg-type]
                if err is not None:
                    if err.code() == KafkaError._MAX_POLL_EXCEEDED:
                        # A very long wait for ClickHouse: the group has moved the partitions on, and the next
                        # assignment resumes from loader_progress, so nothing is lost or loaded twice.
                        self.say(f"loader: kafka: {err}; rejoining the group")
                        continue
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(err)
                    if buf is not None:
                        buf.at_eof = True
                    continue
                if buf is None or buf.stopped:  # fetched before a pause or a revoke
                    continue
                buf.at_eof = False
                try:
                    complete = buf.add(msg)
                except ReplayError as exc:
                    self._stop_partition(buf, str(exc))
                    continue
                if complete:
                    self._flush(buf)
            now = time.monotonic()
            for buf in list(self.buffers.values()):
                if buf.due(now, max_age):
                    self._flush(buf)
            if now - last_report >= self.cfg.progress_interval_s and self.buffers:
                self._update_lag()
                self.say(self.metrics.progress_line(now - last_report))
                last_report = now
            if self.cfg.once and self._caught_up():
                return

    def _caught_up(self) -> bool:
        bufs = self.buffers.values()
        return bool(bufs) and all(b.stopped or (b.at_eof and not b.msgs and b.replay is None) for b in bufs)

    def _shutdown(self) -> None:
        """Insert what is buffered (a replay can only go in whole), write the marks, leave the group."""
        for buf in list(self.buffers.values()):
            if buf.msgs and buf.replay is None and not buf.stopped:
                self._flush(buf)
        self._write_marks([])
        self._update_lag()
        if self.consumer is not None:
            self.consumer.close()
        if self.producer is not None:
            self.producer.flush(30)

    # --- partitions -----------------------------------------------------------------------------------

    def _check_topics(self) -> None:
        assert self.consumer is not None
        known = self.consumer.list_topics(timeout=10).topics
        missing = [t for t in self.cfg.topics if t not in known]
        if missing:
            raise LoaderError(f"Kafka at {self.cfg.bootstrap_servers} has no topic {', '.join(missing)} "
                              "(`python -m telemetry.topic_admin` creates the catalogue's topics)")

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Start each partition where ClickHouse says: after its last loaded batch, or at an interrupted one."""
        topics = sorted({tp.topic for tp in partitions})
        marks = self._clickhouse("progress read", lambda: self.progress.positions(topics))
        counts = {"resume": 0, "replay": 0, "start": 0}
        for tp in partitions:
            mark = marks.get((tp.topic, tp.partition))
            replay = mark if mark is not None and mark.state == "intent" else None
            if mark is None:
                tp.offset, kind = OFFSET_BEGINNING, "start"
            elif replay is not None:
                tp.offset, kind = mark.first_offset, "replay"
                self.say(f"loader: replaying the interrupted batch {tp.topic}[{tp.partition}] {mark.first_offset}..{mark.last_offset}")
            else:
                tp.offset, kind = mark.last_offset + 1, "resume"
            counts[kind] += 1
            buf = PartitionBuffer(tp.topic, tp.partition, self.cfg.topics[tp.topic], self.cfg.batch_rows, replay)
            buf.next_offset = tp.offset
            self.buffers[(tp.topic, tp.partition)] = buf
        consumer.assign(partitions)
        self.say(f"loader: assigned {len(partitions)} partitions: {counts['resume']} resume after their last batch, "
                 f"{counts['replay']} replay an interrupted batch, {counts['start']} start at the beginning")

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Finish the revoked partitions' batches, so their next owner starts where this one stopped."""
        for tp in partitions:
            buf = self.buffers.get((tp.topic, tp.partition))
            if buf is not None and buf.msgs and buf.replay is None and not buf.stopped:
                self._flush(buf)
        self._write_marks([])
        self._on_lost(consumer, partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.buffers.pop((tp.topic, tp.partition), None)

    def _stop_partition(self, buf: PartitionBuffer, why: str) -> None:
        """Stop loading one partition (its intent stays, so a restart after the fix retries the batch)."""
        assert self.consumer is not None
        buf.stopped = why
        buf.take()
        self.stopped[f"{buf.topic}[{buf.partition}]"] = why
        self.consumer.pause([TopicPartition(buf.topic, buf.partition)])
        with self.metrics.lock:
            self.metrics.stopped.set(value=len(self.stopped))
        self.say(f"loader: ERROR: stopped {buf.topic}[{buf.partition}] -> {buf.table}: {why}")

    # --- one batch ------------------------------------------------------------------------------------

    def _flush(self, buf: PartitionBuffer) -> None:
        msgs = buf.take()
        mark = Mark(buf.topic, buf.partition, msgs[0].offset(), msgs[-1].offset(), len(msgs), 0, "intent")
        replayed = buf.replay is not None
        # The intent goes in before the rows; a replayed batch's intent is already there.
        self._write_marks([] if replayed else [mark])
        dlq_table = buf.topic == self.cfg.dlq_topic  # its rejects have nowhere to go but an operator
        max_rejected = 0 if self.cfg.on_reject == "stop" or dlq_table else MAX_REJECTED_PER_BATCH
        rows = [m.value() for m in msgs]
        try:
            rejected = self._insert(buf.table, rows, mark.token, max_rejected)
        except RowsRejected as exc:
            first = exc.rejected[0]
            self._stop_partition(
                buf,
                f"ClickHouse rejected {len(exc.rejected)}{'+' if max_rejected else ''} rows of the batch "
                f"{mark.first_offset}..{mark.last_offset} (first at offset {msgs[first.index].offset()}: {first.error}); "
                f"nothing of the batch was inserted. Fix the rows' producer or the table, then restart the loader: "
                f"it reads the batch again from loader_progress",
            )
            return
        if rejected:
            self._send_to_dlq(buf, msgs, rejected, mark)
        buf.replay = None
        buf.next_offset = mark.last_offset + 1
        self.pending.append(replace(mark, rejected=len(rejected), state="loaded"))
        with self.metrics.lock:
            self.metrics.rows.inc(buf.table, amount=len(msgs) - len(rejected))
            self.metrics.batches.inc(buf.table)
            if replayed:
                self.metrics.replayed.inc(buf.table)
        if not self.loaded_since:
            self.loaded_since = time.monotonic()
        assert self.consumer is not None
        # Informational only (ClickHouse holds the position), so asynchronous and unchecked.
        self.consumer.commit(offsets=[TopicPartition(buf.topic, buf.partition, mark.last_offset + 1)], asynchronous=True)

    def _insert(self, table: str, rows: list[bytes | None], token: str, max_rejected: int) -> list[RejectedRow]:
        """insert_rows, retried with back-off while ClickHouse fails for reasons that are no row's fault."""
        target = f"{self.cfg.database}.{table}"

        def attempt() -> list[RejectedRow]:
            began = time.monotonic()
            try:
                rejected = insert_rows(self.client, target, rows, token, max_rejected)
            except RowsRejected as exc:
                with self.metrics.lock:
                    self.metrics.errors.inc(table, amount=len(exc.rejected))
                    self.metrics.rejected.inc(table, amount=len(exc.rejected))
                raise
            except ClickHouseError:
                with self.metrics.lock:
                    self.metrics.errors.inc(table)
                raise
            with self.metrics.lock:
                self.metrics.latency.observe(table, value=time.monotonic() - began)
                if rejected:
                    self.metrics.errors.inc(table, amount=len(rejected))
                    self.metrics.rejected.inc(table, amount=len(rejected))
            return rejected

        return self._clickhouse("insert", attempt, f"insert into {target}")

    def _clickhouse(self, operation: str, call: Callable[[], T], what: str = "") -> T:
        """Run one ClickHouse call, retried with back-off while ClickHouse is away (down, restarting, out of
        reach): the loader waits, shows it on /metrics, and goes on where it stood. --once gives up after
        ONCE_INSERT_ATTEMPTS tries, and a stop request ends the wait."""
        attempt = 0
        while True:
            try:
                result = call()
            except ClickHouseError as exc:
                attempt += 1
                with self.metrics.lock:
                    self.metrics.clickhouse_errors.inc(operation)
                    self.metrics.clickhouse_unavailable.set(value=1)
                what = what or operation
                if self.stop_requested or (self.cfg.once and attempt >= ONCE_INSERT_ATTEMPTS):
                    raise LoaderError(f"{what} failed {attempt} times, last: {clickhouse_message(exc)}") from exc
                delay = min(MAX_RETRY_DELAY_S, 0.25 * 2**attempt)
                self.say(f"loader: {what} failed ({clickhouse_message(exc)}); retry {attempt} in {delay:.1f} s")
                self._sleep(delay)
                continue
            if attempt:
                self.say(f"loader: {what or operation} succeeded after {attempt} failed tries; going on")
                with self.metrics.lock:
                    self.metrics.clickhouse_unavailable.set(value=0)
            return result

    def _write_marks(self, marks: list[Mark]) -> None:
        """Store the pending 'loaded' marks and `marks` in loader_progress (waiting for ClickHouse if need be)."""
        batch = self.pending + marks
        self._clickhouse("progress write", lambda: self.progress.write(batch))
        self.pending = []

    def _send_to_dlq(self, buf: PartitionBuffer, msgs: list[Message], rejected: list[RejectedRow], mark: Mark) -> None:
        """Produce the refused rows to the DLQ and wait for the broker's ack, before the batch counts as loaded."""
        if self.producer is None:
            self.producer = Producer({"bootstrap.servers": self.cfg.bootstrap_servers, "enable.idempotence": True, "linger.ms": 5})
        failures: list[str] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(str(err))

        now_ms = int(time.time() * 1000)
        for row in rejected:
            self.producer.produce(self.cfg.dlq_topic, value=dlq_record(msgs[row.index], row.error, now_ms), on_delivery=delivered)
        if self.producer.flush(30) or failures:
            raise LoaderError(f"the DLQ topic {self.cfg.dlq_topic} did not take the rejected rows: {failures or 'timeout'}")
        for other in self.buffers.values():  # --once must also load the records just sent, if it loads the DLQ
            if other.topic == self.cfg.dlq_topic:
                other.at_eof = False
        offsets = ", ".join(str(msgs[r.index].offset()) for r in rejected[:5])
        self.say(f"loader: {len(rejected)} rows of {buf.topic}[{buf.partition}] {mark.first_offset}..{mark.last_offset} "
                 f"rejected by {buf.table} (offsets {offsets}{', ...' if len(rejected) > 5 else ''}), sent to "
                 f"{self.cfg.dlq_topic} with reason clickhouse_rejected; first error: {rejected[0].error}")

    # --- reporting ------------------------------------------------------------------------------------

    def _update_lag(self) -> None:
        if self.consumer is None:
            return
        lags = {}
        for buf in self.buffers.values():
            tp = TopicPartition(buf.topic, buf.partition)
            try:
                low, high = self.consumer.get_watermark_offsets(tp, timeout=2)
                fetched = self.consumer.position([tp])[0].offset
            except KafkaException:
                continue
            # Unread records plus read, unloaded ones: the consumer's position is past transaction markers it
            # read, so a caught-up partition shows 0 (the last loaded offset would leave the commit marker).
            if fetched < 0:
                fetched = buf.next_offset if buf.next_offset >= 0 else low
                lags[(buf.topic, str(buf.partition))] = max(0, high - fetched)
            else:
                lags[(buf.topic, str(buf.partition))] = max(0, high - fetched) + len(buf.msgs)
        with self.metrics.lock:
            self.metrics.lag.values = lags
            self.metrics.buffered.set(value=sum(len(b.msgs) for b in self.buffers.values()))

    def _summary(self, seconds: float) -> str:
        with self.metrics.lock:
            rows = dict(self.metrics.rows.values)
            rejected = sum(self.metrics.rejected.values.values())
            replayed = sum(self.metrics.replayed.values.values())
        busy = time.monotonic() - self.loaded_since if self.loaded_since else 0.0
        total = sum(rows.values())
        per_table = ", ".join(f"{t} {n:,.0f}" for (t,), n in sorted(rows.items())) or "nothing"
        rate = f", {total / busy:,.0f} rows/s since the first insert" if busy > 0 else ""
        return (f"loader: done in {seconds:.1f} s: {total:,.0f} rows inserted ({per_table}){rate}; "
                f"{rejected:,.0f} rejected, {replayed:,.0f} interrupted batches replayed")

    def _kafka_error(self, err: KafkaError) -> None:
        if err.fatal():
            raise KafkaException(err)
        print(f"loader: kafka: {err}", file=sys.stderr, flush=True)

    def _sleep(self, seconds: float) -> None:
        """Wait between retries, but not past a stop request."""
        deadline = time.monotonic() + seconds
        while not self.stop_requested and time.monotonic() < deadline:
            time.sleep(0.05)


def install_signal_handlers(loader: Loader) -> None:
    signal.signal(signal.SIGTERM, loader.request_stop)
    signal.signal(signal.SIGINT, loader.request_stop)
