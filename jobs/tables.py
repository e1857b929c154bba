"""What both jobs declare in Flink SQL: the raw lake table, the exactly-once Kafka sinks the loader reads (their
columns from pipeline/rows.py, their topics from the catalogue) and the usage sums, so the streaming job and the
backfill compute usage with the same SQL.
"""

from __future__ import annotations

from pyflink.table import TableEnvironment

from pipeline import routing
from pipeline.rows import MONEY, Contract
from telemetry import topics


def summed(m: str, when: str = "") -> str:
    """SQL: the sum of a usage metric over a group (of its rows matching `when`, for money). Money is summed as
    DECIMAL(38, 0) micro-units (a BIGINT sum could overflow: one record may carry 10^18 of them) and scaled to
    MONEY once per group."""
    if m in routing.MONEY_METRICS:
        value = f"CASE WHEN {when} THEN {m} END" if when else m
        return f"CAST(COALESCE(SUM(CAST({value} AS DECIMAL(38, 0))), 0) * 0.000001 AS {MONEY})"
    return f"SUM({m})"


def single(m: str) -> str:
    """SQL: one event's usage metric as the sink column holds it."""
    return f"CAST(COALESCE({m}, 0) * 0.000001 AS {MONEY})" if m in routing.MONEY_METRICS else m


def lake_ddl(name: str, uri: str) -> str:
    """The raw lake as a table: one stable schema for every topic, partitioned topic= / date= / hour=; the
    streaming job writes it, the backfill job reads it."""
    return f"""CREATE TEMPORARY TABLE {name} (
        event_id STRING, event_name STRING, ts TIMESTAMP(3), tenant_id STRING, department_id STRING,
        project_id STRING, user_id STRING, node_id STRING, host_name STRING, vm_type STRING, payload STRING,
        topic STRING, `date` STRING, `hour` STRING
    ) PARTITIONED BY (topic, `date`, `hour`) WITH (
        'connector' = 'filesystem', 'path' = '{uri}', 'format' = 'parquet',
        'sink.partition-commit.policy.kind' = 'success-file')"""


def kafka_sink_ddl(name: str, topic: str, bootstrap: str, columns: str, deployment: str, fmt: str = "json") -> str:
    # Transactions commit on checkpoint; transaction.timeout.ms stays below the broker's 15 min maximum.
    return f"""CREATE TEMPORARY TABLE {name} ({columns}) WITH (
        'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'format' = '{fmt}', {"'json.encode.decimal-as-plain-number' = 'true'," if fmt == "json" else ""}
        'sink.delivery-guarantee' = 'exactly-once',
        'sink.transactional-id-prefix' = '{transactional_id_prefix(deployment, name)}',
        'properties.transaction.timeout.ms' = '600000')"""


def transactional_id_prefix(deployment: str, sink: str) -> str:
    """Kafka transactional ids are cluster-wide: a producer that starts with another's id fences it. So each
    deployment's sinks get ids of their own, stable across its restarts (a restored sink aborts what its own
    prefix left open)."""
    return f"{deployment}.{sink}"


class Sinks:
    """The job's exactly-once Kafka sinks, each a table and one INSERT in the job's statement set. Each table
    has its own transactional id prefix, so one table takes one INSERT: union the rows of several sources."""

    def __init__(self, t_env: TableEnvironment, bootstrap: str, deployment: str) -> None:
        self.t_env = t_env
        self.bootstrap = bootstrap
        self.deployment = deployment
        self.statements = t_env.create_statement_set()

    def rows(self, name: str, contract: Contract, select: str, *names: str, **types: str) -> None:
        """A sink of JSON rows for the loader to insert into the contract's table: the select's columns are the
        named ones of the contract (all of them when none are named), in that order."""
        self._add(name, topics.clickhouse_topic(contract.table), select, contract.sql(*names, **types), "json")

    def records(self, name: str, topic: str, select: str) -> None:
        """A sink of records made whole in Python (one STRING column written as is)."""
        self._add(name, topic, select, "record STRING", "raw")

    def _add(self, name: str, topic: str, select: str, columns: str, fmt: str) -> None:
        self.t_env.execute_sql(kafka_sink_ddl(name, topic, self.bootstrap, columns, self.deployment, fmt))
        self.statements.add_insert_sql(f"INSERT INTO {name} {select}")
