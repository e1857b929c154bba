"""sqlite backend: one table `events` (topic, event_id primary key, ts, event_name, payload JSON), queryable
with SQLite's JSON functions, e.g. `SELECT json_extract(payload, '$.value') FROM events WHERE event_name = ?`.

Writing an event twice (a retry) keeps the first copy: event_id is the key.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Sequence

from schemas import format_ts
from telemetry_sdk.events import Record

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    topic      TEXT NOT NULL,
    event_id   TEXT NOT NULL PRIMARY KEY,
    ts         TEXT NOT NULL,  -- ISO-8601 UTC with milliseconds: sorts and compares as text
    event_name TEXT NOT NULL,
    payload    TEXT NOT NULL   -- the event's canonical JSON
);
CREATE INDEX IF NOT EXISTS events_name_ts ON events (event_name, ts);
"""


class SqliteBackend:
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # The SDK's flusher thread (or an executor) writes too; the lock serialises use of the connection.
        self._conn: sqlite3.Connection | None = sqlite3.connect(path, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
            self._conn.executescript(SCHEMA)

    def write(self, records: Sequence[Record]) -> None:
        rows = [(r.topic, r.event_id, format_ts(r.event.ts), r.event_name, r.value.decode()) for r in records]
        with self._lock:
            if self._conn is None:
                raise ValueError(f"sqlite backend {self.path} is closed")
            with self._conn:  # one transaction per batch
                self._conn.executemany(
                    "INSERT OR IGNORE INTO events (topic, event_id, ts, event_name, payload) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )

    def flush(self) -> None:
        """Every write is committed already."""

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
