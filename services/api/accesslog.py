"""The API's access log: one record per request (who, role, tenants, endpoint, parameters, rows returned, status,
time), hash-chained in PostgreSQL, and the check that finds the first record changed, deleted or inserted.

A record is canonical JSON (sorted keys, no spaces, ASCII only, so its bytes never depend on the platform);
hash = sha256(prev_hash + "\\n" + record) in hex, with 64 zeros before the first record. PostgreSQL's
append_access_logs() computes the same (sql/postgres/migrations/0003_access_log_batches.sql) under one lock, so
concurrent requests chain in order; GroupCommit hands it the records of concurrent requests together.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Iterator, Sequence

from services.api.batching import Batcher

GENESIS = "0" * 64
MAX_VALUE_CHARS = 1024  # a parameter longer than this is kept cut, marked with its full length


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def chain_hash(prev_hash: str, record: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{record}".encode()).hexdigest()


def bounded(value: str) -> str:
    """A caller's string as the log keeps it: at most MAX_VALUE_CHARS (marked with its length), NUL as U+FFFD (a
    record is read back as PostgreSQL jsonb, which has no NUL)."""
    value = value.replace("\x00", "\ufffd")
    if len(value) <= MAX_VALUE_CHARS:
        return value
    return f"{value[:MAX_VALUE_CHARS]}...({len(value)} chars)"


def parameters(items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Query parameters as name -> values in order, each bounded (hostile callers send anything)."""
    out: dict[str, list[str]] = {}
    for name, value in items:
        out.setdefault(bounded(name), []).append(bounded(value))
    return out


Fetch = Callable[[str, Sequence[Any]], Awaitable[list[tuple[Any, ...]]]]


class GroupCommit:
    """Appends records in batches (services/api/batching.py): the records that arrive while a batch is being
    committed go together in the next one, one statement and one transaction (one WAL flush) for all of them,
    chained in arrival order.

    append() returns the record's seq once its batch is committed, or raises what failed the batch: a request
    never learns its record was written before PostgreSQL said so, and a failed batch fails every request in it."""

    SQL = "SELECT seq FROM append_access_logs(%b)"  # binary: a text[] of records sent as they are, no escaping

    def __init__(self, fetch: Fetch, max_batch: int = 200) -> None:
        self.fetch = fetch
        self.batcher: Batcher[str, int] = Batcher(self._append, max_batch)

    async def append(self, record: str) -> int:
        return await self.batcher(record)

    async def _append(self, records: list[str]) -> list[int]:
        return [seq for (seq,) in await self.fetch(self.SQL, (records,))]

    @property
    def batches(self) -> int:
        return self.batcher.batches

    @property
    def records(self) -> int:
        return self.batcher.calls


@dataclass(frozen=True)
class Entry:
    seq: int
    record: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Finding:
    seq: int
    what: str  # changed | deleted | inserted | broken
    detail: str


def verify(entries: Iterable[Entry], anchors: dict[int, str] | None = None) -> Iterator[Finding]:
    """Walk the chain in seq order and yield what does not hold, the first problem first.

    A record whose content no longer gives its hash was changed; a gap in seq is a deletion; a record whose
    successor chains to its predecessor was inserted; an anchor (seq -> hash kept outside PostgreSQL) that no
    longer matches means the chain was rewritten from there on, hashes and all."""
    anchors = anchors or {}
    previous: Entry | None = None
    before_previous_hash = GENESIS
    expected_seq = 1
    for entry in entries:
        if entry.seq != expected_seq:
            missing = f"{expected_seq}" if entry.seq == expected_seq + 1 else f"{expected_seq}-{entry.seq - 1}"
            yield Finding(expected_seq, "deleted", f"record {missing} is missing: {expected_seq - 1} is followed by {entry.seq}")
        if chain_hash(entry.prev_hash, entry.record) != entry.hash:
            yield Finding(entry.seq, "changed", f"record {entry.seq} does not match its hash: its content was changed")
        prev_hash = previous.hash if previous else GENESIS
        if entry.prev_hash != prev_hash and previous is not None and entry.seq == previous.seq + 1:
            if entry.prev_hash == before_previous_hash:
                yield Finding(previous.seq, "inserted", f"record {previous.seq} was inserted: record {entry.seq} "
                                                        f"chains to record {previous.seq - 1}")
            else:
                yield Finding(entry.seq, "broken", f"record {entry.seq} does not chain to record {previous.seq}: "
                                                   "a record before it was changed or replaced")
        elif previous is None and entry.prev_hash != GENESIS and entry.seq == 1:
            yield Finding(1, "changed", "record 1 does not start the chain (its prev_hash is not 64 zeros)")
        if entry.seq in anchors and anchors[entry.seq] != entry.hash:
            yield Finding(entry.seq, "changed", f"record {entry.seq} no longer has the hash anchored in ClickHouse: "
                                                "the log was rewritten up to here")
        before_previous_hash = previous.hash if previous else GENESIS
        previous = entry
        expected_seq = entry.seq + 1
    last = previous.seq if previous else 0
    for seq in sorted(s for s in anchors if s > last):
        yield Finding(seq, "deleted", f"record {seq} is anchored in ClickHouse but the log ends at {last}")
