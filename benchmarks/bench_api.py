"""API benchmark: 50 concurrent clients over the role endpoints, requests/s and p50 / p95 / p99 per endpoint, with
the access log on and then off (the difference is what the audit trail costs); first one client with the cache off,
so each endpoint's ClickHouse query is measured alone.

Needs the local stack's ClickHouse and PostgreSQL (`make stack-up`). Writes demo-like facts for --tenants x --users
over --hours (dev/serving_data.py) into a ClickHouse database and a PostgreSQL database of its own (bench_api),
issues a token per role, then per mode starts `python -m services.api` and lets the clients loop over the endpoints
for --duration seconds after --warmup. The clients run in this process (asyncio + aiohttp) on the same machine.

    python benchmarks/bench_api.py [--clients 50] [--duration 30] [--warmup 5] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dev import serving_data  # noqa: E402
from services.api import directory, tokens  # noqa: E402
from telemetry import clickhouse, settings  # noqa: E402
from telemetry.migrate import migrate, migrate_postgres  # noqa: E402

DATABASE = "bench_api"
# (role, path, parameters): the dashboard calls of each role, over the last day
CALLS = [
    ("pipeline_td", "/v1/models/performance", {}),
    ("pipeline_td", "/v1/metrics/minute", {"limit": "200"}),
    ("pipeline_td", "/v1/errors/top", {}),
    ("pipeline_td", "/v1/tasks", {"limit": "50"}),
    ("admin", "/v1/vms", {}),
    ("admin", "/v1/pipeline/health", {}),
    ("admin", "/v1/access", {"limit": "50"}),
    ("financial_director", "/v1/costs", {"group_by": "department", "granularity": "hour"}),
    ("financial_director", "/v1/costs/runs", {}),
    ("financial_director", "/v1/usage", {"group_by": "user", "granularity": "day"}),
    ("quota_service", "/v1/usage", {"user": "", "granularity": "hour"}),
]


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def prepare(s: settings.Settings, tenants: int, users: int, hours: int) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Facts and directory in bench_api databases; (environment for the API, token per role, a user per tenant)."""
    ch = clickhouse.connect(s)
    ch.command(f"DROP DATABASE IF EXISTS {DATABASE} SYNC")
    migrate(ch, DATABASE, 12, say=lambda _: None)
    data = serving_data.build(tenants=tenants, users=users, hours=hours)
    started = time.monotonic()
    serving_data.write(ch, DATABASE, data)
    rows = ch.query(f"SELECT (SELECT count() FROM {DATABASE}.usage_10s), (SELECT count() FROM {DATABASE}.task_facts), "
                    f"(SELECT count() FROM {DATABASE}.audit_log)").result_rows[0]
    print(f"facts: {rows[0]:,} usage rows, {rows[1]:,} task facts, {rows[2]:,} audit rows for {tenants} tenants x "
          f"{users} users over {hours} h, written in {time.monotonic() - started:.0f} s", flush=True)
    with psycopg.connect(s.postgres_conninfo(database="postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}"')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
    url = s.postgres_url.rsplit("/", 1)[0] + f"/{DATABASE}"
    env = {**os.environ, "CLICKHOUSE_DATABASE": DATABASE, "POSTGRES_URL": url}
    bench = settings.load(env)
    tenant = data.tenants[0].tenant_id
    with psycopg.connect(bench.postgres_conninfo(), autocommit=True) as conn:
        migrate_postgres(conn, bench.postgres_api_user, say=lambda _: None)
        directory.load(conn, data.directory())
        issued = {}
        for role in {c[0] for c in CALLS}:
            tokens.grant(conn, f"bench-{role}", role, [tenant], "bench")
            issued[role] = tokens.issue(conn, f"bench-{role}", 1, "bench", "bench")
    return env, issued, {"user": next(iter(data.tenants[0].users))}


def start_api(env: dict[str, str], access_log: str, workers: int, log: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "services.api", "--port", "0", "--workers", str(workers),
                             "--access-log", access_log], env=env, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "serving on" not in line:
        raise SystemExit(f"the API did not start: {line!r}; see {log}")
    return proc, line.split("serving on ")[1].split()[0]


async def client(session: aiohttp.ClientSession, base: str, issued: dict[str, str], extra: dict[str, str],
                 span: dict[str, str], until: float, measure_from: float, results: Results, seed: int) -> None:
    rng = random.Random(seed)
    while (now := time.monotonic()) < until:
        role, path, params = CALLS[rng.randrange(len(CALLS))]
        query = {**span, **params}
        if "user" in query:
            query["user"] = extra["user"]
        name = f"{role} {path}"
        started = time.monotonic()
        async with session.get(base + path, params=query, headers={"Authorization": f"Bearer {issued[role]}"}) as response:
            await response.read()
            ok = response.status == 200
        if started >= measure_from:
            results.latencies.setdefault(name, []).append(time.monotonic() - started)
            if not ok:
                results.errors[name] = results.errors.get(name, 0) + 1
        del now


async def load(base: str, issued: dict[str, str], extra: dict[str, str], clients: int, warmup: float,
               duration: float) -> Results:
    end = datetime.now(timezone.utc)
    span = {"from": (end - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), "to": end.strftime("%Y-%m-%dT%H:%M:%SZ")}
    results = Results()
    start = time.monotonic()
    measure_from, until = start + warmup, start + warmup + duration
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        await asyncio.gather(*(client(session, base, issued, extra, span, until, measure_from, results, i)
                               for i in range(clients)))
    results.seconds = time.monotonic() - measure_from
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def report(title: str, results: Results) -> float:
    total = sum(len(v) for v in results.latencies.values())
    rate = total / results.seconds
    print(f"\n{title}: {total:,} requests in {results.seconds:.1f} s = {rate:,.1f} requests/s")
    print(f"  {'endpoint':<46} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for name in sorted(results.latencies):
        values = results.latencies[name]
        print(f"  {name:<46} {len(values) / results.seconds:>7.1f} {percentile(values, 0.5):>8.1f} "
              f"{percentile(values, 0.95):>8.1f} {percentile(values, 0.99):>8.1f} {results.errors.get(name, 0):>6}")
    every = [v for values in results.latencies.values() for v in values]
    print(f"  {'all':<46} {rate:>7.1f} {percentile(every, 0.5):>8.1f} {percentile(every, 0.95):>8.1f} "
          f"{percentile(every, 0.99):>8.1f} {sum(results.errors.values()):>6}  (mean {statistics.mean(every) * 1000:.1f} ms)")
    return rate


async def cold(base: str, issued: dict[str, str], extra: dict[str, str], rounds: int) -> Results:
    """One client, each call `rounds` times, against an API without its cache: what ClickHouse costs per endpoint."""
    end = datetime.now(timezone.utc)
    span = {"from": (end - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), "to": end.strftime("%Y-%m-%dT%H:%M:%SZ")}
    results = Results()
    start = time.monotonic()
    async with aiohttp.ClientSession() as session:
        for _ in range(rounds):
            for role, path, params in CALLS:
                query = {**span, **params}
                if "user" in query:
                    query["user"] = extra["user"]
                began = time.monotonic()
                async with session.get(base + path, params=query, headers={"Authorization": f"Bearer {issued[role]}"}) as r:
                    await r.read()
                    ok = r.status == 200
                name = f"{role} {path}"
                results.latencies.setdefault(name, []).append(time.monotonic() - began)
                if not ok:
                    results.errors[name] = results.errors.get(name, 0) + 1
    results.seconds = time.monotonic() - start
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/bench_api.py", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per mode (default 30)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring (default 5)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of the API (default 1)")
    parser.add_argument("--tenants", type=int, default=4, help="tenants of the facts (default 4)")
    parser.add_argument("--users", type=int, default=50, help="users per tenant (default 50)")
    parser.add_argument("--hours", type=int, default=48, help="hours of facts up to now (default 48)")
    parser.add_argument("--cold-rounds", type=int, default=5,
                        help="first, one client calling each endpoint this many times with the cache off (default 5; 0: skip)")
    args = parser.parse_args(argv)
    s = settings.load()
    env, issued, extra = prepare(s, args.tenants, args.users, args.hours)
    log_dir = s.state_dir / "bench_api"
    log_dir.mkdir(parents=True, exist_ok=True)
    if args.cold_rounds:
        proc, base = start_api({**env, "API_CACHE_SECONDS": "0"}, "on", 1, log_dir / "api-cold.log")
        try:
            report("one client, cache off (each query reaches ClickHouse)", asyncio.run(cold(base, issued, extra, args.cold_rounds)))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    rates = {}
    for mode in ("on", "off"):
        proc, base = start_api(env, mode, args.workers, log_dir / f"api-{mode}.log")
        try:
            results = asyncio.run(load(base, issued, extra, args.clients, args.warmup, args.duration))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        rates[mode] = report(f"access log {mode} ({args.clients} clients, {args.workers} worker(s))", results)
    print(f"\nthe access log costs {(1 - rates['on'] / rates['off']) * 100:.1f} % of throughput "
          f"({rates['on']:,.1f} vs {rates['off']:,.1f} requests/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
