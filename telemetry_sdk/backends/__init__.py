"""Where records go: jsonl and sqlite files, Kafka directly, or Kafka through its REST proxy.

Every backend has the same three calls (write a batch, flush, close); `open_backend` picks one by name and
checks at once that it can be reached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

from telemetry_sdk.events import Record
from telemetry.settings import Settings

BACKENDS = ("jsonl", "sqlite", "kafka", "kafka-rest")
DEFAULT_PATHS = {"jsonl": Path("telemetry.jsonl"), "sqlite": Path("telemetry.db")}


class Backend(Protocol):
    """A sink for batches of records. write may deliver asynchronously; flush returns once everything written
    is delivered, raising DeliveryError for what was not."""

    name: str

    def write(self, records: Sequence[Record]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def open_backend(
    name: str, *, path: str | Path | None, url: str | None, settings: Settings, timeout_s: float, client_id: str
) -> Backend:
    """The backend called `name`; BackendUnavailable if it cannot be reached, ValueError for an unknown name."""
    if name == "jsonl":
        from telemetry_sdk.backends.jsonl import JsonlBackend

        return JsonlBackend(Path(path) if path else DEFAULT_PATHS["jsonl"])
    if name == "sqlite":
        from telemetry_sdk.backends.sqlite import SqliteBackend

        return SqliteBackend(Path(path) if path else DEFAULT_PATHS["sqlite"])
    if name == "kafka":
        from telemetry_sdk.backends.kafka import KafkaBackend

        return KafkaBackend(url or settings.kafka_direct_url, timeout_s=timeout_s, client_id=client_id,
                            from_env=url is None)
    if name == "kafka-rest":
        from telemetry_sdk.backends.kafka_rest import KafkaRestBackend

        return KafkaRestBackend(url or settings.kafka_proxy_url, timeout_s=timeout_s, from_env=url is None)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
