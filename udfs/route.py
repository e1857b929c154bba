"""The job's one Python hop for every record: pipeline.routing in a ProcessFunction.

Valid events leave as typed wide rows (main output) with their lane (on time, correction, late); rejected records
as DLQ rows, and task lifecycle events once more for the lifecycle join, late ones flagged (side outputs), so
nothing consumed is dropped without a trace.
"""

from __future__ import annotations

import json
import time

from pyflink.common import Row, Types
from pyflink.datastream import OutputTag, ProcessFunction

from pipeline import routing

_KIND_TYPES = {"str": Types.STRING(), "str?": Types.STRING(), "int": Types.LONG(), "int?": Types.INT(),
               "float": Types.DOUBLE(), "micros": Types.LONG()}
WIDE_ROW_TYPE = Types.ROW_NAMED(list(routing.ROW_NAMES), [_KIND_TYPES[k] for _, k in routing.ROW_FIELDS])
# DLQ rows: the source topic, the 10 s ingest window it is counted in and the JSON record the loader inserts into
# dlq_events.
DLQ_ROW_TYPE = Types.ROW_NAMED(["topic", "window_start_ms", "record"], [Types.STRING(), Types.LONG(), Types.STRING()])
DLQ_TAG = OutputTag("dlq", DLQ_ROW_TYPE)
# Task lifecycle events for the lifecycle join, straight from here: taking them from the SQL side would make the
# planner compute the deduplication a second time for that branch (the join drops duplicates itself). late: the
# event's window is closed for billing (its LATE lane); the join still completes attempts counted in no usage. The
# source position goes along, so an event the join fails on reaches the DLQ as the record it came in.
TASK_ROW_TYPE = Types.ROW_NAMED(["task_id", "event_json", "late", "topic", "partition", "offset", "kafka_ts_ms"],
                                [Types.STRING(), Types.STRING(), Types.BOOLEAN(), Types.STRING(), Types.INT(),
                                 Types.LONG(), Types.LONG()])
TASK_TAG = OutputTag("tasks", TASK_ROW_TYPE)


def task_key(row: Row) -> str:
    """The lifecycle join's key of a TASK_ROW_TYPE row."""
    return row[0]
# Positions in the wide row, looked up once: a name lookup per record would cost more than the read.
_TS = routing.ROW_NAMES.index("ts_ms")
_TASK_ID = routing.ROW_NAMES.index("task_id")
_JSON = routing.ROW_NAMES.index("event_json")


class Route(ProcessFunction):
    """Input rows: (topic, partition, offset, payload) with the Kafka record timestamp as the element timestamp.

    Nothing a record holds can fail the job: whatever its handling raises sends that record to the DLQ with
    reason internal_error (counted, and alerted on), and the job goes on with the next one."""

    def __init__(self, job_version: str, allowed_lateness_ms: int, slice_ms: int, max_clock_skew_ms: int) -> None:
        self.job_version = job_version
        self.allowed_lateness_ms = allowed_lateness_ms
        self.slice_ms = slice_ms
        self.max_clock_skew_ms = max_clock_skew_ms

    def open(self, runtime_context) -> None:
        metrics = runtime_context.get_metrics_group()
        self.consumed = metrics.counter("events_in")
        self.valid = metrics.counter("events_valid")
        self.dlq = metrics.counter("events_dlq")
        self.late = metrics.counter("events_late")
        self.corrections = metrics.counter("events_corrections")
        self.reasons = metrics.add_group("dlq_reason")
        # other reasons appear at their first record; this one is alerted on, so it exists from the start (at 0)
        self.by_reason: dict[str, object] = {"internal_error": self.reasons.counter("internal_error")}
        # events_in and events_valid are added up here and handed to Flink whenever the watermark has moved
        # (every ~200 ms while records flow): each counter call crosses into the JVM, and two per record cost
        # as much as the record's validation.
        self.pending_in = self.pending_valid = 0
        self.flushed_at = None

    def process_element(self, value, ctx):
        topic, partition, offset, payload = value[0], value[1], value[2], value[3]
        watermark = ctx.timer_service().current_watermark()
        if watermark != self.flushed_at:
            self.consumed.inc(self.pending_in)
            self.valid.inc(self.pending_valid)
            self.pending_in = self.pending_valid = 0
            self.flushed_at = watermark
        self.pending_in += 1
        record_ts = ctx.timestamp() or 0
        now_ms = int(time.time() * 1000)
        try:
            result = routing.route(topic, payload)
            if not isinstance(result, routing.Rejected):
                result = routing.future_timestamp(result[_TS], record_ts, now_ms, self.max_clock_skew_ms) or result
            if not isinstance(result, routing.Rejected):
                lane = routing.lane(result[_TS], record_ts, watermark, self.allowed_lateness_ms, self.slice_ms)
                row = Row(*result) if lane == routing.ON_TIME else Row(*result[:-1], lane)
                task = (Row(result[_TASK_ID], result[_JSON], lane == routing.LATE, topic, partition, offset, record_ts)
                        if result[_TASK_ID] is not None and topic in routing.TASK_TOPICS else None)
        except Exception as exc:  # noqa: BLE001 - any failure of one record's handling is that record's DLQ reason
            result = routing.internal_error(exc)
        if isinstance(result, routing.Rejected):
            yield DLQ_TAG, self._reject(topic, partition, offset, record_ts, payload, result, now_ms)
            return
        self.pending_valid += 1
        if lane == routing.LATE:
            self.late.inc()
        elif lane == routing.CORRECTION:
            self.corrections.inc()
        if task is not None:
            yield TASK_TAG, task
        yield row

    def _reject(self, topic: str, partition: int, offset: int, record_ts: int, payload: bytes | None,
                rejected: routing.Rejected, now_ms: int) -> Row:
        """The DLQ row of a rejected record, counted per reason. It is counted in the ingest window of its Kafka
        timestamp, or of the job's clock when that lies ahead: a record refused for its future time is seen now."""
        self.dlq.inc()
        counter = self.by_reason.get(rejected.reason)
        if counter is None:
            counter = self.by_reason[rejected.reason] = self.reasons.counter(rejected.reason)
        counter.inc()
        record = routing.dlq_record(topic, partition, offset, record_ts, payload, rejected, self.job_version, now_ms)
        return Row(topic, routing.window_start(min(record_ts, now_ms)), json.dumps(record, separators=(",", ":")))
