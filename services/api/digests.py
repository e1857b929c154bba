"""Chained digests per hour of the ingest audit log (ClickHouse audit_log: pbac_*, asset_* events).

An hour's rows are hashed one by one in ClickHouse (every column but ingested_at, in a fixed order, separated by
a unit separator), sorted by (ts, event_id, row hash) so the order is total, and hashed together:
rows_sha256. digest = sha256(prev_digest + "\\n" + hour + "\\n" + rows + "\\n" + rows_sha256), chained from 64 zeros.
Hours without rows are sealed too, so removing a whole hour shows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Iterator

from services.api.accesslog import GENESIS

HOUR = timedelta(hours=1)

# The row encoding: the one definition of what a digest covers.
_COLUMNS = ("toString(event_id)", "toString(ts)", "topic", "event_name", "tenant_id", "department_id", "project_id",
            "user_id", "node_id", "host_name", "subject", "action", "resource", "decision", "policy_id", "details")
ROW_HASH_SQL = "lower(hex(SHA256(arrayStringConcat([" + ", ".join(_COLUMNS) + "], '\\x1f'))))"


def hours_sql(database: str) -> str:
    """(hour, rows, rows_sha256) of every hour with rows in [{since}, {until})."""
    return f"""
        SELECT hour, count() AS rows,
               lower(hex(SHA256(arrayStringConcat(arrayMap(x -> x.3, arraySort(groupArray((ts, event_id, h)))), '\\n'))))
        FROM (SELECT toStartOfHour(ts) AS hour, ts, event_id, {ROW_HASH_SQL} AS h
              FROM {database}.audit_log
              WHERE ts >= {{since:DateTime64(3, 'UTC')}} AND ts < {{until:DateTime64(3, 'UTC')}})
        GROUP BY hour ORDER BY hour"""


EMPTY_ROWS_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class HourDigest:
    hour: datetime
    rows: int
    rows_sha256: str
    prev_digest: str
    digest: str


def digest(prev_digest: str, hour: datetime, rows: int, rows_sha256: str) -> str:
    return hashlib.sha256(f"{prev_digest}\n{hour_text(hour)}\n{rows}\n{rows_sha256}".encode()).hexdigest()


def hour_text(hour: datetime) -> str:
    return hour.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:00:00Z")


def utc_hour(value: datetime) -> datetime:
    value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def chain(prev_digest: str, first: datetime, end: datetime, measured: dict[datetime, tuple[int, str]]) -> list[HourDigest]:
    """The digests of the hours [first, end), chained on prev_digest; hours not in measured had no rows."""
    out = []
    hour = utc_hour(first)
    while hour < end:
        rows, rows_sha256 = measured.get(hour, (0, EMPTY_ROWS_SHA256))
        value = digest(prev_digest, hour, rows, rows_sha256)
        out.append(HourDigest(hour, rows, rows_sha256, prev_digest, value))
        prev_digest = value
        hour += HOUR
    return out


@dataclass(frozen=True)
class HourFinding:
    hour: datetime
    what: str  # changed | deleted | inserted | broken | missing
    detail: str


def verify(sealed: Iterable[HourDigest], measured: dict[datetime, tuple[int, str]], other: dict[datetime, str],
           other_name: str) -> Iterator[HourFinding]:
    """Check sealed hours in order against the rows now in ClickHouse (measured) and against the digests kept in
    the other store (other: hour -> digest); yield what does not hold, first problem first."""
    prev = GENESIS
    for seal in sealed:
        when = hour_text(seal.hour)
        if seal.prev_digest != prev or digest(seal.prev_digest, seal.hour, seal.rows, seal.rows_sha256) != seal.digest:
            yield HourFinding(seal.hour, "broken", f"the digest of hour {when} does not chain: the digests were edited")
        rows, rows_sha256 = measured.get(seal.hour, (0, EMPTY_ROWS_SHA256))
        if rows > seal.rows:
            yield HourFinding(seal.hour, "inserted", f"hour {when} holds {rows} rows, {rows - seal.rows} more than "
                                                     f"the {seal.rows} sealed: rows were inserted")
        elif rows < seal.rows:
            yield HourFinding(seal.hour, "deleted", f"hour {when} holds {rows} rows, {seal.rows - rows} fewer than "
                                                    f"the {seal.rows} sealed: rows were deleted")
        elif rows_sha256 != seal.rows_sha256:
            yield HourFinding(seal.hour, "changed", f"hour {when} holds its {rows} rows but their digest differs: "
                                                    "a row was changed")
        if other.get(seal.hour) != seal.digest:
            yield HourFinding(seal.hour, "missing" if seal.hour not in other else "changed",
                              f"hour {when}: {other_name} holds "
                              + ("no digest" if seal.hour not in other else "another digest"))
        prev = seal.digest
