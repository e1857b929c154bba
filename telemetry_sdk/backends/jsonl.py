"""jsonl backend: appends one JSON object per line, {"topic": ..., "key": ..., "event": {...}}, to a file.

Seed 004's fast local store; `read_jsonl` reads it back for analysis and tests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from telemetry_sdk.events import Record


class JsonlBackend:
    name = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND: each batch is one write() at the end of the file, so several producers can share it.
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, records: Sequence[Record]) -> None:
        if self._fd is None:
            raise ValueError(f"jsonl backend {self.path} is closed")
        # The event is embedded as its canonical JSON bytes, so the file holds exactly what Kafka would.
        lines = b"".join(
            b'{"topic":' + json.dumps(r.topic).encode() + b',"key":' + json.dumps(r.key).encode()
            + b',"event":' + r.value + b"}\n"
            for r in records
        )
        view = memoryview(lines)
        while view:  # a regular file takes it all at once; loop for the rare short write
            view = view[os.write(self._fd, view):]

    def flush(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_jsonl(path: str | Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(topic, key, event dict) for every line of a jsonl file the backend wrote."""
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                obj = json.loads(line)
                yield obj["topic"], obj["key"], obj["event"]
