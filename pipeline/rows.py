"""The rows the job hands the loader for ClickHouse, declared once: per table, its columns in order with the Flink
SQL type the job writes them as.

The job's sink tables are made from these contracts; tests/pipeline/test_rows.py checks each one against the table
the migrations in sql/clickhouse make, and the Python rows (facts, DLQ records) against their contract.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import routing
from pipeline.facts import TASK_SUMS, TIMESTAMPS
from pipeline.lifecycle import FACT_COLUMNS

# Credits and unit-seconds leave as exact decimals (ClickHouse's Decimal(38, 6), written as plain JSON numbers).
MONEY = "DECIMAL(38, 6)"
USAGE_SUMS = (*routing.INT_METRICS, *routing.FLOAT_METRICS, *routing.MONEY_METRICS)
SUM_TYPES = {**{m: "BIGINT" for m in routing.INT_METRICS}, **{m: "DOUBLE" for m in routing.FLOAT_METRICS},
             **{m: MONEY for m in routing.MONEY_METRICS}}
_TASK_SUM_TYPES = {m: ("DOUBLE" if m.endswith("_seconds") else "BIGINT") for m in TASK_SUMS}
_PY_TYPES = {str: "STRING", int: "BIGINT", float: "DOUBLE"}


@dataclass(frozen=True)
class Contract:
    """A ClickHouse table's columns as the loader inserts them (JSONEachRow keys), with their Flink SQL types."""

    table: str
    columns: tuple[tuple[str, str], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def sql(self, *names: str, **types: str) -> str:
        """A Flink table's column list: all columns, or the named ones in that order; `types` overrides the type
        of a column (a MULTISET where the SQL builds one)."""
        declared = dict(self.columns)
        unknown = [n for n in (*names, *types) if n not in declared]
        if unknown:
            raise KeyError(f"{self.table} has no column {', '.join(unknown)}; it has {', '.join(declared)}")
        return ", ".join(f"`{n}` {types.get(n, declared[n])}" for n in (names or self.names))


def _strings(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((n, "STRING") for n in names)


USAGE = Contract("usage_10s", (
    ("window_start", "BIGINT"), *_strings(*routing.DIMS), *((m, SUM_TYPES[m]) for m in USAGE_SUMS),
    ("latency_hist", "MAP<STRING, BIGINT>"), ("errors_by_type", "MAP<STRING, BIGINT>"), ("late_events", "BIGINT"),
    *((m, _TASK_SUM_TYPES[m]) for m in TASK_SUMS)))
AUDIT = Contract("audit_log", (
    *_strings("event_id", "ts", "topic", "event_name", "tenant_id", "department_id", "project_id", "user_id",
              "node_id", "host_name", "subject", "action", "resource", "decision", "policy_id", "details"),))
LATE = Contract("late_events", (
    *_strings("event_id", "topic", "tenant_id", "ts"), ("window_start", "BIGINT"), *_strings("arrived_at", "payload")))
INGEST = Contract("ingest_stats_10s", (
    ("window_start", "BIGINT"), ("topic", "STRING"),
    *((n, "BIGINT") for n in ("consumed", "valid", "dlq", "duplicates", "late"))))
# pipeline/facts.py writes a fact's epoch-ms times as DateTime64 text
TASKS = Contract("task_facts", tuple((name, "STRING" if name in TIMESTAMPS else _PY_TYPES[kind])
                                     for name, kind in FACT_COLUMNS))
DLQ = Contract("dlq_events", (
    *_strings("ts", "reason", "message", "topic"), ("kafka_partition", "INT"), ("kafka_offset", "BIGINT"),
    *_strings("payload", "payload_encoding"), ("payload_bytes", "BIGINT"), ("payload_sha256", "STRING"),
    ("payload_truncated", "INT"), *_strings("job_version", "rejected_at")))
CONTRACTS = (USAGE, AUDIT, LATE, INGEST, TASKS, DLQ)
