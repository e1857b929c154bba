"""API benchmark: 50 concurrent clients over the role endpoints, requests/s and p50 / p95 / p99 per endpoint, with
the access log on and then off (the difference is what the audit trail costs); first one client with the cache off,
so each endpoint's ClickHouse query is measured alone.

Needs the local stack's ClickHouse and PostgreSQL (`make stack-up`). Writes demo-like facts for --tenants x --users
over --hours (dev/serving_data.py) into a ClickHouse database and a PostgreSQL database of its own (bench_api),
issues a token per role, then per mode starts `python -m services.api` and lets the clients loop over the endpoints
for --duration seconds after --warmup; --repeat runs more pairs, in the same minutes so both modes see the same
machine, in alternating order (on then off, off then on, ...). The clients run in this process on the same machine: one keep-alive connection each, requests written as
prepared bytes and answers read by Content-Length (a full HTTP client cost more CPU than the API's own work per
request, on the same two cores). Beside latency, each mode prints the CPU the API process and the clients spent
per request, and the load average: on a busy machine throughput follows the CPU share the API gets, CPU per
request much less.

    python benchmarks/bench_api.py [--clients 50] [--duration 30] [--warmup 5] [--workers 1] [--repeat 1]
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
from urllib.parse import urlencode, urlsplit

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
    api_cpu_s: float = 0.0  # the API process's CPU (user + system) over the measured seconds
    client_cpu_s: float = 0.0
    load: tuple[str, str] = ("", "")  # /proc/loadavg's 1-minute figure at the start and the end


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its waited-for children: uvicorn's workers included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def api_cpu(proc: subprocess.Popen[str]) -> float:
    """The API's CPU seconds so far: its process and, with --workers, the worker processes it started."""
    total = process_cpu(proc.pid)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    for child in children.read_text().split() if children.exists() else ():
        try:
            total += process_cpu(int(child))
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


class Connection:
    """One keep-alive HTTP/1.1 connection that sends prepared requests and reads answers by Content-Length (the
    API always sends one): about a tenth of a full client's CPU per request."""

    def __init__(self, base: str) -> None:
        url = urlsplit(base)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def request(self, path: str, query: dict[str, str], token: str) -> bytes:
        return (f"GET {path}?{urlencode(query)} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Authorization: Bearer {token}\r\n\r\n").encode()

    async def send(self, request: bytes) -> int:
        """The answer's status, its body read."""
        return (await self.exchange(request))[0]

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """The answer's status and body."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        at = head.lower().find(b"\r\ncontent-length:")
        if at < 0:
            raise RuntimeError(f"an answer without Content-Length: {head[:200]!r}")
        length = int(head[at + 17:head.index(b"\r\n", at + 2)])
        return int(head[9:12]), await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:  # the server closed it first
                pass


def requests_of(conn: Connection, issued: dict[str, str], extra: dict[str, str],
                span: dict[str, str]) -> list[tuple[str, bytes]]:
    """(name, prepared request) per call of CALLS."""
    out = []
    for role, path, params in CALLS:
        query = {**span, **params}
        if "user" in query:
            query["user"] = extra["user"]
        out.append((f"{role} {path}", conn.request(path, query, issued[role])))
    return out


def last_day() -> dict[str, str]:
    end = datetime.now(timezone.utc)
    return {"from": (end - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"), "to": end.strftime("%Y-%m-%dT%H:%M:%SZ")}


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


async def client(base: str, issued: dict[str, str], extra: dict[str, str], span: dict[str, str], until: float,
                 measure_from: float, results: Results, seed: int) -> None:
    rng = random.Random(seed)
    conn = Connection(base)
    calls = requests_of(conn, issued, extra, span)
    try:
        while time.monotonic() < until:
            name, request = calls[rng.randrange(len(calls))]
            started = time.monotonic()
            ok = await conn.send(request) == 200
            if started >= measure_from:
                results.latencies.setdefault(name, []).append(time.monotonic() - started)
                if not ok:
                    results.errors[name] = results.errors.get(name, 0) + 1
    finally:
        await conn.close()


async def load(base: str, issued: dict[str, str], extra: dict[str, str], clients: int, warmup: float,
               duration: float, proc: subprocess.Popen[str]) -> Results:
    span = last_day()
    results = Results()
    start = time.monotonic()
    measure_from, until = start + warmup, start + warmup + duration

    async def measure() -> None:
        await asyncio.sleep(warmup)
        api0, client0, results.load = api_cpu(proc), time.process_time(), (load_average(), "")
        await asyncio.sleep(max(0.0, until - time.monotonic()))
        results.api_cpu_s, results.client_cpu_s = api_cpu(proc) - api0, time.process_time() - client0
        results.load = (results.load[0], load_average())

    await asyncio.gather(measure(), *(client(base, issued, extra, span, until, measure_from, results, i)
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
    if results.api_cpu_s:
        print(f"  CPU per request: API {results.api_cpu_s / total * 1000:.2f} ms, clients "
              f"{results.client_cpu_s / total * 1000:.2f} ms; load average {results.load[0]} -> {results.load[1]}")
    return rate


async def cold(base: str, issued: dict[str, str], extra: dict[str, str], rounds: int) -> Results:
    """One client, each call `rounds` times, against an API without its cache: what ClickHouse costs per endpoint."""
    results = Results()
    start = time.monotonic()
    conn = Connection(base)
    calls = requests_of(conn, issued, extra, last_day())
    try:
        for _ in range(rounds):
            for name, request in calls:
                began = time.monotonic()
                ok = await conn.send(request) == 200
                results.latencies.setdefault(name, []).append(time.monotonic() - began)
                if not ok:
                    results.errors[name] = results.errors.get(name, 0) + 1
    finally:
        await conn.close()
    results.seconds = time.monotonic() - start
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/bench_api.py", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per mode (default 30)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before measuring (default 5)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of the API (default 1)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the pair of modes this many times, their order alternating (default 1)")
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
    rates: dict[str, list[float]] = {"on": [], "off": []}
    for run in range(1, args.repeat + 1):
        for mode in ("on", "off") if run % 2 else ("off", "on"):  # either may gain from going first or second
            proc, base = start_api(env, mode, args.workers, log_dir / f"api-{mode}.log")
            try:
                results = asyncio.run(load(base, issued, extra, args.clients, args.warmup, args.duration, proc))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            title = f"access log {mode} ({args.clients} clients, {args.workers} worker(s))"
            rates[mode].append(report(title if args.repeat == 1 else f"run {run}, {title}", results))
        print(f"\nthe access log costs {(1 - rates['on'][-1] / rates['off'][-1]) * 100:.1f} % of throughput "
              f"({rates['on'][-1]:,.1f} vs {rates['off'][-1]:,.1f} requests/s)")
    if args.repeat > 1:
        costs = sorted((1 - on / off) * 100 for on, off in zip(rates["on"], rates["off"]))
        print(f"\nover {args.repeat} pairs: on {', '.join(f'{r:,.0f}' for r in rates['on'])} requests/s; off "
              f"{', '.join(f'{r:,.0f}' for r in rates['off'])}; the access log's cost per pair "
              f"{', '.join(f'{c:.1f}' for c in costs)} % (median {statistics.median(costs):.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
