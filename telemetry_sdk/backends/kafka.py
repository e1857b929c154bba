"""kafka backend: confluent-kafka's Producer on KAFKA_DIRECT_URL, idempotent, acks=all.

The record timestamp is the event's ts (the job's watermarks then run on the JVM side), the key its task id
or user id; delivery reports are collected and a failed delivery is raised by flush().
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from telemetry_sdk.errors import BackendUnavailable, DeliveryError
from telemetry_sdk.events import Record

# librdkafka logs every refused connection; the SDK reports reachability itself, so keep its log quiet
# unless the application configures this logger.
_librdkafka_log = logging.getLogger("telemetry_sdk.kafka.librdkafka")
_librdkafka_log.addHandler(logging.NullHandler())
_librdkafka_log.propagate = False

MESSAGE_TIMEOUT_MS = 30_000  # a record not acknowledged by then is reported failed (librdkafka: 300 s)
FIX = ("Start the local broker with `make stack-up` (or `python -m dev.stack up kafka`), or set "
       "KAFKA_DIRECT_URL to a reachable host:port")


class KafkaBackend:
    name = "kafka"

    def __init__(self, bootstrap: str, *, timeout_s: float = 5.0, client_id: str = "telemetry-sdk",
                 from_env: bool = True, config: dict[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self._env_var = "KAFKA_DIRECT_URL" if from_env else None
        self._producer = Producer({
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "enable.idempotence": True,  # a retried send is not duplicated
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
            "message.timeout.ms": MESSAGE_TIMEOUT_MS,
            "logger": _librdkafka_log,
            **(config or {}),
        })
        self._lock = threading.Lock()
        self._pending: dict[int, Record] = {}
        self._failures: list[tuple[Record, str]] = []
        self._timeout_s = timeout_s
        self._closed = False
        try:
            # A metadata request with a short timeout: the cheapest proof that a broker answers.
            self._topics = set(self._producer.list_topics(timeout=timeout_s).topics)
        except KafkaException as exc:
            self._producer.close()
            raise BackendUnavailable(
                "kafka", bootstrap, self._env_var,
                f"no broker answered a metadata request within {timeout_s:g} s ({exc.args[0].str()})", FIX,
            ) from None

    def _delivered(self, record: Record, err: KafkaError | None, _msg: Message) -> None:
        # Runs inside poll()/flush() on the calling thread.
        with self._lock:
            self._pending.pop(id(record), None)
            if err is not None:
                self._failures.append((record, f"{err.name()}: {err.str()}"))

    def _topic_exists(self, topic: str) -> bool:
        # Checked here rather than left to librdkafka, which would retry a missing topic for
        # message.timeout.ms and then report only UNKNOWN_TOPIC_OR_PART.
        if topic not in self._topics:
            try:
                self._topics = set(self._producer.list_topics(timeout=self._timeout_s).topics)
            except KafkaException:
                return True  # the broker is slow to answer: let the produce path report what happens
        return topic in self._topics

    def write(self, records: Sequence[Record]) -> None:
        missing: list[tuple[Record, str]] = []
        for record in records:
            if not self._topic_exists(record.topic):
                missing.append((record, f"topic {record.topic!r} does not exist on {self.bootstrap}; create the "
                                        "catalogue's topics (`python -m dev.stack up kafka` does locally)"))
                continue
            with self._lock:
                self._pending[id(record)] = record
            while True:
                try:
                    self._producer.produce(
                        record.topic, value=record.value, key=record.key.encode(), timestamp=record.ts_ms,
                        on_delivery=functools.partial(self._delivered, record),
                    )
                    break
                except BufferError:  # librdkafka's local queue is full: serve delivery reports, then retry
                    self._producer.poll(0.5)
        self._producer.poll(0)
        if missing:
            raise DeliveryError(self.name, missing)

    def flush(self) -> None:
        remaining = self._producer.flush(MESSAGE_TIMEOUT_MS / 1000 + 5)
        with self._lock:
            failures, self._failures = self._failures, []
            if remaining:  # cannot happen after message.timeout.ms, but never report success on a guess
                failures += [(r, "not acknowledged in time; still queued") for r in self._pending.values()]
        if failures:
            raise DeliveryError(self.name, failures)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._producer.flush(MESSAGE_TIMEOUT_MS / 1000 + 5)
            self._producer.close()
