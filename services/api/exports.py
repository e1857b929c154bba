"""Exports: usage, costs, task facts and DLQ records of a time range as CSV or Parquet, streamed.

ClickHouse sends each UTC day of the range (each month, for daily rows) as Arrow record batches, one query each,
so neither ClickHouse nor the API ever holds more than that; they are shown as the caller may see them (pseudonyms, DLQ payloads withheld
from roles without identity) with Arrow's vectorised kernels, and encoded batch by batch, so a year of aggregates
streams in the memory of a day's batches.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from services.api.permissions import Metric
from services.api.privacy import Privacy

DAY = timedelta(days=1)


class Format(str, Enum):
    CSV = "csv"
    PARQUET = "parquet"


MEDIA_TYPES = {Format.CSV: "text/csv; charset=utf-8", Format.PARQUET: "application/vnd.apache.parquet"}

_USAGE_SUMS = """sum(requests) AS requests, sum(errors) AS errors, sum(tokens_in) AS tokens_in,
    sum(tokens_out) AS tokens_out, sum(tasks) AS tasks, sum(task_failures) AS task_failures, sum(loads) AS loads,
    sum(load_bytes) AS load_bytes, sum(transfers) AS transfers, sum(transfer_bytes) AS transfer_bytes,
    sum(wkf_gpu_seconds) AS wkf_gpu_seconds, sum(kuber_gpu_seconds) AS kuber_gpu_seconds,
    sum(wkf_cpu_seconds) AS wkf_cpu_seconds, sum(kuber_cpu_seconds) AS kuber_cpu_seconds,
    sum(wkf_credits) AS wkf_credits, sum(kuber_credits) AS kuber_credits, sum(credits) AS credits"""
_COST_SUMS = """sum(requests) AS requests, sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out,
    sum(gpu_seconds) AS gpu_seconds, sum(cpu_seconds) AS cpu_seconds, sum(load_transfer_bytes) AS load_transfer_bytes,
    sum(token_cost) AS token_cost, sum(gpu_cost) AS gpu_cost, sum(cpu_cost) AS cpu_cost, sum(load_cost) AS load_cost,
    sum(total_cost) AS total_cost, arrayStringConcat(arraySort(groupUniqArrayArray(unpriced)), ' ') AS unpriced,
    max(catalogue_version) AS catalogue_version"""
_KEYS = "tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id"


@dataclass(frozen=True)
class Dataset:
    """What one export reads: the table per granularity, the SQL of a day's rows (WHERE and the range's
    parameters are filled in by the caller), and which columns name people."""

    name: str
    metric: Metric
    tables: dict[str, tuple[str, int]]  # granularity -> (table, its windows' seconds); "" -> (table, 0): no windows
    select: str  # with {table}, {where} and {db}
    time_column: str
    users: tuple[str, ...] = ("user_id",)
    hosts: tuple[str, ...] = ()
    tenant_column: str | None = "tenant_id"  # None: rows of no tenant (rejected records), the same for every caller


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("usage", Metric.USAGE, {"minute": ("usage_1m", 60), "hour": ("usage_1h", 3600),
                                        "day": ("usage_1d", 86400)},
            f"SELECT window_start, {_KEYS}, {_USAGE_SUMS} FROM {{db}}.{{table}} {{where}} "
            f"GROUP BY window_start, {_KEYS} ORDER BY window_start, {_KEYS}", "window_start"),
    Dataset("costs", Metric.COSTS, {"hour": ("costs_1h", 3600), "day": ("costs_1d", 86400)},
            f"SELECT window_start, {_KEYS}, {_COST_SUMS} FROM {{db}}.{{table}} {{where}} "
            f"GROUP BY window_start, {_KEYS} ORDER BY window_start, {_KEYS}", "window_start"),
    Dataset("tasks", Metric.TASKS, {"": ("task_facts", 0)},
            "SELECT task_id, attempt, status, tenant_id, department_id, project_id, user_id, base_model, model_version, "
            "checkpoint_id, checkpoint_version, node_id, host_name, vm_type, queued_at, started_at, finished_at, "
            "queue_ms, checkpoint_load_ms, init_ms, inference_ms, total_ms, input_bytes, output_bytes, error_type, "
            "error_message, enrichment_status, gpu_util_avg, gpu_util_max, cpu_util_avg, cpu_util_max, cpu_seconds, "
            "gpu_seconds, late FROM {db}.{table} FINAL {where} ORDER BY finished_at, task_id, attempt",
            "finished_at", hosts=("host_name",)),
    # A rejected record may belong to any tenant (it could not be read): its content and the message quoting it stay
    # in ClickHouse; the export names where each one is (topic, partition, offset), why, and its size and hash.
    Dataset("dlq", Metric.PIPELINE, {"": ("dlq_events", 0)},
            "SELECT ts, rejected_at, reason, topic, kafka_partition, kafka_offset, payload_encoding, payload_bytes, "
            "payload_sha256, payload_truncated FROM {db}.{table} FINAL {where} "
            "ORDER BY ts, topic, kafka_partition, kafka_offset", "ts", users=(), tenant_column=None),
)}


def chunks(start: datetime, end: datetime, months: bool = False) -> Iterator[tuple[datetime, datetime]]:
    """[start, end) cut at UTC midnights (or at the first of each month): one query each. No window of a day or less
    crosses a cut, so each window is read once."""
    cut = start
    while cut < end:
        midnight = datetime.combine(cut.date(), datetime.min.time(), cut.tzinfo)
        if months:
            following = (midnight.replace(day=1) + timedelta(days=32)).replace(day=1)
        else:
            following = midnight + DAY
        upper = min(following, end)
        yield cut, upper
        cut = upper


def shown(batch: pa.RecordBatch, dataset: Dataset, privacy: Privacy) -> pa.RecordBatch:
    """The batch as the caller may see it: user ids (per tenant) and personal host names as pseudonyms where the
    role lacks identity or the person was erased. Each distinct value is mapped once (a day holds a few thousand
    people, and millions of rows)."""
    columns = {name: batch.column(name) for name in batch.schema.names}
    for name in dataset.users:
        if name in columns:
            keys = pc.binary_join_element_wise(columns["tenant_id"], columns[name], "\x1f")
            distinct = pc.unique(keys)
            mapped = pa.array([privacy.user(*k.split("\x1f", 1)) for k in distinct.to_pylist()], pa.string())
            columns[name] = pc.take(mapped, pc.index_in(keys, value_set=distinct))
    for name in dataset.hosts:
        if name in columns:
            distinct = pc.unique(columns[name])
            mapped = pa.array([privacy.host(h) for h in distinct.to_pylist()], pa.string())
            columns[name] = pc.take(mapped, pc.index_in(columns[name], value_set=distinct))
    return pa.RecordBatch.from_arrays(list(columns.values()), names=list(columns))


def _csv_ready(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Times as ISO 8601 UTC text (Arrow's CSV writer would put a space before the time and drop the zone)."""
    arrays = []
    for field, array in zip(batch.schema, batch.columns):
        if pa.types.is_timestamp(field.type):
            fmt = "%Y-%m-%dT%H:%M:%SZ" if field.type.unit == "s" else "%Y-%m-%dT%H:%M:%S.%fZ"
            array = pc.strftime(array, format=fmt)
            if field.type.unit == "ms":  # %f writes microseconds or nanoseconds: keep milliseconds
                array = pc.utf8_replace_slice(array, start=23, stop=-1, replacement="")
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def normalised(batch: pa.RecordBatch, times: Iterable[str]) -> pa.RecordBatch:
    """ClickHouse's Arrow: DateTime arrives as seconds in a UInt32; make it a UTC timestamp, and let every column
    be nullable so the batches of all days share one schema."""
    arrays, fields = [], []
    for field, array in zip(batch.schema, batch.columns):
        if field.name in times and pa.types.is_integer(field.type):
            array = array.cast(pa.int64()).cast(pa.timestamp("s", tz="UTC"))
        elif pa.types.is_timestamp(field.type) and field.type.tz is None:
            array = array.cast(pa.timestamp(field.type.unit, tz="UTC"))
        elif pa.types.is_large_string(field.type) or pa.types.is_binary(field.type):
            array = array.cast(pa.string())
        arrays.append(array)
        fields.append(pa.field(field.name, array.type, nullable=True))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


