"""The Kafka side: read telemetry.usage.v1 from its beginning into the ledger (all partitions, no consumer group:
every replica holds the whole state), tell when the rebuild is done and how current the ledger is, and publish the
exceeded events on the catalogue's quota topic. A record that cannot be read is skipped and counted, never fatal."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import date
from typing import Any, Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from services.quota.ledger import Key
from services.quota.metrics import BadUsage, Raw, raw
from services.quota.service import Quota

LOG = logging.getLogger("services.quota")
DAY_LENGTH = len("2026-01-01")


class BadRecord(ValueError):
    pass


def parse(key: bytes | None, value: bytes | None) -> tuple[Key, Raw | None]:
    """A usage-topic record: its (tenant, department, user, day) key and its columns (None: a tombstone)."""
    try:
        k = json.loads(key) if key is not None else None
    except (ValueError, UnicodeDecodeError):
        raise BadRecord("the key is not JSON") from None
    if not isinstance(k, dict):
        raise BadRecord("the key is not a JSON object")
    parts = [k.get(name) for name in ("tenant_id", "department_id", "user_id", "day")]
    if not all(isinstance(p, str) for p in parts) or not parts[0] or not parts[2]:
        raise BadRecord("the key needs tenant_id, department_id, user_id and day as text")
    day = parts[3]
    try:
        if len(day) != DAY_LENGTH or date.fromisoformat(day).isoformat() != day:
            raise ValueError
    except ValueError:
        raise BadRecord(f"day {day[:20]!r} is not a date, YYYY-MM-DD") from None
    if value is None:
        return (parts[0], parts[1], parts[2], day), None
    try:
        v = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        raise BadRecord("the value is not JSON") from None
    if not isinstance(v, dict):
        raise BadRecord("the value is not a JSON object")
    try:
        return (parts[0], parts[1], parts[2], day), raw(v)
    except BadUsage as exc:
        raise BadRecord(str(exc)) from None


class UsageFeed:
    """The consumer thread. on_record(result) is told of every record: applied, rejected or dropped; on_event(event)
    of every crossing, before its event is produced (so whoever sees the event sees it counted), and
    on_undelivered(event) of an event Kafka did not take."""

    def __init__(self, quota: Quota, bootstrap: str, topic: str, exceeded_topic: str,
                 on_record: Callable[[str], None] = lambda _: None,
                 on_event: Callable[[dict[str, Any]], None] = lambda _: None,
                 on_undelivered: Callable[[dict[str, Any]], None] = lambda _: None, sync_every_s: float = 1.0) -> None:
        self.quota, self.topic, self.exceeded_topic = quota, topic, exceeded_topic
        self.on_record, self.on_event, self.on_undelivered = on_record, on_event, on_undelivered
        self.sync_every_s = sync_every_s
        common = {"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000}
        self.consumer = Consumer({**common, "group.id": f"telemetry-quota-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False, "isolation.level": "read_committed",
                                  "auto.offset.reset": "earliest", "fetch.wait.max.ms": 50})
        self.producer = Producer({**common, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="usage-feed", daemon=True)
        self.partitions: list[TopicPartition] = []
        self.start_ends: dict[int, int] = {}

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)
        self.consumer.close()
        self.producer.flush(5)

    def _assign(self) -> None:
        while not self.stopping.is_set():
            try:
                meta = self.consumer.list_topics(self.topic, timeout=5)
                info = meta.topics.get(self.topic)
                if info is None or info.error is not None or not info.partitions:
                    raise KafkaException(f"topic {self.topic} not found")
                self.partitions = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(info.partitions)]
                self.start_ends = {tp.partition: self.consumer.get_watermark_offsets(tp, timeout=5)[1]
                                   for tp in self.partitions}
                self.consumer.assign(self.partitions)
                return
            except KafkaException as exc:
                self.quota.feed.error = f"Kafka: {exc}"
                LOG.warning("quota: cannot read %s yet: %s", self.topic, exc)
                self.stopping.wait(1.0)

    def _sync(self) -> None:
        """The partitions' ends first, then the positions: every position at or past its end means the ledger held
        everything the topic had when the ends were asked for (records arriving meanwhile cannot make it look behind)."""
        asked = time.monotonic()
        try:
            ends = {tp.partition: self.consumer.get_watermark_offsets(tp, timeout=2, cached=False)[1]
                    for tp in self.partitions}
            positions = {tp.partition: tp.offset for tp in self.consumer.position(self.partitions)}
        except KafkaException as exc:
            self.quota.feed.error = f"Kafka: {exc}"
            return
        # a position is negative before the first fetch of a partition: the partition's start then
        done = all(max(positions.get(p, 0), 0) >= end or end == 0 for p, end in ends.items())
        if not self.quota.feed.rebuilt and all(max(positions.get(p, 0), 0) >= end for p, end in self.start_ends.items()):
            self.quota.feed.rebuilt = True
            LOG.warning("quota: rebuilt from %s: %d records", self.topic, self.quota.feed.records)
        if done:
            self.quota.feed.synced_at = asked
            self.quota.feed.error = ""

    def _run(self) -> None:
        self._assign()
        next_sync = 0.0
        while not self.stopping.is_set():
            try:
                messages = self.consumer.consume(500, timeout=0.1)
            except KafkaException as exc:
                self.quota.feed.error = f"Kafka: {exc}"
                self.stopping.wait(0.5)
                continue
            horizon = self.quota.horizon()
            if horizon != self.quota.ledger.horizon:
                self.quota.ledger.drop_before(horizon)
            for message in messages:
                if message.error():
                    self.quota.feed.error = f"Kafka: {message.error()}"
                    continue
                self.quota.feed.records += 1
                try:
                    key, columns = parse(message.key(), message.value())
                except BadRecord as exc:
                    LOG.warning("quota: skipped %s[%d]@%d: %s", self.topic, message.partition(), message.offset(), exc)
                    self.on_record("rejected")
                    continue
                if key[3] < self.quota.ledger.horizon:
                    self.on_record("dropped")
                    continue
                for event in self.quota.apply(key, columns, live=self.quota.feed.rebuilt):
                    self._publish(event)
                self.on_record("applied")
            if time.monotonic() >= next_sync:
                self._sync()
                next_sync = time.monotonic() + self.sync_every_s
            self.producer.poll(0)

    def _publish(self, event: dict[str, Any]) -> None:
        key = "/".join((event["tenant_id"], event["scope"], event["scope_id"], event["metric"], event["period"],
                        event["period_start"], event["level"]))

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                self.on_undelivered(event)
                LOG.error("quota: exceeded event not delivered: %s", err)

        self.on_event(event)
        try:
            self.producer.produce(self.exceeded_topic, json.dumps(event).encode(), key.encode(), on_delivery=delivered)
        except (KafkaException, BufferError) as exc:
            LOG.error("quota: exceeded event not produced: %s", exc)
            self.on_undelivered(event)
