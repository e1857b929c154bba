"""Priced cost tables (costs_1h / costs_1d, telemetry.costs) and the span views against the dev ClickHouse.

The tables must hold exactly what the live view cost_usage_1h computes, per row and to the last decimal, after
usage arrives, after a new catalogue version loads, and summed over any range through cost_span; usage_span must
equal usage_10s over any range. Ranges and rows come from a seeded generator.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from telemetry import costs
from tests.support.databases import migrated_database
from tests.telemetry.test_cost_model import catalogue_file, price
from telemetry.prices import load, read_catalogue

# Recent (the tables' TTL), starting a few minutes before midnight so usage spans two UTC days.
DAY0 = (datetime.now(timezone.utc) - timedelta(days=5)).replace(hour=0, minute=0, second=0, microsecond=0)
T0 = DAY0 - timedelta(minutes=50)
KEY = ["tenant_id", "department_id", "project_id", "user_id", "model", "model_version", "checkpoint_id"]
COST_COLUMNS = ["requests", "tokens_in", "tokens_out", "gpu_seconds", "cpu_seconds", "loads", "load_bytes",
                "load_transfer_bytes", "token_cost", "gpu_cost", "cpu_cost", "load_cost", "total_cost", "wkf_credits",
                "kuber_credits"]
USAGE_COLUMNS = ["window_start", "tenant_id", "department_id", "project_id", "user_id", "model", "model_version",
                 "checkpoint_id", "checkpoint_version", "requests", "tokens_in", "tokens_out", "wkf_gpu_seconds",
                 "kuber_gpu_seconds", "wkf_cpu_seconds", "kuber_cpu_seconds", "loads", "load_cache_hits", "load_bytes",
                 "credits"]


@pytest.fixture(scope="module")
def client(clickhouse_server: str) -> Iterator[Client]:
    c = clickhouse_connect.get_client(dsn=clickhouse_server)
    yield c
    c.close()


@pytest.fixture
def database(client: Client) -> Iterator[str]:
    with migrated_database(client, "costs") as name:
        yield name


def usage_rows(seed: int, n: int, start: datetime, span_s: int) -> list[list[Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        at = start + timedelta(seconds=rng.randrange(0, span_s, 10))
        model = rng.choice(["m1", "m2", "m3"])
        rows.append([at, rng.choice(["t1", "t2"]), rng.choice(["d1", "d2"]), rng.choice(["p1", "p2", "p3"]),
                     rng.choice(["alice", "bob", "carol"]), model, "v1", rng.choice(["", "ck1"]), "1",
                     rng.randrange(0, 5), rng.randrange(0, 5000), rng.randrange(0, 3000),
                     Decimal(rng.randrange(0, 10**9)) / 10**6, Decimal(rng.randrange(0, 10**9)) / 10**6,
                     Decimal(rng.randrange(0, 10**8)) / 10**6, Decimal(0), rng.randrange(0, 3), 0,
                     rng.randrange(0, 3) * 1_000_000_007, Decimal(rng.randrange(0, 10**7)) / 10**6])
    return rows


def insert_usage(client: Client, database: str, rows: list[list[Any]]) -> None:
    client.insert(f"{database}.usage_10s", rows, column_names=USAGE_COLUMNS)


def load_prices(client: Client, database: str, tmp_path: Path, rows: list[dict[str, Any]], version: int) -> list[str]:
    said: list[str] = []
    load(client, database, read_catalogue(catalogue_file(tmp_path, rows, version)), say=said.append)
    return said


def table_rows(client: Client, sql: str) -> list[tuple[Any, ...]]:
    return sorted(client.query(sql).result_rows)


def view_vs_table(client: Client, database: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    cols = ", ".join(KEY + COST_COLUMNS + ["unpriced"])
    view = table_rows(client, f"SELECT hour, {cols} FROM {database}.cost_usage_1h")
    table = table_rows(client, f"SELECT window_start, {cols} FROM {database}.costs_1h")
    return view, table


def test_costs_tables_hold_the_live_view_exactly_and_follow_usage_and_new_catalogue_versions(
        client: Client, database: str, tmp_path: Path) -> None:
    v1 = [price("tokens_in_1k", "*", 0.001), price("tokens_in_1k", "m1", 0.002), price("tokens_out_1k", "m1", 0.004),
          price("gpu_hour", "*", 2.123456789012), price("cpu_hour", "*", 0.06), price("transfer_gb", "*", 0.02)]
    insert_usage(client, database, usage_rows(1, 400, T0, 3 * 3600))
    said = load_prices(client, database, tmp_path, v1, version=1)
    assert "catalogue version 1 covers 2 day(s) with usage: pricing them again" in said
    view, table = view_vs_table(client, database)
    assert view and table == view
    assert set(client.query(f"SELECT DISTINCT catalogue_version FROM {database}.costs_1h").result_rows) == {(1,)}

    # a day's costs_1d rows are its hours summed, exactly
    day_sql = ("SELECT toDate(hour), {key}, sum(total_cost), sum(token_cost), sum(gpu_seconds) FROM {db}.cost_usage_1h "
               "GROUP BY toDate(hour), {key}")
    assert table_rows(client, day_sql.format(key=", ".join(KEY), db=database)) == table_rows(client, (
        f"SELECT toDate(window_start), {', '.join(KEY)}, total_cost, token_cost, gpu_seconds FROM {database}.costs_1d"))

    # a new version from the second day on re-prices that day only; the first keeps version 1's rows
    day1 = DAY0.date()
    said = load_prices(client, database, tmp_path, [price("gpu_hour", "*", 3.5, valid_from=DAY0)], version=2)
    assert "catalogue version 2 covers 1 day(s) with usage: pricing them again" in said
    view, table = view_vs_table(client, database)
    assert table == view
    versions = dict(client.query(f"SELECT toDate(window_start) AS day, max(catalogue_version) FROM {database}.costs_1h "
                                 "GROUP BY day").result_rows)
    assert versions == {day1 - timedelta(days=1): 1, day1: 2}

    # late usage for the first day: the refresher finds the day noted by the materialized view and prices it
    insert_usage(client, database, usage_rows(2, 50, T0, 600))
    assert view_vs_table(client, database)[1] != view_vs_table(client, database)[0]
    result = costs.refresh(client, database, say=lambda _: None)
    assert day1 - timedelta(days=1) in result.days and result.catalogue_version == 2
    view, table = view_vs_table(client, database)
    assert table == view
    # nothing new: the next run prices only what the overlap window takes again, and changes nothing
    costs.refresh(client, database, say=lambda _: None)
    assert view_vs_table(client, database)[1] == view


def test_cost_span_sums_equal_the_live_view_over_any_range(client: Client, database: str, tmp_path: Path) -> None:
    insert_usage(client, database, usage_rows(3, 300, DAY0 - timedelta(days=1, hours=3), 3 * 86400))
    load_prices(client, database, tmp_path, [price("tokens_in_1k", "*", 0.001), price("gpu_hour", "*", 1.75)], 1)
    rng = random.Random(4)
    start = int((DAY0 - timedelta(days=2)).timestamp())
    for _ in range(12):
        lo = start + rng.randrange(0, 4 * 86400 // 3600) * 3600
        hi = lo + rng.randrange(1, 3 * 86400 // 3600) * 3600
        step = rng.choice([3600, 86400])
        params = {"lo": datetime.fromtimestamp(lo, timezone.utc), "hi": datetime.fromtimestamp(hi, timezone.utc)}
        want = client.query(f"SELECT department_id, sum(total_cost), sum(tokens_in) FROM {database}.cost_usage_1h "
                            "WHERE hour >= {lo:DateTime('UTC')} AND hour < {hi:DateTime('UTC')} GROUP BY department_id "
                            "ORDER BY department_id", parameters=params).result_rows
        got = client.query(f"SELECT department_id, sum(total_cost), sum(tokens_in) FROM {database}.cost_span("
                           "lo = {lo:DateTime('UTC')}, hi = {hi:DateTime('UTC')}, step = {step:UInt32}) "
                           "GROUP BY department_id ORDER BY department_id",
                           parameters={**params, "step": step}).result_rows
        assert got == want, (params, step)


def test_usage_span_equals_usage_10s_over_any_range_and_step(client: Client, database: str) -> None:
    insert_usage(client, database, usage_rows(5, 600, DAY0 - timedelta(days=1, minutes=7), 2 * 86400 + 3600))
    rng = random.Random(6)
    start = int((DAY0 - timedelta(days=1, hours=1)).timestamp())
    for _ in range(20):
        lo = start + rng.randrange(0, 2 * 86400 // 10) * 10
        hi = lo + rng.randrange(1, 2 * 86400 // 10) * 10
        step = rng.choice([10, 60, 300, 3600, 7200, 86400])
        params = {"lo": datetime.fromtimestamp(lo, timezone.utc), "hi": datetime.fromtimestamp(hi, timezone.utc),
                  "step": step}
        want = client.query(
            f"SELECT toStartOfInterval(window_start, INTERVAL {step} SECOND) AS b, sum(requests), sum(tokens_in), "
            f"sum(credits) FROM {database}.usage_10s WHERE window_start >= {{lo:DateTime('UTC')}} AND window_start < "
            "{hi:DateTime('UTC')} GROUP BY b ORDER BY b", parameters=params).result_rows
        got = client.query(
            f"SELECT toStartOfInterval(window_start, INTERVAL {step} SECOND) AS b, sum(requests), sum(tokens_in), "
            f"sum(credits) FROM {database}.usage_span(lo = {{lo:DateTime('UTC')}}, hi = {{hi:DateTime('UTC')}}, "
            "step = {step:UInt32}) GROUP BY b ORDER BY b", parameters=params).result_rows
        assert got == want, params
    # whole days come from usage_1d: the span reads fewer rows than usage_10s holds for the range
    params = {"lo": DAY0 - timedelta(days=1), "hi": DAY0 + timedelta(days=1), "step": 86400}
    read = client.query(f"SELECT sum(requests) FROM {database}.usage_span(lo = {{lo:DateTime('UTC')}}, hi = "
                        "{hi:DateTime('UTC')}, step = {step:UInt32})", parameters=params).summary["read_rows"]
    assert int(read) < 600


def test_refresh_all_prices_every_day_with_usage(client: Client, database: str, tmp_path: Path) -> None:
    insert_usage(client, database, usage_rows(7, 100, T0, 3600))
    load_prices(client, database, tmp_path, [price("tokens_in_1k", "*", 0.001)], 1)
    client.command(f"TRUNCATE TABLE {database}.costs_1h")
    assert client.command(f"SELECT count() FROM {database}.costs_1h") == 0
    result = costs.refresh(client, database, all_days=True, say=lambda _: None)
    assert result.days == [(T0).date(), DAY0.date()] and result.rows > 0
    view, table = view_vs_table(client, database)
    assert table == view


FACT_COLUMNS = ["task_id", "attempt", "status", "tenant_id", "department_id", "project_id", "user_id", "base_model",
                "model_version", "checkpoint_id", "node_id", "host_name", "vm_type", "queued_at", "started_at",
                "finished_at", "checkpoint_load_ms", "gpu_seconds", "cpu_seconds", "version"]


def task_fact_rows(rng: random.Random, n: int, start: datetime, span_s: int, prefix: str = "task") -> list[list[Any]]:
    """Attempts on six nodes (three of a priced VM type, three of none), up to 3 hours long, some never started."""
    facts = []
    for i in range(n):
        node = f"n{rng.randrange(6)}"
        queued = start + timedelta(seconds=rng.randrange(0, span_s))
        started = None if rng.random() < 0.1 else queued + timedelta(seconds=rng.randrange(0, 300))
        finished = (started or queued) + timedelta(seconds=rng.randrange(1, 3 * 3600))
        facts.append([f"{prefix}-{i}", 1, rng.choice(["finished", "failed"]), rng.choice(["t1", "t2"]), "d1", "p1",
                      "alice", "m1", "v1", "ck1", node, f"host-{node}",
                      {"n0": "NV6", "n1": "NV6", "n2": "NC24"}.get(node, ""), queued, started, finished, 1000,
                      rng.random() * 3600, rng.random() * 7200, 1])
    return facts


def test_vm_cost_spans_equal_the_whole_history_views_over_any_range(client: Client, database: str, tmp_path: Path) -> None:
    rng = random.Random(8)
    start = DAY0 - timedelta(days=1)
    client.insert(f"{database}.task_facts", task_fact_rows(rng, 160, start, 2 * 86400), column_names=FACT_COLUMNS)
    load_prices(client, database, tmp_path, [price("vm_hour", "NV6", 1.2), price("vm_hour", "*", 0.7),
                                             price("gpu_hour", "*", 2.5), price("cpu_hour", "*", 0.05)], 1)
    for _ in range(8):
        lo = start + timedelta(hours=rng.randrange(0, 40))
        hi = lo + timedelta(hours=rng.randrange(1, 30))
        params = {"lo": lo, "hi": hi}
        span = "(lo = {lo:DateTime('UTC')}, hi = {hi:DateTime('UTC')})"
        task_cols = "task_id, attempt, vm_type, vm_cost, gpu_cost, cpu_cost, total_cost, cost_basis, unpriced"
        want = client.query(f"SELECT {task_cols} FROM {database}.cost_tasks WHERE finished_at >= {{lo:DateTime('UTC')}} "
                            "AND finished_at < {hi:DateTime('UTC')} ORDER BY task_id", parameters=params).result_rows
        got = client.query(f"SELECT {task_cols} FROM {database}.cost_tasks_span{span} ORDER BY task_id",
                           parameters=params).result_rows
        assert got == want and want, params
        vm_cols = "hour, node_id, vm_type, active_seconds, observed_seconds, idle_seconds, active_cost, idle_cost"
        want = client.query(f"SELECT {vm_cols} FROM {database}.vm_activity_1h WHERE hour >= {{lo:DateTime('UTC')}} "
                            "AND hour < {hi:DateTime('UTC')} ORDER BY hour, node_id", parameters=params).result_rows
        got = client.query(f"SELECT {vm_cols} FROM {database}.vm_activity_span{span} ORDER BY hour, node_id",
                           parameters=params).result_rows
        assert got == want and want, params


TASK_COLUMNS = ("task_id, attempt, status, tenant_id, vm_type, node_id, host_name, started_at, finished_at, duration_s, "
                "checkpoint_load_s, gpu_seconds, cpu_seconds, vm_cost, gpu_cost, cpu_cost, total_cost, cost_basis, unpriced")
VM_COLUMNS = ("hour, node_id, host_name, vm_type, active_seconds, observed_seconds, idle_seconds, vm_hour_price, "
              "active_cost, idle_cost, unpriced")


def vm_tables_vs_spans(client: Client, database: str, rng: random.Random, start: datetime, hours: int) -> None:
    """task_costs_span / vm_costs_span (the tables) equal cost_tasks_span / vm_activity_span (computed at read time)
    over random ranges within [start, start + hours), row by row."""
    span = "(lo = {lo:DateTime('UTC')}, hi = {hi:DateTime('UTC')})"
    compared = 0
    for _ in range(8):
        lo = start + timedelta(seconds=rng.randrange(0, hours * 3600))
        hi = lo + timedelta(seconds=rng.randrange(1, hours * 3600))
        params = {"lo": lo, "hi": hi}
        want = client.query(f"SELECT {TASK_COLUMNS} FROM {database}.cost_tasks_span{span} ORDER BY task_id, attempt",
                            parameters=params).result_rows
        got = client.query(f"SELECT {TASK_COLUMNS} FROM {database}.task_costs_span{span} ORDER BY task_id, attempt",
                           parameters=params).result_rows
        assert got == want, params
        params = {"lo": lo.replace(minute=0, second=0), "hi": hi.replace(minute=0, second=0) + timedelta(hours=1)}
        want = client.query(f"SELECT {VM_COLUMNS} FROM {database}.vm_activity_span{span} ORDER BY hour, node_id",
                            parameters=params).result_rows
        got = client.query(f"SELECT {VM_COLUMNS} FROM {database}.vm_costs_span{span} ORDER BY hour, node_id",
                           parameters=params).result_rows
        assert got == want, params
        compared += len(want)
    assert compared > 0


def test_vm_cost_tables_hold_the_spans_exactly_and_follow_late_facts_and_new_catalogue_versions(
        client: Client, database: str, tmp_path: Path) -> None:
    rng = random.Random(9)
    start = DAY0 - timedelta(days=2)
    client.insert(f"{database}.task_facts", task_fact_rows(rng, 300, start, 3 * 86400), column_names=FACT_COLUMNS)
    said = load_prices(client, database, tmp_path, [price("vm_hour", "NV6", 1.2), price("vm_hour", "NC24", 3.3),
                                                    price("gpu_hour", "*", 2.5), price("cpu_hour", "*", 0.05)], 1)
    assert any("with model runs: pricing them again" in line for line in said), said
    task_rows = client.command(f"SELECT count() FROM {database}.task_costs")
    assert task_rows == 300 and client.command(f"SELECT count() FROM {database}.vm_costs_1h") > 0
    assert client.command(f"SELECT sum(vm_cost) > 0 FROM {database}.task_costs") == 1
    vm_tables_vs_spans(client, database, rng, start, 4 * 24)

    # late facts (new attempts, and a new version of one that ended earlier): noted by the materialized view, so the
    # tables are stale until the refresher runs, then exact again; the usage cost tables are not recomputed
    late = task_fact_rows(rng, 40, DAY0 - timedelta(hours=6), 12 * 3600, prefix="late")
    client.insert(f"{database}.task_facts", late, column_names=FACT_COLUMNS)
    span = {"lo": DAY0 - timedelta(days=3), "hi": DAY0 + timedelta(days=3)}
    count_sql = f"SELECT count() FROM {database}.task_costs_span(lo = {{lo:DateTime('UTC')}}, hi = {{hi:DateTime('UTC')}})"
    assert client.query(count_sql, parameters=span).result_rows[0][0] == 300
    result = costs.refresh(client, database, say=lambda _: None)
    assert DAY0.date() in result.vm_days and result.vm_rows > 0
    assert client.query(count_sql, parameters=span).result_rows[0][0] == 340
    vm_tables_vs_spans(client, database, rng, start, 4 * 24)

    # a new catalogue version from DAY0 on: the days with runs it covers are priced again with it, the earlier keep v1
    said = load_prices(client, database, tmp_path, [price("vm_hour", "NV6", 1.9, valid_from=DAY0)], 2)
    vm_tables_vs_spans(client, database, rng, start, 4 * 24)
    versions = dict(client.query(f"SELECT toDate(finished_at) AS day, max(catalogue_version) FROM {database}.task_costs "
                                 "GROUP BY day").result_rows)
    assert versions[DAY0.date()] == 2 and versions[(DAY0 - timedelta(days=2)).date()] == 1, versions

    # --all computes the same tables from nothing
    before = table_rows(client, f"SELECT {TASK_COLUMNS} FROM {database}.task_costs")
    client.command(f"TRUNCATE TABLE {database}.task_costs")
    client.command(f"TRUNCATE TABLE {database}.vm_costs_1h")
    costs.refresh(client, database, all_days=True, say=lambda _: None)
    assert table_rows(client, f"SELECT {TASK_COLUMNS} FROM {database}.task_costs") == before


def test_task_facts_inserts_note_the_days_around_them_for_the_vm_tables(client: Client, database: str) -> None:
    client.command(f"TRUNCATE TABLE {database}.cost_dirty_days")
    facts = task_fact_rows(random.Random(10), 1, DAY0 + timedelta(hours=3), 60)
    client.insert(f"{database}.task_facts", facts, column_names=FACT_COLUMNS)
    noted = client.query(f"SELECT day, reason FROM {database}.cost_dirty_days ORDER BY day").result_rows
    d = DAY0.date()
    assert noted == [(d + timedelta(days=k), "tasks") for k in (-2, -1, 0, 1)]
    usage, vm, _ = costs.dirty_days(client, database)
    assert usage == [] and vm == [d + timedelta(days=k) for k in (-2, -1, 0, 1)]


PHASES = ["queue_ms", "checkpoint_load_ms", "init_ms", "inference_ms", "total_ms"]


def test_task_span_equals_task_facts_final_over_any_range(client: Client, database: str) -> None:
    """task_span (whole days from task_facts_1d, the edges from the facts) sums to what task_facts FINAL counts, with
    corrected attempts (a higher version) and unknown phases among them."""
    rng = random.Random(11)
    start = DAY0 - timedelta(days=2, hours=5)
    columns = FACT_COLUMNS + ["queue_ms", "init_ms", "inference_ms", "total_ms"]
    facts = []
    for row in task_fact_rows(rng, 400, start, 3 * 86400):
        row[1] = rng.choice([1, 1, 2, 3])
        row[16] = None if rng.random() < 0.2 else rng.randrange(0, 90_000)  # checkpoint_load_ms
        facts.append(row + [None if rng.random() < 0.2 else rng.randrange(0, 600_000) for _ in range(4)])
    client.insert(f"{database}.task_facts", facts, column_names=columns)
    corrected = [row[:2] + [rng.choice(["finished", "failed", "orphaned"])] + row[3:19] + [2] + row[20:21]
                 + [rng.randrange(0, 10)] + row[22:] for row in rng.sample(facts, 60)]
    client.insert(f"{database}.task_facts", corrected, column_names=columns)
    result = costs.refresh(client, database, all_days=True, say=lambda _: None)
    assert len(result.vm_days) >= 4
    assert client.command(f"SELECT count() FROM {database}.task_facts_1d") > 0

    keys = "tenant_id, user_id, base_model, checkpoint_id, status"
    means = ", ".join(f"avg({p})" for p in PHASES)  # NULL where no value is known, as the panels' means
    sums = ", ".join(f"sum({p}_sum) / nullIf(sum({p}_count), 0)" for p in PHASES)
    span = "(lo = {lo:DateTime('UTC')}, hi = {hi:DateTime('UTC')})"
    whole_days = 0
    for n in range(12):
        lo = start + timedelta(seconds=rng.randrange(0, 3 * 86400))
        hi = lo + timedelta(seconds=rng.randrange(1, 3 * 86400)) if n % 3 else lo + timedelta(days=2)
        params = {"lo": lo, "hi": hi}
        want = client.query(f"SELECT {keys}, count(), countIf(attempt > 1), {means} FROM {database}.task_facts FINAL "
                            "WHERE finished_at >= {lo:DateTime('UTC')} AND finished_at < {hi:DateTime('UTC')} "
                            f"GROUP BY {keys} ORDER BY {keys}", parameters=params).result_rows
        got = client.query(f"SELECT {keys}, sum(attempt_count), sum(retry_count), {sums} FROM {database}.task_span{span} "
                           f"GROUP BY {keys} ORDER BY {keys}", parameters=params).result_rows
        assert got == want and want, params
        whole_days += hi - lo >= timedelta(days=2)
    assert whole_days >= 4  # ranges that hold a whole day, which task_span reads from task_facts_1d


def test_the_service_touches_its_alive_file_at_each_run_of_days_it_prices(
        database: str, clickhouse_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh of many days outlasts a liveness probe: each priced run of days counts as a sign of life."""
    url = urlparse(clickhouse_server)
    monkeypatch.setenv("CLICKHOUSE_URL", clickhouse_server)
    monkeypatch.setenv("CLICKHOUSE_USER", url.username or "default")
    monkeypatch.delenv("CLICKHOUSE_PASSWORD", raising=False)
    alive = tmp_path / "alive"
    touches: list[float] = []
    real_touch = Path.touch

    def touch(self: Path, *args: Any, **kwargs: Any) -> None:
        if self == alive:
            touches.append(time.monotonic())
        real_touch(self, *args, **kwargs)

    monkeypatch.setattr(Path, "touch", touch)
    days = [(DAY0 - timedelta(days=k)).date().isoformat() for k in (0, 2, 4)]  # three runs of one day
    argv = ["--database", database, "refresh", "--alive-file", str(alive)] + [f"--day={d}" for d in days]
    assert costs.main(argv) == 0
    # a line per run of usage days and per run of VM days, then the refresh's own
    assert alive.exists() and len(touches) == 3 + 3 + 1, touches
