"""`Telemetry`: the blocking producer client of seed 004, `Telemetry(...).emit(...)` with batching.

Events are validated when emitted, buffered, and written in batches of `batch_size` or every
`flush_interval_s` by a background thread; `flush()` and `close()` (or `with`) deliver the rest.
"""

from __future__ import annotations

import atexit
import logging
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

from schemas import Envelope
from telemetry import settings as settings_mod
from telemetry_sdk.backends import Backend, open_backend
from telemetry_sdk.context import SystemSampler, host_identity
from telemetry_sdk.errors import DeliveryError, TelemetryError
from telemetry_sdk.events import EventBuilder, Record
from telemetry.settings import Settings

log = logging.getLogger(__name__)


def event_builder(settings: Settings, system: str, component: str, labels: Mapping[str, str] | None,
                  system_context: bool, overrides: Mapping[str, str | None]) -> EventBuilder:
    """The builder both clients use: host identity from the environment, then the explicit values."""
    context: dict[str, str | None] = host_identity(settings)
    context.update({k: v for k, v in overrides.items() if v is not None})
    return EventBuilder(system, component, context, labels, SystemSampler() if system_context else None)


def check_batching(batch_size: int, flush_interval_s: float | None) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be an integer >= 1")
    if flush_interval_s is not None and not flush_interval_s > 0:
        raise ValueError(f"flush_interval_s={flush_interval_s!r} must be > 0, or None to flush only on size")


def merge_errors(first: TelemetryError | None, second: TelemetryError) -> TelemetryError:
    """Keep every undelivered record when failures pile up between two calls that can raise them."""
    if isinstance(first, DeliveryError) and isinstance(second, DeliveryError):
        return DeliveryError(first.backend, first.failures + second.failures)
    return first or second


def as_delivery_error(backend: str, batch: Sequence[Record], exc: Exception) -> TelemetryError:
    """A backend failure as DeliveryError carrying the batch, so no record disappears with the exception."""
    if isinstance(exc, TelemetryError):
        return exc
    why = f"{type(exc).__name__}: {exc}"
    return DeliveryError(backend, [(r, why) for r in batch], detail=why)


class Telemetry:
    """Producer client. `emit` returns the validated event, or raises EventRefused (nothing sent).

    backend: jsonl | sqlite (path=) | kafka (KAFKA_DIRECT_URL or url=) | kafka-rest (KAFKA_PROXY_URL or url=).
    Reachability is checked here, once, within connect_timeout_s (BackendUnavailable names the fix).
    """

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
        config = settings or settings_mod.load()
        self._builder = event_builder(config, system, component, labels, system_context, {
            "tenant_id": tenant_id, "node_id": node_id, "vm_type": vm_type, "host_name": host_name,
            "user_id": user_id, "project_id": project_id, "department_id": department_id,
        })
        self.batch_size, self.flush_interval_s = batch_size, flush_interval_s
        self._backend: Backend = open_backend(backend, path=path, url=url, settings=config,
                                              timeout_s=connect_timeout_s, client_id=f"telemetry-sdk-{system}")
        self.backend = backend
        self._buffer: list[Record] = []
        self._lock = threading.Lock()  # guards _buffer and _error
        self._io_lock = threading.Lock()  # one batch at a time, in order
        self._error: TelemetryError | None = None  # raised by the next emit / flush / close
        self._closed = False
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        if flush_interval_s is not None:
            self._flusher = threading.Thread(target=self._flush_periodically, name="telemetry-flusher", daemon=True)
            self._flusher.start()
        # Buffered events must not vanish with the interpreter when the caller forgets close() (the strong
        # reference keeps an unclosed client alive until then, on purpose).
        atexit.register(self._close_at_exit)

    # --- API -------------------------------------------------------------------------------------------------

    def emit(
        self,
        event: str | None = None,
        metric: str | None = None,
        value: float | None = None,
        metrics: Mapping[str, float] | None = None,
        status: str | None = None,
        **fields: Any,
    ) -> Envelope:
        """Build, validate and buffer one event; returns it. See EventBuilder.build for the naming."""
        if self._closed:
            raise TelemetryError("emit() on a closed Telemetry")
        self._raise_pending()
        record = self._builder.build(event, metric, value, metrics, status, **fields)
        with self._lock:
            self._buffer.append(record)
            full = len(self._buffer) >= self.batch_size
        if full:
            self._drain()
            self._raise_pending()  # this batch's failures, with this event among them
        return record.event

    def flush(self) -> None:
        """Write everything buffered and wait until the backend confirmed it; DeliveryError otherwise."""
        self._drain()
        with self._io_lock:
            try:
                self._backend.flush()
            except Exception as exc:  # noqa: BLE001 - merged with earlier failures, raised below
                self._remember(as_delivery_error(self.backend, [], exc))
        self._raise_pending()

    def close(self) -> None:
        """Stop the flusher, deliver what is buffered, release the backend (idempotent)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._close_at_exit)
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
        try:
            self.flush()
        finally:
            with self._io_lock:
                self._backend.close()

    @property
    def buffered(self) -> int:
        """Events emitted but not yet handed to the backend."""
        with self._lock:
            return len(self._buffer)

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -------------------------------------------------------------------------------------------

    def _drain(self) -> None:
        with self._io_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
            for start in range(0, len(batch), self.batch_size):
                chunk = batch[start:start + self.batch_size]
                try:
                    self._backend.write(chunk)
                except Exception as exc:  # noqa: BLE001 - handed back as DeliveryError with the records
                    self._remember(as_delivery_error(self.backend, chunk, exc))

    def _remember(self, error: TelemetryError) -> None:
        with self._lock:
            self._error = merge_errors(self._error, error)

    def _raise_pending(self) -> None:
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def _close_at_exit(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at exit there is no caller left to raise to
            log.exception("telemetry: delivering buffered events at exit failed")

    def _flush_periodically(self) -> None:
        assert self.flush_interval_s is not None
        while not self._stop.wait(self.flush_interval_s):
            self._drain()  # failures wait in _error for the caller's next emit / flush / close
