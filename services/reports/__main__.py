"""`python -m services.reports generate --month YYYY-MM [--out DIR | --s3]`: the monthly chargeback report from the
priced cost tables, as CSV, Parquet, HTML and PDF with a manifest, into a folder or the S3 lake under reports/."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from services.reports import chargeback, outputs, source
from services.reports.store import PREFIX, Store
from telemetry import clickhouse, schedule, settings


@dataclass(frozen=True)
class Generated:
    report: chargeback.Report
    manifest: dict
    location: str


def generate(client: Client, database: str, month: date, store: Store, now: datetime, pdf: bool = True,
             say: Callable[[str], None] = print) -> Generated:
    """Read the month, build the report (with the corrections since the last run in `store`), write its files and
    then its manifest (and a copy under runs/)."""
    key = f"{month:%Y-%m}"
    say(f"reading costs of {key} from {database}.costs_1d")
    rows = source.month_rows(client, database, month)
    versions = source.catalogue_versions(client, database, month)
    pending, unpriced_days = source.pending_days(client, database, month), source.unpriced_days(client, database, month)
    reasons = chargeback.provisional_reasons(month, now, pending, unpriced_days,
                                             (item for row in rows for item in row.unpriced))
    previous = store.last_manifest(key)
    try:
        totals = None if previous is None else outputs.previous_totals(previous)
    except ValueError as exc:
        raise OSError(f"{store.uri}/{key}/manifest.json: {exc}: move it aside or restore it from runs/") from None
    report = chargeback.build(
        month, rows, source.currency(client, database), versions, reasons, previous=totals,
        previous_generated_at=None if previous is None else previous.get("generated_at"),
        history=source.department_history(client, database, month),
        runs=source.run_outcomes(client, database, month), vms=source.vm_time(client, database, month))
    say(f"{len(report.rows)} rows, {len(report.projects)} projects, {len(report.departments)} departments, total "
        f"{report.grand.charge} {report.currency}" + (" (provisional)" if report.provisional else "") +
        ("" if report.rows else ": no priced usage in this month"))
    generated_at = now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    page = outputs.html(report, generated_at)
    files = {"chargeback.csv": outputs.rows_csv(report), "summary.csv": outputs.summary_csv(report),
             "chargeback.parquet": outputs.rows_parquet(report), "runs.csv": outputs.runs_csv(report),
             "vm_time.csv": outputs.vm_time_csv(report), "report.html": page.encode()}
    if report.corrections is not None:
        files["corrections.csv"] = outputs.corrections_csv(report)
    if pdf:
        say("printing report.pdf with headless Chromium")
        files["report.pdf"] = outputs.print_pdf(page)
    for name, data in files.items():
        say(f"writing {store.write(key, name, data)} ({len(data)} bytes)")
    manifest = outputs.manifest(report, files, generated_at)
    data = outputs.manifest_bytes(manifest)
    store.write(key, f"runs/{generated_at}.json", data)
    location = store.write(key, "manifest.json", data)
    say(f"wrote {location}")
    return Generated(report, manifest, location.rsplit("/", 1)[0])


def previous_month(today: date) -> str:
    first = today.replace(day=1)
    return f"{first.year - (first.month == 1)}-{(first.month - 2) % 12 + 1:02d}"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m services.reports",
        description="Monthly chargeback report from the priced cost tables (costs_1d, filled by `python -m "
        "telemetry.costs refresh`): per department and project, by model / checkpoint, user and cost item, with "
        "the catalogue versions used, unpriced usage named, and the corrections since the last run of the month. "
        "ClickHouse from CLICKHOUSE_URL / CLICKHOUSE_DATABASE, read as the reader user (CLICKHOUSE_READER_USER).")
    root.add_argument("--url", help=f"ClickHouse HTTP URL (default: CLICKHOUSE_URL or {settings.Settings.clickhouse_url})")
    root.add_argument("--database",
                        help=f"database (default: CLICKHOUSE_DATABASE or {settings.Settings.clickhouse_database})")
    commands = root.add_subparsers(dest="command", required=True)
    gen = commands.add_parser(
        "generate", help="write one month's report: chargeback.csv, summary.csv, chargeback.parquet, report.html, "
        "report.pdf, corrections.csv (from the second run of a month on) and manifest.json")
    gen.add_argument("--month", metavar="YYYY-MM", help="the month, UTC (default: the previous month)")
    where = gen.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="DIR", default="reports",
                       help="write to DIR/YYYY-MM/ (default: ./reports)")
    where.add_argument("--s3", action="store_true",
                       help=f"write to s3://LAKE_BUCKET/{PREFIX}/YYYY-MM/ at S3_ENDPOINT with S3_ACCESS_KEY / "
                       "S3_SECRET_KEY (locally: the stack's MinIO)")
    gen.add_argument("--no-pdf", action="store_true", help="skip report.pdf (it needs Debian's chromium)")
    gen.add_argument("--alive-file", type=Path, metavar="PATH",
                     help="touched after every report written (a container health check reads its age)")
    gen.add_argument("--every", type=float, metavar="SECONDS",
                     help="keep running, a report every SECONDS (each run of a month shows the corrections since the "
                     "last); without --month, the previous month as of each run; default: once")
    return root


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if args.every is not None and args.every <= 0:
        cli.error(f"--every {args.every}: give a positive number of seconds")
    if args.month is not None:
        try:
            chargeback.parse_month(args.month, datetime.now(timezone.utc).date())
        except chargeback.MonthError as exc:
            cli.error(str(exc))
    try:
        config = settings.load()
        store = Store.s3(config) if args.s3 else Store.local(args.out)
    except settings.SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    url, database = args.url or config.clickhouse_url, args.database or config.clickhouse_database
    client = None
    try:
        client = clickhouse.connect(config, reader=True, url=url)
        connected = client

        def run() -> None:
            now = datetime.now(timezone.utc)
            month = chargeback.parse_month(args.month or previous_month(now.date()), now.date())
            generate(connected, database, month, store, now, pdf=not args.no_pdf)

        schedule.repeat(run, args.every, args.alive_file)
        return 0
    except ClickHouseError as exc:
        print(f"error: ClickHouse at {url}: {exc}", file=sys.stderr)
        return 1
    except outputs.PdfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: report store {store.uri}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if client is not None:
            client.close()


if __name__ == "__main__":
    sys.exit(main())
