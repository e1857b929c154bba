"""The ClickHouse side of a backfill: what a [from, to) range touches, the inputs the lake does not hold (late
event ids, ended task attempts), and the swap that replaces whole usage partitions atomically and idempotently.

jobs/backfill_job.py recomputes the range's usage rows from the lake with Flink; this module puts them in place.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from clickhouse_connect.driver.client import Client

from pipeline.facts import task_usage_delta
from pipeline.routing import WINDOW_MS

USAGE_TABLE = "usage_10s"
# Rolled up from usage_10s by the materialized view <rollup>_mv (sql/clickhouse/migrations/0003_usage.sql).
ROLLUPS = ("usage_1m", "usage_1h", "usage_1d")
STAGING_PREFIX = "backfill_"


class BackfillError(ValueError):
    """A backfill argument or precondition is wrong; the message names the value and the fix."""


@dataclass(frozen=True)
class Range:
    """[start, end) in epoch ms, both on a 10 s window boundary."""

    start_ms: int
    end_ms: int

    @property
    def months(self) -> list[int]:
        """The YYYYMM partitions of the usage tables the range touches."""
        out: list[int] = []
        day = datetime.fromtimestamp(self.start_ms / 1000, timezone.utc).replace(day=1, hour=0, minute=0, second=0)
        last = datetime.fromtimestamp((self.end_ms - 1) / 1000, timezone.utc)
        while (day.year, day.month) <= (last.year, last.month):
            out.append(day.year * 100 + day.month)
            day = day.replace(year=day.year + day.month // 12, month=day.month % 12 + 1)
        return out

    def sql(self, column: str) -> str:
        """SQL: column (a DateTime) within the range."""
        return (f"{column} >= toDateTime({self.start_ms // 1000}, 'UTC') "
                f"AND {column} < toDateTime({self.end_ms // 1000}, 'UTC')")

    def __str__(self) -> str:
        return f"[{iso(self.start_ms)}, {iso(self.end_ms)})"


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_instant(name: str, text: str) -> int:
    """ISO 8601 instant (a date alone means its midnight, UTC unless an offset is given) -> epoch ms."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BackfillError(f"{name} {text!r} is not an ISO 8601 time; expected e.g. 2026-01-01T00:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def parse_range(start: str, end: str) -> Range:
    start_ms, end_ms = parse_instant("--from", start), parse_instant("--to", end)
    for name, ms in (("--from", start_ms), ("--to", end_ms)):
        if ms % WINDOW_MS:
            raise BackfillError(f"{name} {iso(ms)} is inside a 10 s window; give a multiple of 10 s so each window "
                                "is either rebuilt whole or left alone")
    if end_ms <= start_ms:
        raise BackfillError(f"--to {iso(end_ms)} must be after --from {iso(start_ms)}")
    return Range(start_ms, end_ms)


def late_event_ids(client: Client, database: str, span: Range) -> set[str]:
    """Events the streaming job found past the allowed lateness: kept out of usage and counted as late."""
    result = client.query(f"SELECT DISTINCT event_id FROM {database}.late_events WHERE {span.sql('window_start')}")
    return {row[0] for row in result.result_rows}


_FACT_COLUMNS = ("status", "attempt", "tenant_id", "department_id", "project_id", "user_id", "base_model",
                 "model_version", "checkpoint_id", "checkpoint_version", "queue_ms", "checkpoint_load_ms", "init_ms",
                 "inference_ms", "total_ms", "cpu_seconds", "gpu_seconds", "late")


def task_deltas(client: Client, database: str, span: Range) -> list[dict[str, Any]]:
    """usage_10s deltas of the attempts that ended in the range, from task_facts (each attempt's newest revision,
    enriched), through the rule of the streaming job's ledger (pipeline.facts): an attempt counts as its newest
    revision, or not at all when that one's end came late (a counted attempt never takes a late event)."""
    columns = ", ".join(_FACT_COLUMNS)
    result = client.query(
        f"SELECT {columns}, toUnixTimestamp64Milli(finished_at) AS finished_ms FROM {database}.task_facts FINAL "
        f"WHERE {span.sql('finished_at')}")
    # (An alias named finished_at would replace the column in WHERE too: ClickHouse resolves aliases first.)
    facts = ({**dict(zip(result.column_names, row)), "finished_at": row[-1]} for row in result.result_rows)
    deltas = (task_usage_delta(fact) for fact in facts)
    return [d for d in deltas if d is not None and span.start_ms <= d["window_start"] * 1000 < span.end_ms]


