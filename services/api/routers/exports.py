"""GET /v1/exports/{dataset}: usage, costs, task facts or DLQ records of a range as CSV or Parquet, streamed, with
the caller's tenants, time limit, pseudonyms and access log like every read (services/api/exports.py)."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import anyio
import pyarrow as pa
from anyio.streams.memory import MemoryObjectSendStream
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from services.api import exports, params
from services.api.app import Scope, audit_of, requires
from services.api.exports import DATASETS, MEDIA_TYPES, Dataset, Encoder, Format
from services.api.params import TimeRange
from services.api.problems import bad_parameter, forbidden
from services.api.routers.common import FROM_QUERY, TO_QUERY, Where, in_range, in_windows, tenant_where

router = APIRouter(prefix="/v1", tags=["exports"])

CHUNKS_AHEAD = 4  # encoded chunks waiting for a slow client at most: the rest waits in ClickHouse


def _dataset(name: str, granularity: str | None) -> tuple[Dataset, tuple[str, int]]:
    dataset = DATASETS.get(name)
    if dataset is None:
        raise bad_parameter("dataset", f"dataset={name[:40]!r} is unknown; one of {', '.join(DATASETS)}")
    if "" in dataset.tables:
        if granularity is not None:
            raise bad_parameter("granularity", f"the {name} export has one row per record: leave granularity out")
        return dataset, dataset.tables[""]
    choice = granularity or "hour"
    if choice not in dataset.tables:
        raise bad_parameter("granularity", f"granularity={choice[:20]!r}: the {name} export comes per "
                                           f"{' or '.join(dataset.tables)}")
    return dataset, dataset.tables[choice]


def _tenants(scope: Scope, dataset: Dataset) -> Where:
    return tenant_where(scope, dataset.tenant_column) if dataset.tenant_column else Where()


def _produce(scope: Scope, dataset: Dataset, source: tuple[str, int], rng: TimeRange, fmt: Format,
             out: MemoryObjectSendStream[bytes]) -> None:
    """In a worker thread: each UTC day's (or month's) batches, shown as the caller may see them, encoded, handed to the
    response (waiting while CHUNKS_AHEAD are unsent)."""
    table, seconds = source
    times = {dataset.time_column, "window_start"}
    encoder: Encoder | None = None
    with out:
        for since, until in exports.chunks(rng.start, rng.end, months=seconds >= 86400):
            # windows overlapping the chunk (a range from 10:30 still gets the 10:00 hour)
            chunk = TimeRange(since, until)
            where = (in_windows(_tenants(scope, dataset), dataset.time_column, chunk, seconds) if seconds else
                     in_range(_tenants(scope, dataset), dataset.time_column, chunk))
            sql = dataset.select.format(db="{db}", table=table, where=where.sql())
            for batch in scope.ch.arrow_batches(sql, where.params):
                batch = exports.shown(exports.normalised(batch, times), dataset, scope.privacy)
                if encoder is None:
                    encoder = Encoder(fmt, batch.schema)
                chunk = encoder.encode(batch)
                if chunk:
                    anyio.from_thread.run(out.send, chunk)
        if encoder is None:  # no row in the range: the header (CSV) or an empty file (Parquet) of the same columns
            where = _tenants(scope, dataset).add("0")
            sql = dataset.select.format(db="{db}", table=table, where=where.sql())
            batch = pa.RecordBatch.from_pylist([], schema=scope.ch.arrow_schema(sql + " LIMIT 0", where.params))
            encoder = Encoder(fmt, exports.shown(exports.normalised(batch, times), dataset, scope.privacy).schema)
        anyio.from_thread.run(out.send, encoder.finish())


@router.get("/exports/{dataset}", summary="A dataset of a range as CSV or Parquet, streamed",
            response_class=StreamingResponse,
            responses={200: {"content": {MEDIA_TYPES[Format.CSV]: {}, MEDIA_TYPES[Format.PARQUET]: {}},
                             "description": "the rows, streamed (chunked); a cut stream ends without its last chunk"}})
async def export(request: Request, dataset: str, scope: Scope = Depends(requires(None)), from_: str | None = FROM_QUERY,
                 to: str | None = TO_QUERY, format: Format = Query(Format.CSV, description="csv or parquet"),  # noqa: A002
                 granularity: str | None = Query(None, description="usage: minute, hour or day; costs: hour or day "
                                                                   "(default hour); none for tasks and dlq")) -> Any:
    """Usage (per window and key), costs (priced, per hour or day and key), task facts, or DLQ records of
    [from, to), one UTC day after another, ordered by time. The dataset's metric type must be the caller's role's
    (usage, costs, tasks, pipeline); the range is limited like every read; people are shown as the role may see
    them. DLQ records come without their content (a rejected record may be any tenant's): where each is, why, its
    size and hash. Amounts are exact decimals; times are UTC."""
    chosen, source = _dataset(dataset, granularity)
    if chosen.metric not in scope.caller.policy.metrics:
        raise forbidden("metric-not-permitted", f"role {scope.caller.role} may not read {chosen.metric.value}, "
                                                f"which the {dataset} export holds", "dataset")
    rng = params.time_range(from_, to, scope.caller.policy.max_range)
    audit_of(request).rows = None
    send, receive = anyio.create_memory_object_stream[bytes](CHUNKS_AHEAD)

    async def body() -> AsyncIterator[bytes]:
        producer = asyncio.ensure_future(anyio.to_thread.run_sync(_produce, scope, chosen, source, rng, format, send))
        async with receive:  # closed when the client goes: the producer's next send fails and it stops
            async for chunk in receive:
                yield chunk
        await producer  # its failure (ClickHouse gone mid-way) cuts the stream

    extension = "csv" if format is Format.CSV else "parquet"
    name = f"{dataset}_{params.iso(rng.start)}_{params.iso(rng.end)}.{extension}".replace(":", "")
    return StreamingResponse(body(), media_type=MEDIA_TYPES[format],
                             headers={"content-disposition": f'attachment; filename="{name}"'})
