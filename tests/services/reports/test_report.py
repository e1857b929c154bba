"""The chargeback report end to end on the dev ClickHouse engine: usage priced into costs_1h / costs_1d by
telemetry.costs, the report generated from them, its totals checked against an independent SUM over costs_1h to the
cent, byte-identical CSV on a second run, late usage shown as a correction, the PDF rendered to PNG by pdftoppm, and
the CLI's answers for a future and an empty month."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
import pytest
from clickhouse_connect.driver.client import Client

from services.reports import __main__ as cli
from services.reports.chargeback import cents, next_month
from services.reports.store import Store
from telemetry import costs
from tests.support.databases import migrated_database
from tests.telemetry.test_cost_model import fact, insert_facts, price
from tests.telemetry.test_costs import client, insert_usage, load_prices, usage_rows  # noqa: F401 (client: a fixture)

TODAY = datetime.now(timezone.utc)
MONTH = (TODAY.date().replace(day=1) - timedelta(days=1)).replace(day=1)  # last month: closed, within the TTL
NOW = datetime.combine(next_month(MONTH), datetime.min.time(), timezone.utc) + timedelta(days=2)
START = datetime(MONTH.year, MONTH.month, 10, 22, tzinfo=timezone.utc)
# tokens_out of m2 / m3 and tokens_in of m3 have no price: named, never silently 0
PRICES = [price("tokens_in_1k", "m1", 0.002), price("tokens_in_1k", "m2", 0.0015), price("tokens_out_1k", "m1", 0.004),
          price("gpu_hour", "*", 2.123456789012), price("cpu_hour", "*", 0.06), price("transfer_gb", "*", 0.02),
          price("vm_hour", "NV6", 0.9)]


@pytest.fixture
def database(client: Client) -> Iterator[str]:
    with migrated_database(client, "reports") as name:
        yield name


def month_sum(client: Client, database: str, group: str = "") -> dict[tuple[str, ...], Decimal]:
    """SUM(total_cost) over costs_1h (not the costs_1d the report reads), per `group` columns."""
    keys = f"{group}, " if group else ""
    rows = client.query(
        f"SELECT {keys}sum(total_cost) FROM {database}.costs_1h WHERE window_start >= {{lo:DateTime('UTC')}} "
        f"AND window_start < {{hi:DateTime('UTC')}} {'GROUP BY ' + group if group else ''}",
        parameters={"lo": datetime.combine(MONTH, datetime.min.time(), timezone.utc),
                    "hi": datetime.combine(next_month(MONTH), datetime.min.time(), timezone.utc)}).result_rows
    return {tuple(row[:-1]): row[-1] for row in rows}


def read_csv(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def test_month_report_sums_to_the_cent_repeats_byte_for_byte_and_shows_late_corrections(
        client: Client, database: str, tmp_path: Path) -> None:
    insert_usage(client, database, usage_rows(11, 600, START, 2 * 86400))  # 3 UTC days
    insert_usage(client, database, usage_rows(12, 50, START - timedelta(days=40), 3600))  # an earlier month, for history
    # task attempts on one NV6: 2 h finished, 1 h failed, 10 min idle (a silence shorter than the 15 min a node's
    # activity bridges), 30 min finished; and one in the month before
    h, m = timedelta(hours=1), timedelta(minutes=1)
    insert_facts(client, database, [fact("ok", "n1", "NV6", START, START + 2 * h),
                                    fact("bad", "n1", "NV6", START + 2 * h, START + 3 * h, status="failed"),
                                    fact("ok2", "n1", "NV6", START + 3 * h + 10 * m, START + 3 * h + 40 * m),
                                    fact("old", "n1", "NV6", START - 40 * 24 * h, START - 40 * 24 * h + h)])
    load_prices(client, database, tmp_path, PRICES, version=1)
    store = Store.local(str(tmp_path / "out"))
    said: list[str] = []
    first = cli.generate(client, database, MONTH, store, NOW, say=said.append)
    report = first.report

    independent = month_sum(client, database)[()]
    assert report.grand.items["total_cost"] == independent > 0
    assert report.grand.charge * 100 == cents(independent)
    key = f"{MONTH:%Y-%m}"
    rows = read_csv(store.read(key, "chargeback.csv") or b"")
    summary = read_csv(store.read(key, "summary.csv") or b"")
    assert sum(Decimal(r["charge"]) for r in rows) == report.grand.charge
    assert sum(Decimal(r["total_cost"]) for r in rows) == independent
    grand = [s for s in summary if s["level"] == "total"]
    assert len(grand) == 1 and Decimal(grand[0]["charge"]) == report.grand.charge
    by_project = month_sum(client, database, "tenant_id, department_id, project_id")
    for line in summary:
        if line["level"] == "project":
            key3 = (line["tenant_id"], line["department_id"], line["project_id"])
            assert Decimal(line["total_cost"]) == by_project[key3]
            assert Decimal(line["charge"]) == sum(Decimal(r["charge"]) for r in rows if (
                r["tenant_id"], r["department_id"], r["project_id"]) == key3)
        if line["level"] == "department":
            assert Decimal(line["charge"]) == sum(Decimal(s["charge"]) for s in summary if s["level"] == "project" and (
                s["tenant_id"], s["department_id"]) == (line["tenant_id"], line["department_id"]))
    assert {r["model"] for r in rows} == {"m1", "m2", "m3"} and {r["checkpoint_id"] for r in rows} == {"", "ck1"}

    # unpriced usage is named and makes the month provisional; the versions used are listed
    assert set(report.unpriced) == {"tokens_in_1k:m3", "tokens_out_1k:m2", "tokens_out_1k:m3"}
    assert report.provisional and any("no price in the catalogue for tokens_in_1k:m3" in r
                                      for r in report.provisional_reasons)
    manifest = json.loads(store.read(key, "manifest.json") or b"")
    assert manifest["catalogue_versions"] == {"1": 3} and manifest["provisional"] is True
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == __import__("hashlib").sha256(store.read(key, name) or b"").hexdigest()
    assert set(manifest["files"]) == {"chargeback.csv", "summary.csv", "chargeback.parquet", "runs.csv",
                                      "vm_time.csv", "report.html", "report.pdf"}
    # task runs and VM time, apart from the charge: checked against the all-time views of 0006
    runs = {(r["status"], r["attempts"]): Decimal(r["cost"]) for r in read_csv(store.read(key, "runs.csv") or b"")}
    expected_runs = dict(((status, str(n)), cost) for status, n, cost in client.query(
        f"SELECT toString(status), count(), sum(total_cost) FROM {database}.cost_tasks WHERE task_id != 'old' "
        "GROUP BY status").result_rows)
    assert runs == expected_runs and runs[("failed", "1")] == Decimal("0.9")
    [vm] = read_csv(store.read(key, "vm_time.csv") or b"")
    assert (vm["vm_type"], Decimal(vm["active_hours"]), Decimal(vm["idle_hours"])) == ("NV6", Decimal("3.5"),
                                                                                        Decimal("0.166666666667"))
    assert Decimal(vm["idle_cost"]) == Decimal("0.15") and Decimal(vm["active_cost"]) == Decimal("3.15")
    idle_all_time = client.query(f"SELECT sum(idle_cost) FROM {database}.vm_activity_1h WHERE hour >= {{lo:DateTime('UTC')}}",
                                 parameters={"lo": START - h}).result_rows[0][0]
    assert Decimal(vm["idle_cost"]) == idle_all_time
    page = (store.read(key, "report.html") or b"").decode()
    assert page.count("<svg") == 3 and "Provisional" in page and "tokens_out_1k:m3" in page
    assert "Attempts that did not finish: 1, costing 0.90" in page
    assert f"{report.grand.charge:,.2f}" in page

    # the PDF renders
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(store.read(key, "report.pdf") or b"")
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")],
                   check=True, capture_output=True)
    png = next(tmp_path.glob("page*.png"))
    assert png.stat().st_size > 10_000

    # the same month and data: the same CSV bytes, and no correction
    again = cli.generate(client, database, MONTH, Store.local(str(tmp_path / "again")), NOW, pdf=False,
                         say=lambda _: None)
    other = Store.local(str(tmp_path / "again"))
    for name in ("chargeback.csv", "summary.csv"):
        assert other.read(key, name) == store.read(key, name)
    assert again.report.corrections is None

    # late usage: pending until priced (provisional), then a correction against the first run
    insert_usage(client, database, usage_rows(13, 40, START, 3600))
    late = cli.generate(client, database, MONTH, Store.local(str(tmp_path / "late")), NOW, pdf=False,
                        say=lambda _: None)
    assert any(f"usage arrived after the last pricing of {START.date().isoformat()}" in r
               for r in late.report.provisional_reasons)
    costs.refresh(client, database, say=lambda _: None)
    second = cli.generate(client, database, MONTH, store, NOW, pdf=False, say=lambda _: None)
    assert not any("usage arrived" in r for r in second.report.provisional_reasons)
    after = month_sum(client, database, "tenant_id, department_id, project_id")
    expected = {k: v - by_project.get(k, Decimal(0)) for k, v in after.items() if v != by_project.get(k)}
    assert expected and {c.project: c.delta for c in second.report.corrections or ()} == expected
    assert second.report.previous_generated_at == first.manifest["generated_at"]
    corrections = read_csv(store.read(key, "corrections.csv") or b"")
    assert {(c["tenant_id"], c["department_id"], c["project_id"]): Decimal(c["difference"])
            for c in corrections} == expected
    assert len(list((tmp_path / "out" / key / "runs").iterdir())) == 1  # the same generated_at: one file


def test_a_month_without_data_says_so(client: Client, database: str, tmp_path: Path) -> None:
    store = Store.local(str(tmp_path))
    said: list[str] = []
    result = cli.generate(client, database, MONTH, store, NOW, pdf=False, say=said.append)
    assert result.report.empty and result.report.grand.charge == Decimal("0.00")
    assert any("no priced usage in this month" in line for line in said)
    page = (store.read(f"{MONTH:%Y-%m}", "report.html") or b"").decode()
    assert "No priced usage in" in page
    assert read_csv(store.read(f"{MONTH:%Y-%m}", "chargeback.csv") or b"") == []


def test_cli_refuses_a_future_month_naming_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    future = next_month(TODAY.date().replace(day=1))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["generate", "--month", f"{future:%Y-%m}", "--no-pdf"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "has not started yet" in err and f"give {TODAY:%Y-%m} or an earlier month" in err


def test_cli_generates_a_month_through_the_reader(clickhouse_server: str, client: Client, database: str,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    insert_usage(client, database, usage_rows(21, 50, START, 3600))
    every_price = PRICES + [price("tokens_in_1k", "*", 0.001), price("tokens_out_1k", "*", 0.003)]
    load_prices(client, database, tmp_path, every_price, version=1)
    monkeypatch.setenv("TELEMETRY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CLICKHOUSE_READER_USER", "default")
    code = cli.main(["--url", clickhouse_server, "--database", database, "generate", "--month", f"{MONTH:%Y-%m}",
                     "--out", str(tmp_path / "out"), "--no-pdf"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "reading costs of" in out and f"{MONTH:%Y-%m}/manifest.json" in out
    folder = tmp_path / "out" / f"{MONTH:%Y-%m}"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["provisional"] is False and manifest["provisional_reasons"] == [] and manifest["unpriced"] == []
    assert "Final: the month is closed" in (folder / "report.html").read_text()
    table = pq.read_table(folder / "chargeback.parquet")
    assert sum(table.column("total_cost").to_pylist()) == Decimal(manifest["total_cost"]) == month_sum(client, database)[()]
    assert sum(table.column("charge").to_pylist()) == Decimal(manifest["total_charge"])



def test_reports_land_in_the_lake_bucket_with_a_manifest_of_checksums(
        client: Client, database: str, tmp_path: Path, stack_env: dict[str, str], minio_url: str) -> None:
    """On the test stack's MinIO: s3://<lake bucket>/reports/YYYY-MM/, each file's sha256 in the manifest, a copy of
    every run's manifest under runs/."""
    from pyarrow import fs
    from telemetry import settings

    config = settings.load(stack_env)
    assert config.s3_endpoint == minio_url
    insert_usage(client, database, usage_rows(31, 80, START, 7200))
    load_prices(client, database, tmp_path, PRICES, version=1)
    first = cli.generate(client, database, MONTH, Store.s3(config), NOW, pdf=False, say=lambda _: None)
    assert first.location == f"s3://{config.lake_bucket}/reports/{MONTH:%Y-%m}"
    second = cli.generate(client, database, MONTH, Store.s3(config), NOW + timedelta(hours=1), pdf=False,
                          say=lambda _: None)
    assert second.report.corrections == () and second.report.previous_generated_at == first.manifest["generated_at"]

    reader = Store.s3(config)
    key = f"{MONTH:%Y-%m}"
    manifest = reader.last_manifest(key)
    assert manifest is not None and manifest["generated_at"] == second.manifest["generated_at"]
    assert set(manifest["files"]) == {"chargeback.csv", "summary.csv", "chargeback.parquet", "runs.csv",
                                      "vm_time.csv", "report.html", "corrections.csv"}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == __import__("hashlib").sha256(reader.read(key, name) or b"").hexdigest(), name
    runs = reader.filesystem.get_file_info(fs.FileSelector(f"{reader.root}/{key}/runs"))
    assert len(runs) == 2
    assert Decimal(manifest["total_cost"]) == month_sum(client, database)[()]


@pytest.mark.parametrize("manifest", [b"{not json", b"[]", b'{"generated_at": "x"}',
                                      b'{"generated_at": "x", "project_totals": [["t", "d"]]}',
                                      b'{"generated_at": "x", "project_totals": [["t", "d", "p", "lots"]]}'])
def test_an_unreadable_last_manifest_is_an_error_naming_the_file(client: Client, database: str, tmp_path: Path,
                                                                manifest: bytes) -> None:
    store = Store.local(str(tmp_path))
    store.write(f"{MONTH:%Y-%m}", "manifest.json", manifest)
    with pytest.raises(OSError, match=f"{MONTH:%Y-%m}/manifest.json.*move it aside"):
        cli.generate(client, database, MONTH, store, NOW, pdf=False, say=lambda _: None)
