"""benchmarks/bench_history.py on a small volume: the same generation and the same queries (every dashboard panel and
variable, role summary, API endpoint and the monthly report) run against the dev ClickHouse as the read-only user,
and every one must answer. Nothing is timed here: the figures come from the benchmark itself.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Iterator

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from benchmarks import bench_history as bench
from dev import grafana_sql
from tests.conftest import DevClickHouse

DATABASE = "bench_history_test"
SMALL = bench.Volume(users=24, keys=40, nodes=4, events_per_s=2, months=2, minute_days=1, tensec_hours=1, ingest_days=2)
NOW = datetime.now(timezone.utc).replace(minute=17, second=0, microsecond=0)


@pytest.fixture(scope="module")
def writer(clickhouse_dev: DevClickHouse) -> Iterator[Client]:
    client = clickhouse_connect.get_client(dsn=clickhouse_dev.writer, send_receive_timeout=600)
    bench.prepare(client, DATABASE, SMALL, NOW, say=lambda _: None)
    yield client
    client.command(f"DROP DATABASE IF EXISTS {DATABASE}")
    client.close()


@pytest.fixture(scope="module")
def reader(writer: Client, clickhouse_dev: DevClickHouse) -> Iterator[Client]:
    client = clickhouse_connect.get_client(dsn=clickhouse_dev.reader, database=DATABASE)
    yield client
    client.close()


def test_the_generated_history_fills_every_table_the_queries_read(writer: Client) -> None:
    rows = dict(writer.query(f"SELECT table, sum(rows) FROM system.parts WHERE database = '{DATABASE}' AND active "
                             "GROUP BY table").result_rows)
    for table in ("usage_10s", "usage_1m", "usage_1h", "usage_1d", "task_facts", "audit_log", "audit_decisions_1h",
                  "dlq_events", "ingest_stats_10s", "costs_1h", "costs_1d", "price_periods"):
        assert rows.get(table, 0) > 0, table
    # two months of days priced, each with the catalogue version it used
    days = writer.query(f"SELECT uniqExact(toDate(window_start)), min(catalogue_version) FROM {DATABASE}.costs_1d")
    assert days.result_rows[0][0] >= SMALL.days and days.result_rows[0][1] == 1


def test_every_panel_summary_api_and_report_query_answers_as_the_reader(reader: Client) -> None:
    timings = bench.run_all(reader, DATABASE, SMALL, [("30d", timedelta(days=30)), ("6h", timedelta(hours=6))], NOW,
                            runs=1, server_pid=None, settings={"max_execution_time": 120}, say=lambda _: None)
    failed = [(t.range_name, t.query.name, t.error) for t in timings if t.error]
    assert not failed
    targets = sum(1 for path in bench.DASHBOARDS for panel in grafana_sql.panels(json.loads(path.read_text()))
                  for target in panel.get("targets", []) if target.get("rawSql"))
    per_range = [t for t in timings if t.range_name == "30d"]
    groups = {g: sum(1 for t in per_range if t.query.group == g) for g in ("panel", "summary", "api", "report")}
    assert groups["panel"] == targets and groups["summary"] == 4 and groups["report"] == 1
    assert groups["api"] >= len(bench.API_CALLS)  # every endpoint sent at least one query
    # rows come back where the small history has them: the chargeback and the FD summary are not empty
    report = next(t.query for t in per_range if t.query.group == "report")
    assert reader.query(report.sql, parameters=report.params).result_rows
    fd = next(t.query for t in per_range if t.query.name.startswith("Financial Director"))
    assert reader.query(fd.sql, parameters=fd.params).result_rows
    assert all(t.rows_read >= 0 for t in timings)
