"""The job's one Python hop for every record: telemetry.routing in a ProcessFunction.

Valid events leave as typed wide rows (main output); rejected records as DLQ rows and events past the allowed
lateness as late rows (side outputs), so nothing consumed is dropped without a trace.
"""

from __future__ import annotations

import json
import time

from pyflink.common import Row, Types
from pyflink.datastream import OutputTag, ProcessFunction

from telemetry import routing

_KIND_TYPES = {"str": Types.STRING(), "str?": Types.STRING(), "int": Types.LONG(), "int?": Types.INT(),
               "float": Types.DOUBLE()}
WIDE_ROW_TYPE = Types.ROW_NAMED(list(routing.ROW_NAMES), [_KIND_TYPES[k] for _, k in routing.ROW_FIELDS])
# DLQ and late rows: the source topic and the JSON record the loader inserts (dlq_events / late_events columns).
SIDE_ROW_TYPE = Types.ROW_NAMED(["topic", "record"], [Types.STRING(), Types.STRING()])
DLQ_TAG = OutputTag("dlq", SIDE_ROW_TYPE)
LATE_TAG = OutputTag("late", SIDE_ROW_TYPE)


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

    def process_element(self, value, ctx):
        topic, partition, offset, payload = value[0], value[1], value[2], value[3]
        self.consumed.inc()
        result = routing.route(topic, payload)
        if isinstance(result, routing.Rejected):
            self.dlq.inc()
            counter = self.by_reason.get(result.reason)
            if counter is None:
                counter = self.by_reason[result.reason] = self.reasons.counter(result.reason)
            counter.inc()
            record = routing.dlq_record(topic, partition, offset, ctx.timestamp() or 0, payload, result,
                                        self.job_version, int(time.time() * 1000))
            yield DLQ_TAG, Row(topic, json.dumps(record, separators=(",", ":")))
            return
        watermark = ctx.timer_service().current_watermark()
        # Past the lateness bound the window is closed for billing: keep the event (late table) but not in usage,
        # so a closed window never moves.
        if routing.is_late(result[3], watermark, self.allowed_lateness_ms):
            self.late.inc()
            yield LATE_TAG, Row(topic, json.dumps(routing.late_record(topic, result, watermark), separators=(",", ":")))
            return
        self.valid.inc()
        if routing.misses_its_slice(ctx.timestamp(), watermark, self.slice_ms):
            self.corrections.inc()
            result = (*result[:-1], 1)
        yield Row(*result)
