"""The row contracts (pipeline/rows.py) against the tables the migrations make, on the dev ClickHouse engine: every
column a contract declares exists with a compatible type, every column the table needs is declared, and the rows
Python writes (DLQ records, task facts, task usage deltas) carry exactly their contract's columns."""

from __future__ import annotations

import re
from typing import Iterator

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from pipeline import facts, routing, rows
from pipeline.lifecycle import FACT_COLUMNS
from telemetry import topics
from tests.support.databases import migrated_database

# The ClickHouse types a Flink SQL type's JSON may be inserted into.
_COMPATIBLE = {
    "STRING": r"(LowCardinality\()?(Nullable\()?(String|UUID|DateTime64\(3.*|Enum8.*)\)*",
    "BIGINT": r"(Nullable\()?(U?Int(8|16|32|64)|DateTime\('UTC'\))\)?",
    "INT": r"(Nullable\()?U?Int(8|16|32|64)\)?",
    "DOUBLE": r"(Nullable\()?Float(32|64)\)?",
    "DECIMAL(38, 6)": r"Decimal\(38, 6\)",
    "MAP<STRING, BIGINT>": r"Map\((String|UInt16), U?Int64\)",
}


@pytest.fixture(scope="module")
def tables(clickhouse_server: str) -> Iterator[dict[str, dict[str, tuple[str, bool]]]]:
    """table -> column -> (type with any SimpleAggregateFunction unwrapped, has a default)."""
    client: Client = clickhouse_connect.get_client(dsn=clickhouse_server)
    try:
        with migrated_database(client, "rows") as name:
            found: dict[str, dict[str, tuple[str, bool]]] = {}
            for table, column, kind, default_kind in client.query(
                    "SELECT table, name, type, default_kind FROM system.columns WHERE database = {db:String} "
                    "AND default_kind NOT IN ('MATERIALIZED', 'ALIAS', 'EPHEMERAL')", parameters={"db": name}
            ).result_rows:
                plain = re.sub(r"^SimpleAggregateFunction\(\w+, (.*)\)$", r"\1", kind)
                found.setdefault(table, {})[column] = (plain, bool(default_kind))
            yield found
    finally:
        client.close()


@pytest.mark.parametrize("contract", rows.CONTRACTS, ids=lambda c: c.table)
def test_each_contract_matches_its_table(contract: rows.Contract, tables) -> None:
    table = tables[contract.table]
    missing = [n for n in contract.names if n not in table]
    assert not missing, f"{contract.table} has no column {missing}"
    for name, flink_type in contract.columns:
        assert re.fullmatch(_COMPATIBLE[flink_type], table[name][0]), (contract.table, name, flink_type, table[name])
    undeclared = [n for n, (_, has_default) in table.items() if n not in contract.names and not has_default]
    assert not undeclared, f"{contract.table} needs {undeclared}, which the contract does not declare"


def test_each_contract_has_the_loader_topic_of_its_table() -> None:
    assert {topics.clickhouse_topic(c.table) for c in rows.CONTRACTS} == set(topics.LOADER_TOPICS)


def test_a_dlq_record_carries_exactly_its_contract() -> None:
    record = routing.dlq_record("xumi_task", 1, 2, 3, b"{", routing.Rejected("invalid_json", "x"), "v", 4)
    assert tuple(record) == rows.DLQ.names


def test_task_rows_carry_exactly_their_contract() -> None:
    fact = {name: (1 if kind is int else 0.5 if kind is float else "x") for name, kind in FACT_COLUMNS}
    fact.update(status="finished", late=0, finished_at=1_767_225_600_000)
    assert tuple(facts.task_fact_row(fact)) == rows.TASKS.names
    delta = facts.task_usage_delta(fact)
    assert delta is not None and set(delta) <= set(rows.USAGE.names)


def test_a_contract_refuses_a_column_it_does_not_have() -> None:
    with pytest.raises(KeyError, match="late_events has no column nope"):
        rows.LATE.sql("event_id", "nope")
