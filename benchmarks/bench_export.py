"""Export benchmark: a year of synthetic hourly usage and daily costs exported through the API as CSV and Parquet,
streamed; prints rows, bytes, seconds, rows/s, the API's CPU and its peak memory while streaming, and checks the
CSV's credits total against ClickHouse's own sum (to the last decimal).

Needs the local stack's ClickHouse and PostgreSQL (`make stack-up`). Generates --users x --keys-per-user usage keys
(model x checkpoint x project) with a row per hour for --months into usage_1h, and a row per day into costs_1d, of one
tenant, in a ClickHouse database of its own (bench_export: INSERT ... SELECT FROM numbers(), inside ClickHouse), then
starts `python -m services.api` and downloads each export with a Financial Director's token.

    python benchmarks/bench_export.py [--users 500] [--keys-per-user 4] [--months 12]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_api import api_cpu, process_cpu, start_api  # noqa: E402
from services.api import directory, tokens  # noqa: E402
from telemetry import clickhouse, settings  # noqa: E402
from telemetry.migrate import migrate, migrate_postgres  # noqa: E402

DATABASE = "bench_export"
TENANT = "7d2f3c1e-0b6a-4c55-9f7e-5a1d2c3b4e6f"
KEYS = "tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id"


def generate(s: settings.Settings, users: int, per_user: int, start: datetime, end: datetime) -> tuple[int, int]:
    """usage_1h and costs_1d rows of one tenant, made inside ClickHouse; (usage rows, cost rows)."""
    ch = clickhouse.connect(s)
    ch.command(f"DROP DATABASE IF EXISTS {DATABASE} SYNC")
    migrate(ch, DATABASE, 13, say=lambda _: None)
    keys, hours = users * per_user, int((end - start).total_seconds() // 3600)
    key = (f"'{TENANT}', concat('dept-', toString(k % 7)), concat('proj-', toString(k % 23)), "
           f"concat('user-', toString(intDiv(k, {per_user}))), concat('xumi-', toString(k % 3)), 'v1', "
           f"concat('ckpt-', toString(k % {per_user}))")
    ch.command(f"""INSERT INTO {DATABASE}.usage_1h (window_start, {KEYS}, requests, tokens_in, tokens_out, credits,
                   wkf_credits, wkf_gpu_seconds)
        SELECT toDateTime({int(start.timestamp())}, 'UTC') + intDiv(number, {keys}) * 3600 AS window_start, {key},
               1 + number % 97, 10 * (number % 1013), 3 * (number % 1009),
               toDecimal128((number % 100003) / 1000000 + 0.5, 6), toDecimal128((number % 100003) / 1000000 + 0.5, 6),
               toDecimal128(number % 3600, 6)
        FROM (SELECT number, number % {keys} AS k FROM numbers({keys * hours}))""",
               settings={"max_insert_threads": 2})
    days = hours // 24
    ch.command(f"""INSERT INTO {DATABASE}.costs_1d (window_start, {KEYS}, requests, tokens_in, tokens_out, gpu_seconds,
                   gpu_cost, total_cost, catalogue_version, priced_at)
        SELECT toDateTime({int(start.timestamp())}, 'UTC') + intDiv(number, {keys}) * 86400, {key},
               24 * (1 + number % 97), 240 * (number % 1013), 72 * (number % 1009), toDecimal128(number % 86400, 6),
               toDecimal128((number % 86400) / 3600 * 2.5, 12), toDecimal128((number % 86400) / 3600 * 2.5, 12), 1,
               now64(3)
        FROM (SELECT number, number % {keys} AS k FROM numbers({keys * days}))""")
    ch.close()
    return keys * hours, keys * days


def prepare_postgres(s: settings.Settings) -> tuple[dict[str, str], str]:
    with psycopg.connect(s.postgres_conninfo(database="postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}"')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
    env = {**os.environ, "CLICKHOUSE_DATABASE": DATABASE,
           "POSTGRES_URL": s.postgres_url.rsplit("/", 1)[0] + f"/{DATABASE}"}
    bench = settings.load(env)
    with psycopg.connect(bench.postgres_conninfo(), autocommit=True) as conn:
        migrate_postgres(conn, bench.postgres_api_user, say=lambda _: None)
        directory.load(conn, {"tenants": [{"tenant_id": TENANT, "name": "bench"}]})
        tokens.grant(conn, "bench-fd", "financial_director", [TENANT], "bench")
        token = tokens.issue(conn, "bench-fd", 1, "bench", "bench")
    return env, token


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def download(base: str, token: str, pid: int, dataset: str, fmt: str, granularity: str, start: datetime,
             end: datetime, path: Path) -> tuple[int, float, int, float]:
    """Stream one export into path: (bytes, seconds, the API's peak RSS while streaming in KiB, its CPU seconds)."""
    peak = [rss_kib(pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], rss_kib(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu0, began, size = process_cpu(pid), time.monotonic(), 0
    with requests.get(f"{base}/v1/exports/{dataset}", headers={"Authorization": f"Bearer {token}"}, stream=True,
                      params={"from": start.isoformat(), "to": end.isoformat(), "format": fmt,
                              "granularity": granularity}, timeout=600) as response, open(path, "wb") as sink:
        if response.status_code != 200:
            raise SystemExit(f"export {dataset} {fmt}: HTTP {response.status_code}: {response.text[:300]}")
        for chunk in response.iter_content(1 << 20):
            size += len(chunk)
            sink.write(chunk)
    seconds = time.monotonic() - began
    done.set()
    sampler.join()
    return size, seconds, peak[0], process_cpu(pid) - cpu0


def csv_rows_and_total(path: Path, column: str) -> tuple[int, Decimal]:
    """Rows of an exported CSV and the exact sum of one of its columns, read line by line."""
    rows, total = 0, Decimal(0)
    with open(path, encoding="utf-8") as lines:
        at = next(lines).rstrip("\n").replace('"', "").split(",").index(column)
        for line in lines:
            rows += 1
            total += Decimal(line.split(",")[at])
    return rows, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/bench_export.py", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=500, help="users of the tenant (default 500)")
    parser.add_argument("--keys-per-user", type=int, default=4, help="usage keys per user (default 4)")
    parser.add_argument("--months", type=int, default=12, help="months of history up to today (default 12)")
    args = parser.parse_args(argv)
    if args.users < 1 or args.keys_per_user < 1 or not 1 <= args.months <= 13:
        parser.error("--users and --keys-per-user must be 1 or more, --months 1-13 (the role's longest range)")
    s = settings.load()
    end = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=30 * args.months)
    began = time.monotonic()
    usage_rows, cost_rows = generate(s, args.users, args.keys_per_user, start, end)
    print(f"history: {usage_rows:,} usage_1h rows and {cost_rows:,} costs_1d rows ({args.users * args.keys_per_user:,} "
          f"keys, {start:%Y-%m-%d} .. {end:%Y-%m-%d}), made in {time.monotonic() - began:.0f} s", flush=True)
    env, token = prepare_postgres(s)
    log = s.state_dir / "bench_export"
    log.mkdir(parents=True, exist_ok=True)
    proc, base = start_api(env, "on", 1, log / "api.log")
    try:
        print(f"API resident memory before the exports: {rss_kib(proc.pid) / 1024:,.0f} MiB", flush=True)
        print(f"{'export':28} {'rows':>12} {'MiB':>9} {'seconds':>8} {'rows/s':>10} {'API CPU s':>9} "
              f"{'API peak RSS MiB':>16}")
        exported = Decimal(0)
        path = Path(f"/tmp/{DATABASE}.export")
        for dataset, granularity, fmt in (("usage", "hour", "csv"), ("usage", "hour", "parquet"),
                                          ("costs", "day", "csv"), ("costs", "day", "parquet")):
            size, seconds, peak, cpu = download(base, token, proc.pid, dataset, fmt, granularity, start, end, path)
            if fmt == "csv":
                rows, total = csv_rows_and_total(path, "credits" if dataset == "usage" else "total_cost")
                exported = total if dataset == "usage" else exported
            else:
                rows = pq.ParquetFile(path).metadata.num_rows
            print(f"{dataset + ' ' + granularity + ' ' + fmt:28} {rows:>12,} {size / 2**20:>9,.1f} {seconds:>8.1f} "
                  f"{rows / seconds:>10,.0f} {cpu:>9.1f} {peak / 1024:>16,.0f}", flush=True)
        ch = clickhouse.connect(s)
        truth = ch.query(f"SELECT sum(credits) FROM {DATABASE}.usage_1h").result_rows[0][0]
        print(f"usage credits: exported {exported} vs ClickHouse {truth}: "
              f"{'equal' if exported == truth else 'DIFFERENT'}")
        print(f"API peak resident memory over its life (VmHWM): {rss_kib(proc.pid, 'VmHWM') / 1024:,.0f} MiB; "
              f"API CPU in all {api_cpu(proc):.1f} s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        Path(f"/tmp/{DATABASE}.export").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
