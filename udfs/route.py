"""The job's one Python hop for every record: telemetry.routing in a ProcessFunction.

Valid events leave as typed wide rows (main output) with their lane (on time, correction, late); rejected records
as DLQ rows, and task lifecycle events once more for the lifecycle join, late ones flagged (side outputs), so
nothing consumed is dropped without a trace.
"""

from __future__ import annotations

import json
import time

from pyflink.common import Row, Types
from pyflink.datastream import OutputTag, ProcessFunction

from telemetry import routing

_KIND_TYPES = {"str": Types.STRING(), "str?": Types.STRING(), "int": Types.LONG(), "int?": Types.INT(),
               "float": Types.DOUBLE(), "micros": Types.LONG()}
WIDE_ROW_TYPE = Types.ROW_NAMED(list(routing.ROW_NAMES), [_KIND_TYPES[k] for _, k in routing.ROW_FIELDS])
# DLQ rows: the source topic, the 10 s window of the Kafka record timestamp (ingest counters) and the JSON record
# the loader inserts into dlq_events.
DLQ_ROW_TYPE = Types.ROW_NAMED(["topic", "window_start_ms", "record"], [Types.STRING(), Types.LONG(), Types.STRING()])
DLQ_TAG = OutputTag("dlq", DLQ_ROW_TYPE)
# Task lifecycle events for the lifecycle join, straight from here: taking them from the SQL side would make the
# planner compute the deduplication a second time for that branch (the join drops duplicates itself). late: the
# event's window is closed for billing (its LATE lane); the join still completes attempts counted in no usage.
TASK_ROW_TYPE = Types.ROW_NAMED(["task_id", "event_json", "late"], [Types.STRING(), Types.STRING(), Types.BOOLEAN()])
TASK_TAG = OutputTag("tasks", TASK_ROW_TYPE)
_TASK_ID = routing.ROW_NAMES.index("task_id")
_JSON = routing.ROW_NAMES.index("event_json")


class Route(ProcessFunction):
    """Input rows: (topic, partition, offset, payload) with the Kafka record timestamp as the element timestamp."""

    def __init__(self, job_version: str, allowed_lateness_ms: int, slice_ms: int) -> None:
        self.job_version = job_version
        self.allowed_lateness_ms = allowed_lateness_ms
        self.slice_ms = slice_ms

    def open(self, runtime_context) -> None:
        metrics = runtime_context.get_metrics_group()
        self.consumed = metrics.counter("events_in")
        self.valid = metrics.counter("events_valid")
        self.dlq = metrics.counter("events_dlq")
        self.late = metrics.counter("events_late")
        self.corrections = metrics.counter("events_corrections")
        self.reasons = metrics.add_group("dlq_reason")
        self.by_reason: dict[str, object] = {}
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
        result = routing.route(topic, payload)
        if isinstance(result, routing.Rejected):
            self.dlq.inc()
            counter = self.by_reason.get(result.reason)
            if counter is None:
                counter = self.by_reason[result.reason] = self.reasons.counter(result.reason)
            counter.inc()
            record = routing.dlq_record(topic, partition, offset, record_ts, payload, result, self.job_version,
                                        int(time.time() * 1000))
            yield DLQ_TAG, Row(topic, routing.window_start(record_ts), json.dumps(record, separators=(",", ":")))
            return
        self.pending_valid += 1
        lane = routing.lane(result[3], record_ts, watermark, self.allowed_lateness_ms, self.slice_ms)
        if lane == routing.LATE:
            self.late.inc()
        elif lane == routing.CORRECTION:
            self.corrections.inc()
        if result[_TASK_ID] is not None and topic in routing.TASK_TOPICS:
            yield TASK_TAG, Row(result[_TASK_ID], result[_JSON], lane == routing.LATE)
        yield Row(*result) if lane == routing.ON_TIME else Row(*result[:-1], lane)
