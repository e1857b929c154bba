"""The cost model against the dev ClickHouse: price catalogue versions, the cost views, and the catalogue loader.

Every expected cost is worked out by hand in the test; the facts are inserted directly, as the loader would. Costs
are exact decimals: equal to the hand-worked value, or within 10^-9 where a share divides by 3.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from telemetry.prices import COLUMNS, OPEN_END, CatalogueError, load, read_catalogue
from telemetry.settings import REPO_ROOT
from tests.support.databases import migrated_database

# Recent, whole hour: the fact tables' 12-month TTL would drop older rows, and prices change on whole hours.
T0 = (datetime.now(timezone.utc) - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
LONG_AGO = T0 - timedelta(days=30)
EXAMPLES = REPO_ROOT / "sql" / "clickhouse" / "prices"


def at(hours: float = 0, minutes: float = 0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes)


def naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None)  # how clickhouse-connect returns UTC times


D = Decimal


class Near:
    """Equal to a Decimal within 10^-9 of the expected value (a share of a third); a float is never equal."""

    def __init__(self, expected: Decimal) -> None:
        self.expected = expected

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Decimal) and abs(other - self.expected) <= D("1e-9")

    def __repr__(self) -> str:
        return f"Near({self.expected})"


@pytest.fixture(scope="module")
def client(clickhouse_server: str) -> Iterator[Client]:
    c = clickhouse_connect.get_client(dsn=clickhouse_server)
    yield c
    c.close()


@pytest.fixture(scope="module")
def database(client: Client) -> Iterator[str]:
    with migrated_database(client, "cost") as name:
        yield name


@pytest.fixture(autouse=True)
def empty(client: Client, database: str) -> None:
    for table in ("price_catalogue", "task_facts", "usage_10s", "usage_1m", "usage_1h", "usage_1d"):
        client.command(f"TRUNCATE TABLE {database}.{table}")


def catalogue_file(directory: Path, rows: list[dict[str, Any]], version: int | None = None, name: str | None = None) -> Path:
    """A YAML catalogue: one flow mapping per line, so row n is on line n + 2 (after version and 'prices:')."""
    path = directory / (name or f"prices-{uuid.uuid4().hex[:6]}.yaml")
    lines = [f"version: {version}" if version is not None else "# no version", "prices:"]
    lines += ["  - {" + ", ".join(f"{k}: {_yaml(v)}" for k, v in row.items()) + "}" for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _yaml(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f'"{value}"' if value == "*" else str(value)


def price(kind: str, item: str, unit_price: float, valid_from: datetime = LONG_AGO, valid_to: datetime | None = None,
          currency: str = "USD") -> dict[str, Any]:
    row: dict[str, Any] = {"kind": kind, "item": item, "unit_price": unit_price, "currency": currency, "valid_from": valid_from}
    if valid_to is not None:
        row["valid_to"] = valid_to
    return row


def load_rows(client: Client, database: str, tmp_path: Path, rows: list[dict[str, Any]], version: int) -> None:
    load(client, database, read_catalogue(catalogue_file(tmp_path, rows, version)), say=lambda _: None)


FACT_COLUMNS = ["task_id", "attempt", "status", "tenant_id", "department_id", "project_id", "user_id", "base_model",
                "model_version", "checkpoint_id", "node_id", "host_name", "vm_type", "queued_at", "started_at",
                "finished_at", "checkpoint_load_ms", "gpu_seconds", "cpu_seconds", "version"]


def fact(task_id: str, node: str, vm_type: str, started: datetime | None, finished: datetime, queued: datetime | None = None,
         status: str = "finished", gpu_seconds: float = 0.0, cpu_seconds: float = 0.0, attempt: int = 1) -> list[Any]:
    return [task_id, attempt, status, "t1", "d1", "p1", "alice", "xumi-base-7b", "2026.01", "ck1", node, f"host-{node}",
            vm_type, queued or started, started, finished, 1500, gpu_seconds, cpu_seconds, 1]


def insert_facts(client: Client, database: str, rows: list[list[Any]]) -> None:
    client.insert(f"{database}.task_facts", rows, column_names=FACT_COLUMNS)


def task_costs(client: Client, database: str) -> dict[str, tuple[Any, ...]]:
    rows = client.query(
        f"SELECT task_id, vm_cost, gpu_cost, cpu_cost, total_cost, cost_basis, unpriced FROM {database}.cost_tasks"
    ).result_rows
    return {row[0]: row[1:] for row in rows}


# --- prices in force and re-pricing --------------------------------------------------------------------------


def test_a_new_version_reprices_history_and_the_newest_version_wins_overlaps(client: Client, database: str, tmp_path: Path) -> None:
    # One attempt: 2 h on an NV6, T0 .. T0 + 2 h
    insert_facts(client, database, [fact("run", "n1", "NV6", at(0), at(2))])

    load_rows(client, database, tmp_path, [price("vm_hour", "NV6", 0.9)], version=1)
    assert task_costs(client, database)["run"][0] == D("1.8")

    # Version 2 raises the price from T0 + 1 h: the same fact, re-priced at once: 1 h at 0.9, 1 h at 1.1
    load_rows(client, database, tmp_path, [price("vm_hour", "NV6", 1.1, valid_from=at(1))], version=2)
    assert task_costs(client, database)["run"][0] == D("2.0")
    activity = client.query(f"SELECT hour, active_seconds, vm_hour_price, active_cost FROM {database}.vm_activity_1h ORDER BY hour").result_rows
    assert activity == [(naive(at(0)), 3600.0, D("0.9"), D("0.9")), (naive(at(1)), 3600.0, D("1.1"), D("1.1"))]

    # Version 3 corrects T0 - 1 h .. T0 + 1 h retroactively to 1.0; it overrides version 1 there and only there
    load_rows(client, database, tmp_path, [price("vm_hour", "NV6", 1.0, valid_from=at(-1), valid_to=at(1))], version=3)
    assert task_costs(client, database)["run"][0] == D("2.1")
    in_force = client.query(
        f"SELECT valid_from, valid_to, unit_price, version FROM {database}.price_in_force WHERE kind = 'vm_hour' ORDER BY valid_from"
    ).result_rows
    assert in_force == [
        (naive(LONG_AGO), naive(at(-1)), D("0.9"), 1),
        (naive(at(-1)), naive(at(1)), D("1.0"), 3),
        (naive(at(1)), naive(OPEN_END), D("1.1"), 2),
    ]
    # The catalogue keeps every version whole: nothing was rewritten
    assert client.command(f"SELECT count() FROM {database}.price_catalogue") == 3


def test_price_in_force_merges_stretches_of_one_price_and_leaves_gaps_unpriced(client: Client, database: str, tmp_path: Path) -> None:
    # Version 1: NV6 0.5 until T0 + 1, then 0.6 in two rows; NC6s_v3 only from T0 to T0 + 5.
    # Version 2: NV6 0.7 over T0 .. T0 + 2, which cuts across version 1's bound at T0 + 1.
    load_rows(client, database, tmp_path, [
        price("vm_hour", "NV6", 0.5, valid_to=at(1)), price("vm_hour", "NV6", 0.6, valid_from=at(1), valid_to=at(3)),
        price("vm_hour", "NV6", 0.6, valid_from=at(3)), price("vm_hour", "NC6s_v3", 3.0, valid_from=at(0), valid_to=at(5)),
    ], version=1)
    load_rows(client, database, tmp_path, [price("vm_hour", "NV6", 0.7, valid_from=at(0), valid_to=at(2))], version=2)
    rows = client.query(
        f"SELECT item, valid_from, valid_to, unit_price, version FROM {database}.price_in_force ORDER BY item, valid_from"
    ).result_rows
    assert rows == [
        ("NC6s_v3", naive(at(0)), naive(at(5)), D("3.0"), 1),
        ("NV6", naive(LONG_AGO), naive(at(0)), D("0.5"), 1),
        ("NV6", naive(at(0)), naive(at(2)), D("0.7"), 2),  # one period, though version 1 has a bound inside it
        ("NV6", naive(at(2)), naive(OPEN_END), D("0.6"), 1),  # version 1's two rows at 0.6, merged
    ]
    # an attempt on NC6s_v3 before its first price has none
    insert_facts(client, database, [fact("early", "n9", "NC6s_v3", at(-2), at(-1))])
    assert task_costs(client, database)["early"] == (D(0), D(0), D(0), D(0), "unpriced", ["vm_hour:NC6s_v3"])


# --- the views -------------------------------------------------------------------------------------------------


def test_cost_usage_1h_prices_each_hour_with_the_prices_in_force(client: Client, database: str, tmp_path: Path) -> None:
    load_rows(client, database, tmp_path, [
        price("tokens_in_1k", "*", 0.001), price("tokens_in_1k", "m1", 0.002), price("tokens_out_1k", "m1", 0.004),
        price("gpu_hour", "*", 2.0), price("cpu_hour", "*", 0.06), price("transfer_gb", "*", 0.02),
    ], version=1)
    load_rows(client, database, tmp_path, [price("gpu_hour", "*", 3.0, valid_from=at(1))], version=2)
    columns = ["window_start", "tenant_id", "department_id", "project_id", "user_id", "model", "model_version", "checkpoint_id",
               "checkpoint_version", "requests", "tokens_in", "tokens_out", "wkf_gpu_seconds", "kuber_gpu_seconds",
               "wkf_cpu_seconds", "kuber_cpu_seconds", "loads", "load_cache_hits", "load_bytes", "audit_events"]

    def usage(seconds: int, model: str, ckpt: str, ckpt_version: str, **metrics: float) -> list[Any]:
        dims = [T0 + timedelta(seconds=seconds), "t1", "d1", "p1", "alice", model, "v1", ckpt, ckpt_version]
        return dims + [metrics.get(c, 0) for c in columns[len(dims):]]

    client.insert(f"{database}.usage_10s", [
        usage(10, "m1", "ck1", "1", requests=3, tokens_in=1500, tokens_out=500),
        # two billing systems report one allocation: the larger counts
        usage(20, "m1", "ck1", "1", wkf_gpu_seconds=1800.0, kuber_gpu_seconds=2700.0, wkf_cpu_seconds=3600.0, kuber_cpu_seconds=1800.0),
        # 4 loads of a 2 GB checkpoint, one from the cache: 6 GB read from storage
        usage(30, "m1", "ck1", "1", loads=4, load_cache_hits=1, load_bytes=8_000_000_000),
        # its version 2 is 1 GB, both loads cached: nothing read (pooled with version 1 it would read as 5 GB)
        usage(40, "m1", "ck1", "2", loads=2, load_cache_hits=2, load_bytes=2_000_000_000),
        # m2 has no token prices of its own: '*' for input, and none for output
        usage(50, "m2", "", "", requests=1, tokens_in=2000, tokens_out=1000),
        usage(60, "m1", "", "", audit_events=5),  # nothing to price: no row
        usage(3600, "m1", "ck1", "1", wkf_gpu_seconds=3600.0),  # the next hour, at version 2's GPU price
    ], column_names=columns)

    rows = client.query(
        f"SELECT hour, model, checkpoint_id, requests, tokens_in, tokens_out, gpu_seconds, cpu_seconds, loads, load_bytes, "
        f"load_transfer_bytes, token_cost, gpu_cost, cpu_cost, load_cost, total_cost, unpriced "
        f"FROM {database}.cost_usage_1h ORDER BY hour, model"
    ).result_rows
    assert rows == [
        (naive(at(0)), "m1", "ck1", 3, 1500, 500, D(2700), D(3600), 6, 10_000_000_000, 6_000_000_000,
         D("1.5") * D("0.002") + D("0.5") * D("0.004"), D("0.75") * 2, 1 * D("0.06"), 6 * D("0.02"),
         D("0.005") + D("1.5") + D("0.06") + D("0.12"), []),
        (naive(at(0)), "m2", "", 1, 2000, 1000, D(0), D(0), 0, 0, 0, 2 * D("0.001"), D(0), D(0), D(0), D("0.002"),
         ["tokens_out_1k:m2"]),
        (naive(at(1)), "m1", "ck1", 0, 0, 0, D(3600), D(0), 0, 0, 0, D(0), D(3), D(0), D(0), D(3), []),
    ]
    assert all(isinstance(v, Decimal) for row in rows for v in row[11:16])  # costs are decimals, not doubles


def test_vm_activity_merges_overlapping_attempts_and_idle_is_observed_minus_active(client: Client, database: str, tmp_path: Path) -> None:
    load_rows(client, database, tmp_path, [price("vm_hour", "NV6", 1.2), price("gpu_hour", "*", 2.0), price("cpu_hour", "*", 0.05)], version=1)
    insert_facts(client, database, [
        # n1 (NV6): A, B and C overlap; D comes after a 25-minute silence (> 15 min: the VM is taken as gone)
        fact("A", "n1", "NV6", at(0, 10), at(0, 40), queued=at(0, 5)),
        fact("B", "n1", "NV6", at(0, 30), at(1, 20)),
        fact("C", "n1", "NV6", at(0, 35), at(0, 45), status="failed"),
        fact("D", "n1", "NV6", at(1, 50), at(2, 0), queued=at(1, 45)),
        # a fact without its VM type is still priced by its node's
        fact("E", "n1", "", None, at(1, 10), queued=at(1, 10), status="failed"),
        # n2's VM type has no price: its attempt is priced by GPU- and CPU-seconds instead
        fact("F", "n2", "ZZ_unknown", at(0), at(1), gpu_seconds=1800.0, cpu_seconds=7200.0),
    ])
    rows = client.query(
        f"SELECT hour, node_id, host_name, vm_type, active_seconds, observed_seconds, idle_seconds, vm_hour_price, "
        f"active_cost, idle_cost, unpriced FROM {database}.vm_activity_1h ORDER BY node_id, hour"
    ).result_rows
    assert rows == [
        # hour 0: active 0:10-1:00 once (not A + B + C = 90 min), observed from A's queued_at 0:05
        (naive(at(0)), "n1", "host-n1", "NV6", 3000.0, 3300.0, 300.0, D("1.2"), D("1.0"), D("0.1"), []),
        # hour 1: B until 1:20, D 1:50-2:00; observed 1:00-1:20 and from D's queued_at 1:45
        (naive(at(1)), "n1", "host-n1", "NV6", 1800.0, 2100.0, 300.0, D("1.2"), D("0.6"), D("0.1"), []),
        (naive(at(0)), "n2", "host-n2", "ZZ_unknown", 3600.0, 3600.0, 0.0, None, D(0), D(0), ["vm_hour:ZZ_unknown"]),
    ]
    costs = task_costs(client, database)
    # Each stretch of VM time split among the attempts running then (1.2 per hour = 0.02 per minute):
    # A alone 20 min, A+B 5, A+B+C 5, B+C 5, B alone 35 min; D alone 10 min
    per_minute = D("1.2") / 60
    expected = {
        "A": per_minute * (20 + D(5) / 2 + D(5) / 3), "B": per_minute * (D(5) / 2 + D(5) / 3 + D(5) / 2 + 35),
        "C": per_minute * (D(5) / 3 + D(5) / 2), "D": per_minute * 10, "E": D(0),
    }
    for task, vm_cost in expected.items():
        assert costs[task] == (Near(vm_cost), D(0), D(0), Near(vm_cost), "vm", []), task
    # ... so the attempts add up to the VM's active cost, and with idle to what the VM cost while observed
    assert sum(costs[task][0] for task in expected) == Near(D("1.0") + D("0.6"))
    assert costs["F"] == (D(0), Near(D("0.5") * 2), Near(2 * D("0.05")), Near(D("1.1")), "resources", ["vm_hour:ZZ_unknown"])
    duration, load_s, vm_type = client.query(
        f"SELECT duration_s, checkpoint_load_s, vm_type FROM {database}.cost_tasks WHERE task_id = 'E'").result_rows[0]
    assert (duration, load_s, vm_type) == (0.0, 1.5, "NV6")


def test_cost_of_failed_and_successful_runs_is_a_group_by(client: Client, database: str, tmp_path: Path) -> None:
    load_rows(client, database, tmp_path, [price("vm_hour", "NV6", 0.9), price("vm_hour", "NC6s_v3", 3.0)], version=1)
    insert_facts(client, database, [
        fact("ok1", "n1", "NV6", at(0), at(1)),
        fact("ok2", "n2", "NC6s_v3", at(0), at(0, 30)),
        fact("bad", "n3", "NV6", at(0), at(0, 20), status="failed"),
        fact("bad", "n3", "NV6", at(0, 30), at(1), attempt=2),
    ])
    rows = client.query(
        f"SELECT status, count(), sum(total_cost) FROM {database}.cost_tasks GROUP BY status ORDER BY status").result_rows
    assert rows == [("failed", 1, D("0.3")), ("finished", 3, D("0.9") + D("1.5") + D("0.45"))]


# --- the loader ------------------------------------------------------------------------------------------------


def test_loading_the_same_catalogue_twice_adds_nothing(client: Client, database: str, tmp_path: Path) -> None:
    said: list[str] = []
    yaml_file, csv_file = EXAMPLES / "example.yaml", EXAMPLES / "example.csv"
    first = load(client, database, read_catalogue(yaml_file), say=said.append)
    rows = client.command(f"SELECT count() FROM {database}.price_catalogue")
    assert (first.version, first.inserted, rows) == (1, len(read_catalogue(yaml_file).prices), first.inserted)
    # again, and its CSV twin: the same version, nothing written
    for path in (yaml_file, csv_file):
        again = load(client, database, read_catalogue(path), say=said.append)
        assert (again.version, again.inserted, again.already_loaded) == (1, 0, True)
    assert client.command(f"SELECT count() FROM {database}.price_catalogue") == rows
    assert said[-1] == f"version 1 is already loaded with these {rows} prices: nothing to do"

    # different prices under a loaded version are refused; without a version they become the next one
    changed = catalogue_file(tmp_path, [price("vm_hour", "NV6", 1.5)], version=1, name="changed.yaml")
    with pytest.raises(CatalogueError, match=r"changed.yaml: version 1 is already loaded with different prices .*\(--version 2\)"):
        load(client, database, read_catalogue(changed), say=said.append)
    unversioned = catalogue_file(tmp_path, [price("vm_hour", "NV6", 1.5)], name="next.yaml")
    assert load(client, database, read_catalogue(unversioned), say=said.append).version == 2
    assert load(client, database, read_catalogue(unversioned), say=said.append).inserted == 0  # found as version 2
    assert client.command(f"SELECT count() FROM {database}.price_catalogue") == rows + 1


def test_a_catalogue_in_another_currency_is_refused(client: Client, database: str, tmp_path: Path) -> None:
    load_rows(client, database, tmp_path, [price("vm_hour", "NV6", 0.9)], version=1)
    euros = catalogue_file(tmp_path, [price("vm_hour", "NV6", 0.8, currency="EUR")], version=2, name="euros.yaml")
    with pytest.raises(CatalogueError, match="euros.yaml: currency EUR differs from the loaded catalogue's USD"):
        load(client, database, read_catalogue(euros), say=lambda _: None)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (price("vm_hours", "NV6", 1.0), r":4: unknown kind 'vm_hours'; known: vm_hour, gpu_hour"),
        (price("vm_hour", "NV6", -0.5), r":4: unit_price -0.5 is negative"),
        ({**price("vm_hour", "NV6", 1.0), "unit_price": "cheap"}, r":4: unit_price 'cheap' is not a number"),
        (price("tokens_in_1k", "*", "0.0000000000001"), r":4: unit_price 1e-13 has more than 12 decimals"),
        (price("vm_hour", "NV6", 1.0, valid_from=at(5), valid_to=at(5)),
         rf":4: valid_to {at(5):%Y-%m-%d %H:%M} is not after valid_from {at(5):%Y-%m-%d %H:%M}"),
        (price("vm_hour", "NV6", 1.0, currency="usd"), r":4: currency 'usd' is not an ISO 4217 code"),
        (price("vm_hour", "NV6", 1.0, valid_from=at(0, 30)), r":4: valid_from \S+ \S+ is not a whole UTC hour"),
        ({**price("vm_hour", "NV6", 1.0), "valid_from": "yesterday"}, r":4: valid_from 'yesterday' is not a date or time"),
        (price("cpu_hour", "NV6", 0.05), r":4: item 'NV6': cpu_hour has one price for everything, item '\*'"),
        ({"kind": "vm_hour", "item": "NV6", "currency": "USD", "valid_from": LONG_AGO}, r":4: unit_price is missing"),
        ({**price("vm_hour", "NV6", 1.0), "colour": "red"}, r":4: unknown field 'colour' \(value 'red'\)"),
    ],
)
def test_a_bad_row_is_refused_naming_file_line_and_value(tmp_path: Path, row: dict[str, Any], message: str) -> None:
    # a good row on line 3, the bad one on line 4
    path = catalogue_file(tmp_path, [price("vm_hour", "D8s_v5", 0.4), row], version=1, name="bad.yaml")
    with pytest.raises(CatalogueError, match=f"bad.yaml{message}"):
        read_catalogue(path)


def test_overlapping_periods_within_a_file_are_refused(tmp_path: Path) -> None:
    path = catalogue_file(tmp_path, [
        price("vm_hour", "NV6", 1.0), price("vm_hour", "NC6s_v3", 3.0), price("vm_hour", "NV6", 1.1, valid_from=at(0)),
    ], version=1, name="overlap.yaml")
    with pytest.raises(CatalogueError, match=rf"overlap.yaml:5: vm_hour NV6 from {at(0):%Y-%m-%d %H:%M} overlaps line 3"):
        read_catalogue(path)


def test_csv_problems_name_the_column_or_row(tmp_path: Path) -> None:
    no_price = tmp_path / "no_price.csv"
    no_price.write_text("kind,item,currency,valid_from\nvm_hour,NV6,USD,2026-01-01\n")
    with pytest.raises(CatalogueError, match="no_price.csv: missing column 'unit_price'"):
        read_catalogue(no_price)
    bad_row = tmp_path / "bad_row.csv"
    bad_row.write_text("kind,item,unit_price,currency,valid_from,valid_to\nvm_hour,NV6,1.1,USD,2026-01-01,\n"
                       "vm_hour,NC6s_v3,-3,USD,2026-01-01,\n")
    with pytest.raises(CatalogueError, match=r"bad_row.csv:3: unit_price '-3' is negative"):
        read_catalogue(bad_row)
    with pytest.raises(CatalogueError, match=r"prices.json: unknown format .json"):
        read_catalogue(tmp_path / "prices.json")


def test_example_catalogue_prices_the_simulated_platform() -> None:
    from dev.simulator.world import _MODEL_CATALOGUE, VM_TYPES

    catalogue = read_catalogue(EXAMPLES / "example.yaml")
    twin = read_catalogue(EXAMPLES / "example.csv")
    assert twin.keys() == catalogue.keys() and twin.version == catalogue.version == 1
    items = {(p.kind, p.item) for p in catalogue.prices}
    assert {("vm_hour", vm.name) for vm in VM_TYPES} <= items
    assert {("tokens_in_1k", name) for name, *_ in _MODEL_CATALOGUE} <= items
    assert {("tokens_out_1k", name) for name, *_ in _MODEL_CATALOGUE} <= items
    assert {("gpu_hour", "*"), ("cpu_hour", "*"), ("transfer_gb", "*")} <= items
    with (EXAMPLES / "example.csv").open() as handle:
        assert next(csv.reader(handle)) == ["version", *COLUMNS]


def test_cli_dry_run_load_and_show(clickhouse_server: str, client: Client, database: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CLICKHOUSE_URL": clickhouse_server, "CLICKHOUSE_DATABASE": database}
        return subprocess.run([sys.executable, "-m", "telemetry.prices", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=120)

    dry = run("load", "sql/clickhouse/prices/example.yaml", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "read sql/clickhouse/prices/example.yaml: 31 prices" in dry.stdout and "dry run: would load 31 prices as version 1" in dry.stdout
    assert client.command(f"SELECT count() FROM {database}.price_catalogue") == 0
    loaded = run("load", "sql/clickhouse/prices/example.csv")
    assert loaded.returncode == 0, loaded.stderr
    assert f"loaded version 1: 31 prices from example.csv into {database}.price_catalogue" in loaded.stdout
    shown = run("show", "--at", at(0).isoformat())
    assert shown.returncode == 0, shown.stderr
    assert any(line.split() == ["vm_hour", "NV6", "1.14", "USD", "2026-01-01", "00:00", "open", "1"] for line in shown.stdout.splitlines())
    again = run("load", "sql/clickhouse/prices/example.yaml", "--version", "1")
    assert again.returncode == 0 and "version 1 is already loaded" in again.stdout
    missing = run("load", "sql/clickhouse/prices/nothing.yaml")
    assert missing.returncode == 1 and "sql/clickhouse/prices/nothing.yaml: no such file" in missing.stderr