@dataclass(frozen=True)
class PartitionState:
    table: str
    partition: int
    rows: int
    in_range: int


def describe(client: Client, database: str, span: Range) -> list[PartitionState]:
    """Rows of each usage table's affected partitions, and how many of them lie in the range (the dry run)."""
    out = []
    for table in (USAGE_TABLE, *ROLLUPS):
        for month in span.months:
            rows, in_range = client.query(
                f"SELECT count(), countIf({span.sql('window_start')}) FROM {database}.{table} "
                f"WHERE toYYYYMM(window_start) = {month}").result_rows[0]
            out.append(PartitionState(table, month, rows, in_range))
    return out


def replace_usage(client: Client, database: str, span: Range, rows: Iterable[dict[str, Any]],
                  say: Callable[[str], None] = print) -> int:
    """Rebuild every partition the range touches: its rows outside the range as they are, the range's rows from
    `rows` (usage_10s columns; several rows of a key add up), the rollups from that whole partition through their
    own views' SELECTs; then swap each partition in with REPLACE PARTITION, so a reader sees the old partition or
    the new one, and running the same backfill twice leaves the same tables. Returns usage_10s rows inserted."""
    staging = {t: f"{database}.{STAGING_PREFIX}{t}" for t in (USAGE_TABLE, *ROLLUPS)}
    for table, stage in staging.items():
        client.command(f"DROP TABLE IF EXISTS {stage}")
        client.command(f"CREATE TABLE {stage} AS {database}.{table}")
    # Staging tables copy the targets' block deduplication: two equal blocks here are two rows to keep.
    settings = {"insert_deduplicate": 0}
    try:
        client.command(f"INSERT INTO {staging[USAGE_TABLE]} SELECT * FROM {database}.{USAGE_TABLE} "
                       f"WHERE toYYYYMM(window_start) IN ({', '.join(map(str, span.months))}) "
                       f"AND NOT ({span.sql('window_start')})", settings=settings)
        # Decimal money as text, which ClickHouse reads into Decimal(38, 6) exactly (json writes no decimal number)
        lines = [json.dumps(r, separators=(",", ":"), default=str) for r in rows]
        if lines:
            client.raw_insert(staging[USAGE_TABLE], insert_block="\n".join(lines).encode(), fmt="JSONEachRow",
                              settings=settings)
        inserted = len(lines)
        say(f"backfill: {inserted} usage rows for {span} staged")
        for rollup in ROLLUPS:
            select = view_select(client, database, f"{rollup}_mv")
            source = f"{database}.{USAGE_TABLE}"
            if source not in select:
                raise BackfillError(f"{rollup}_mv does not read {source}; the migrations changed: update backfill")
            client.command(f"INSERT INTO {staging[rollup]} {select.replace(source, staging[USAGE_TABLE])}",
                           settings=settings)
        for table, stage in staging.items():
            for month in span.months:
                client.command(f"ALTER TABLE {database}.{table} REPLACE PARTITION {month} FROM {stage}")
            say(f"backfill: {table}: partitions {', '.join(map(str, span.months))} replaced")
        # REPLACE PARTITION runs no materialized view: the priced cost tables learn of the new usage here
        if client.command(f"EXISTS TABLE {database}.cost_dirty_days"):
            client.command(f"INSERT INTO {database}.cost_dirty_days (day, reason) SELECT DISTINCT toDate(window_start), "
                           f"'backfill' FROM {staging[ROLLUPS[-1]]}")
        return inserted
    finally:
        for stage in staging.values():
            client.command(f"DROP TABLE IF EXISTS {stage}")


def view_select(client: Client, database: str, view: str) -> str:
    """The SELECT of a materialized view, as ClickHouse stores it (one definition: the migration's)."""
    result = client.query("SELECT as_select FROM system.tables WHERE database = {db:String} AND name = {name:String}",
                          parameters={"db": database, "name": view})
    if not result.result_rows or not result.result_rows[0][0]:
        raise BackfillError(f"no materialized view {database}.{view}: run `make migrate` first")
    return re.sub(r"\s+", " ", result.result_rows[0][0])
