"""Producer SDK (seed 004): `Telemetry(...).emit(...)` builds valid events with automatic context and sends
them to a jsonl file, a sqlite database, Kafka, or Kafka's REST proxy; `AsyncTelemetry` for asyncio code.

    from telemetry_sdk import Telemetry
    with Telemetry(system="xumi", component="inference", backend="kafka", user_id="u1", project_id="p1",
                   department_id="d1") as t:
        t.emit(metric="inference_latency", value=0.125, status="completed")
        t.emit(event="xumi.task.started", task_id="t1", attempt=1, model="m", model_version="1", input_bytes=10)
"""

from telemetry_sdk.aio import AsyncTelemetry
from telemetry_sdk.backends import BACKENDS
from telemetry_sdk.backends.jsonl import read_jsonl
from telemetry_sdk.client import Telemetry
from telemetry_sdk.errors import BackendUnavailable, DeliveryError, EventRefused, TelemetryError
from telemetry_sdk.events import Record

__all__ = [
    "AsyncTelemetry", "BACKENDS", "BackendUnavailable", "DeliveryError", "EventRefused", "Record", "Telemetry",
    "TelemetryError", "read_jsonl",
]