class _Drain(io.RawIOBase):
    """A write-only file whose bytes are taken out after each write (for Parquet's writer)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


class Encoder:
    """Batches in, bytes out, in the chosen format; the first batch fixes the schema (later ones are cast to it)."""

    def __init__(self, fmt: Format, schema: pa.Schema) -> None:
        self.fmt, self.schema = fmt, schema
        self.rows = 0
        self._drain = _Drain()
        if fmt is Format.PARQUET:
            self._parquet = pq.ParquetWriter(self._drain, schema, compression="zstd")
        else:
            header = _csv_ready(pa.RecordBatch.from_pylist([], schema=schema))
            sink = io.BytesIO()
            pa_csv.write_csv(header, sink, pa_csv.WriteOptions(include_header=True))
            self._drain.write(sink.getvalue())

    def encode(self, batch: pa.RecordBatch) -> bytes:
        batch = batch.cast(self.schema) if batch.schema != self.schema else batch
        self.rows += batch.num_rows
        if self.fmt is Format.PARQUET:
            self._parquet.write_batch(batch)
        else:
            sink = io.BytesIO()
            pa_csv.write_csv(_csv_ready(batch), sink, pa_csv.WriteOptions(include_header=False))
            self._drain.write(sink.getvalue())
        return self._drain.take()

    def finish(self) -> bytes:
        if self.fmt is Format.PARQUET:
            self._parquet.close()
        return self._drain.take()


Batches = Callable[[str, dict[str, object]], Iterator[pa.RecordBatch]]
