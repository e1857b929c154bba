"""What the loader holds for one Kafka partition: the batch being filled and, after a restart, the range to replay.

Batches are cut per partition by row count, bytes and age, so a batch is always one contiguous offset range.
"""

from __future__ import annotations

import time

from confluent_kafka import Message

from services.loader.progress import Mark

# ClickHouse squashes an insert into one block up to min_insert_block_size_bytes (256 MiB): staying well below
# keeps each batch one block, so it is inserted whole or not at all and deduplicated as a unit.
MAX_BATCH_BYTES = 64 * 1024 * 1024


class ReplayError(Exception):
    """Kafka no longer returns the exact range an interrupted batch covered (retention deleted it?)."""


class PartitionBuffer:
    """The pending records of one partition, in offset order."""

    __slots__ = ("topic", "partition", "table", "max_rows", "msgs", "nbytes", "started", "replay", "at_eof", "stopped",
                 "next_offset")

    def __init__(self, topic: str, partition: int, table: str, max_rows: int, replay: Mark | None = None) -> None:
        self.topic = topic
        self.partition = partition
        self.table = table
        self.max_rows = max_rows
        self.msgs: list[Message] = []
        self.nbytes = 0
        self.started = 0.0  # monotonic time of the batch's first record
        self.replay = replay  # an interrupted batch to read again exactly, before anything else
        self.at_eof = False
        self.stopped: str | None = None  # why the partition stopped loading, when it did
        self.next_offset = -1  # the first offset not loaded yet; negative: Kafka's logical "beginning"

    def add(self, msg: Message) -> bool:
        """Buffer a record; True when the batch is complete and must be inserted now."""
        if self.replay is not None:
            return self._add_replayed(msg)
        if not self.msgs:
            self.started = time.monotonic()
        self.msgs.append(msg)
        self.nbytes += len(msg)
        return len(self.msgs) >= self.max_rows or self.nbytes >= MAX_BATCH_BYTES

    def _add_replayed(self, msg: Message) -> bool:
        replay = self.replay
        assert replay is not None
        offset = msg.offset()
        expected_first = not self.msgs
        if (expected_first and offset != replay.first_offset) or offset > replay.last_offset:
            raise ReplayError(
                f"{self.topic}[{self.partition}]: the interrupted batch {replay.first_offset}..{replay.last_offset} "
                f"cannot be read again (got offset {offset}); its records are gone from Kafka"
            )
        self.msgs.append(msg)
        self.nbytes += len(msg)
        return offset == replay.last_offset

    def due(self, now: float, max_age_s: float) -> bool:
        """A normal batch waited long enough (a replayed one is only complete at its last offset)."""
        return bool(self.msgs) and self.replay is None and now - self.started >= max_age_s

    def take(self) -> list[Message]:
        msgs, self.msgs, self.nbytes = self.msgs, [], 0
        return msgs
