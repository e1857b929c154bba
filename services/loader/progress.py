"""The loader's position per Kafka partition, kept in ClickHouse's loader_progress table (the source of truth).

An 'intent' row names a batch's offset range before its insert; a 'loaded' row says the batch is in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Literal

from clickhouse_connect.driver.client import Client

State = Literal["intent", "loaded"]
_COLUMNS = ["topic", "partition", "first_offset", "last_offset", "rows", "rejected", "state"]


@dataclass(frozen=True)
class Mark:
    """One row of loader_progress: a batch [first_offset, last_offset] of a partition and how far it got."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    rows: int
    rejected: int
    state: State

    @property
    def token(self) -> str:
        """The batch's insert_deduplication_token: the same range always gets the same token."""
        return f"{self.topic}:{self.partition}:{self.first_offset}:{self.last_offset}"


class ProgressStore:
    """Reads and writes loader_progress in one database."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._table = f"{database}.loader_progress"

    def positions(self, topics: Iterable[str]) -> dict[tuple[str, int], Mark]:
        """The newest mark of every partition of `topics` that has one."""
        rows = self._client.query(
            "SELECT topic, partition, argMax(tuple(first_offset, last_offset, rows, rejected, state), seq) "
            f"FROM {self._table} WHERE topic IN {{topics:Array(String)}} GROUP BY topic, partition",
            parameters={"topics": sorted(set(topics))},
        ).result_rows
        return {(topic, partition): Mark(topic, partition, *newest) for topic, partition, newest in rows}

    def write(self, marks: list[Mark]) -> None:
        """Insert marks; when this returns they are stored (a synchronous insert). Raw JSONEachRow, because
        the client's typed insert first asks the server for the table's columns: two round trips per batch."""
        if marks:
            body = b"\n".join(json.dumps({c: getattr(m, c) for c in _COLUMNS}).encode() for m in marks)
            self._client.raw_insert(self._table, insert_block=body, fmt="JSONEachRow", settings={"async_insert": 0})
