"""Insert one batch of JSONEachRow records as raw bytes, with the batch's deduplication token.

Rows ClickHouse rejects are found from its error ("(at row N)"), taken out and the rest retried, so the good
rows still go in as one block under the batch's token and the outcome is the same on every replay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

# Per insert: synchronous and deduplicated (also in the rollups that materialized views fill), and strict, so
# a field the table lacks rejects its row instead of vanishing; best_effort reads any ISO-8601 form of time.
INSERT_SETTINGS: dict[str, object] = {
    "async_insert": 0,
    "insert_deduplicate": 1,
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    "input_format_skip_unknown_fields": 0,
    "date_time_input_format": "best_effort",
}
_AT_ROW = re.compile(r"\(at row (\d+)\)")
_MESSAGE = re.compile(r"DB::Exception: (.*?)(?: \(version [^)]*\))*(?: \(for url [^)]*\))?\s*$", re.S)
_UNREACHABLE = re.compile(r"\[Errno \d+\] ([^'\")]+)")


@dataclass(frozen=True)
class RejectedRow:
    index: int  # position in the batch
    error: str  # ClickHouse's message


class RowsRejected(Exception):
    """More rows were rejected than allowed; nothing of the batch was inserted."""

    def __init__(self, rejected: list[RejectedRow]) -> None:
        super().__init__(rejected[-1].error)
        self.rejected = rejected


def clickhouse_message(exc: BaseException) -> str:
    """The text of a ClickHouse exception without the client's and server's wrapping."""
    text = str(exc)
    match = _MESSAGE.search(text)
    if match is None and (unreachable := _UNREACHABLE.search(text)):
        return f"cannot reach ClickHouse: {unreachable.group(1).strip()}"
    return " ".join((match.group(1) if match else text).split())  # one line: it goes into logs and the DLQ


def insert_rows(client: Client, table: str, rows: list[bytes | None], token: str, max_rejected: int) -> list[RejectedRow]:
    """Insert `rows` (JSON objects) into `table` under `token`; returns the rows ClickHouse refused.

    Raises RowsRejected past `max_rejected` refusals, and the client's error for any failure that is not one
    row's fault (server down, unknown table, ...): then nothing was inserted and the call can be repeated.
    """
    rejected: list[RejectedRow] = []
    alive = list(range(len(rows)))
    if None in rows or b"" in rows:  # an empty record would read as nothing at all in JSONEachRow
        rejected = [RejectedRow(i, "empty Kafka record value") for i in alive if not rows[i]]
        alive = [i for i in alive if rows[i]]
    settings = {**INSERT_SETTINGS, "insert_deduplication_token": token}
    while alive:
        if len(rejected) > max_rejected:
            raise RowsRejected(rejected)
        body = b"\n".join(rows) if len(alive) == len(rows) else b"\n".join(rows[i] for i in alive)  # type: ignore[misc]
        try:
            client.raw_insert(table, insert_block=body, fmt="JSONEachRow", settings=settings)
            break
        except DatabaseError as exc:
            match = _AT_ROW.search(str(exc))
            position = int(match.group(1)) - 1 if match else -1
            if not 0 <= position < len(alive):
                raise
            rejected.append(RejectedRow(alive.pop(position), clickhouse_message(exc)))
    if len(rejected) > max_rejected:
        raise RowsRejected(rejected)
    return rejected
