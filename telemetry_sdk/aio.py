"""`AsyncTelemetry`: the asyncio client, `await t.emit(...)`, `await t.flush()`, `async with AsyncTelemetry(...)`.

kafka-rest is native aiohttp; jsonl, sqlite and kafka run their blocking calls on one worker thread (one
thread keeps batches in order and suits sqlite's single connection). The backend is opened and checked on
`async with` / `await open()` (or the first emit), since a constructor cannot await. Building an event stays
on the loop: reading /proc is microseconds, and nvidia-smi (where present) runs at most every 10 s.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from schemas import Envelope
from telemetry import settings as settings_mod
from telemetry_sdk.backends import Backend, open_backend
from telemetry_sdk.backends.kafka_rest import AsyncKafkaRestBackend
from telemetry_sdk.client import as_delivery_error, check_batching, event_builder, merge_errors
from telemetry_sdk.errors import TelemetryError
from telemetry_sdk.events import Record
from telemetry.settings import Settings


class AsyncBackend(Protocol):
    name: str

    async def write(self, records: Sequence[Record]) -> None: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...


class _InThread:
    """A blocking backend driven from asyncio through a single worker thread."""

    def __init__(self, backend: Backend, executor: ThreadPoolExecutor) -> None:
        self.name, self._backend, self._executor = backend.name, backend, executor

    async def _run(self, fn: Any, *args: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def write(self, records: Sequence[Record]) -> None:
        await self._run(self._backend.write, records)

    async def flush(self) -> None:
        await self._run(self._backend.flush)

    async def close(self) -> None:
        try:
            await self._run(self._backend.close)
        finally:
            self._executor.shutdown(wait=False)


class AsyncTelemetry:
    """asyncio producer client; same arguments and behaviour as Telemetry (see there)."""

    def __init__(
        self,
        system: str = "xumi",
        component: str = "sdk",
        backend: str = "jsonl",
        path: str | Path | None = None,
        *,
        url: str | None = None,
        user_id: str | None = None,
        project_id: str | None = None,
        department_id: str | None = None,
        tenant_id: str | None = None,
        node_id: str | None = None,
        vm_type: str | None = None,
        host_name: str | None = None,
        labels: Mapping[str, str] | None = None,
        batch_size: int = 100,
        flush_interval_s: float | None = 1.0,
        system_context: bool = True,
        connect_timeout_s: float = 5.0,
        settings: Settings | None = None,
    ) -> None:
        check_batching(batch_size, flush_interval_s)
        self._settings = settings or settings_mod.load()
        self._builder = event_builder(self._settings, system, component, labels, system_context, {
            "tenant_id": tenant_id, "node_id": node_id, "vm_type": vm_type, "host_name": host_name,
            "user_id": user_id, "project_id": project_id, "department_id": department_id,
        })
        self.backend, self._path, self._url = backend, path, url
        self.batch_size, self.flush_interval_s = batch_size, flush_interval_s
        self._timeout_s, self._client_id = connect_timeout_s, f"telemetry-sdk-{system}"
        self._sink: AsyncBackend | None = None
        self._buffer: list[Record] = []
        self._io_lock: asyncio.Lock | None = None  # created on the running loop
        self._error: TelemetryError | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    async def open(self) -> None:
        """Open the backend (BackendUnavailable if unreachable) and start the interval flusher; idempotent."""
        if self._sink is not None:
            return
        if self.backend == "kafka-rest":
            rest = AsyncKafkaRestBackend(self._url or self._settings.kafka_proxy_url, timeout_s=self._timeout_s,
                                         from_env=self._url is None)
            await rest.open()
            sink: AsyncBackend = rest
        else:
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="telemetry-backend")
            try:
                opened = await asyncio.get_running_loop().run_in_executor(executor, functools.partial(
                    open_backend, self.backend, path=self._path, url=self._url, settings=self._settings,
                    timeout_s=self._timeout_s, client_id=self._client_id))
            except BaseException:
                executor.shutdown(wait=False)
                raise
            sink = _InThread(opened, executor)
        self._sink, self._io_lock = sink, asyncio.Lock()
        if self.flush_interval_s is not None:
            self._flusher = asyncio.create_task(self._flush_periodically(), name="telemetry-flusher")

    async def emit(
        self,
        event: str | None = None,
        metric: str | None = None,
        value: float | None = None,
        metrics: Mapping[str, float] | None = None,
        status: str | None = None,
        **fields: Any,
    ) -> Envelope:
        """Build, validate and buffer one event; returns it (EventRefused if invalid: nothing is sent)."""
        if self._closed:
            raise TelemetryError("emit() on a closed AsyncTelemetry")
        await self.open()
        self._raise_pending()
        record = self._builder.build(event, metric, value, metrics, status, **fields)
        self._buffer.append(record)
        if len(self._buffer) >= self.batch_size:
            await self._drain()
            self._raise_pending()
        return record.event

    async def flush(self) -> None:
        """Write everything buffered and wait for the backend's confirmation; DeliveryError otherwise."""
        await self.open()
        assert self._sink is not None and self._io_lock is not None
        await self._drain()
        async with self._io_lock:
            try:
                await self._sink.flush()
            except Exception as exc:  # noqa: BLE001 - merged with earlier failures, raised below
                self._error = merge_errors(self._error, as_delivery_error(self.backend, [], exc))
        self._raise_pending()

    async def close(self) -> None:
        """Stop the flusher, deliver what is buffered, release the backend (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._sink is None:  # never opened, so nothing was emitted
            return
        try:
            await self.flush()
        finally:
            await self._sink.close()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def __aenter__(self) -> AsyncTelemetry:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _drain(self) -> None:
        assert self._sink is not None and self._io_lock is not None
        async with self._io_lock:
            batch, self._buffer = self._buffer, []
            for start in range(0, len(batch), self.batch_size):
                chunk = batch[start:start + self.batch_size]
                try:
                    await self._sink.write(chunk)
                except Exception as exc:  # noqa: BLE001 - handed back as DeliveryError with the records
                    self._error = merge_errors(self._error, as_delivery_error(self.backend, chunk, exc))

    def _raise_pending(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    async def _flush_periodically(self) -> None:
        assert self.flush_interval_s is not None
        while True:
            await asyncio.sleep(self.flush_interval_s)
            await self._drain()  # failures wait in _error for the caller's next emit / flush / close
