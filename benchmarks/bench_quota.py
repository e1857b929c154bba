"""Quota service benchmark: decisions/s and p50 / p99 latency for users in memory (at a fixed offered rate, 2,000
checks/s by default: the target is p99 under 5 ms) and flat out, for cold users (each check's first, one ClickHouse
query), the rebuild from telemetry.usage.v1 at start, and freshness: the time from a usage record's production to a
check that sees it, p50 / p99.

Needs Kafka, ClickHouse and PostgreSQL of a local stack (`make stack-up`, or `python -m dev.stack up kafka clickhouse
postgres` with shifted ports in the environment). Builds a ClickHouse and a PostgreSQL database of its own
(bench_quota): --users hot users (10 tenants with a tenant limit each, so the service loads those tenants' months
from ClickHouse ahead of any check) with one usage record per day of the month so far on the usage topic and a limit
for every tenth user, and --users cold users (10 other tenants) with a month of usage in usage_10s only; starts
`python -m services.quota`. The clients run in this process on the same machine, so their CPU competes with the
service's: they are kept cheap (bench_api's clients: raw keep-alive connections, requests written as prepared bytes,
answers read by Content-Length), and each run prints the CPU the service and the clients spent per check. The offered
run is open loop: check i is due at start + i / rate and goes out on the next free connection of a pool of
--connections; its latency counts from when it was due, so a slow answer delays the checks queued behind it in the
figures too (no coordinated omission).

    python benchmarks/bench_quota.py [--users 10000] [--rate 2000] [--duration 20] [--clients 32] [--connections 64]

Freshness here is the quota service's part (usage record produced -> visible in a check); the job adds its own
before that (the 1 s slice and the watermark's out-of-orderness, 5 s by default, before a user's running total is
emitted): see the README.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Awaitable, Callable

import psycopg
from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_api import Connection, process_cpu  # noqa: E402
from services.api import directory, tokens  # noqa: E402
from telemetry import clickhouse, settings, topics  # noqa: E402
from telemetry.migrate import migrate, migrate_postgres  # noqa: E402

DATABASE = "bench_quota"
TENANTS = 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def prepare(s: settings.Settings, users: int) -> tuple[dict[str, str], str, list[str]]:
    """The databases, the directory, limits, a token; returns (the service's environment, token, tenants)."""
    now = datetime.now(timezone.utc)
    ch = clickhouse.connect(s)
    ch.command(f"DROP DATABASE IF EXISTS {DATABASE} SYNC")
    migrate(ch, DATABASE, 12, say=lambda _: None)
    started = time.monotonic()
    # cold users: a row per 10 s window every 15 minutes of the month so far (as the loader would write them)
    seconds = int((now - now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)).total_seconds())
    windows = max(1, seconds // 900)
    ch.command(f"""
        INSERT INTO {DATABASE}.usage_10s (window_start, tenant_id, department_id, project_id, user_id, model,
                                          tokens_in, tokens_out, wkf_credits, kuber_credits, wkf_gpu_seconds)
        SELECT toStartOfMonth(now()) + intDiv(number, {users}) * 900 AS window_start,
               concat('bench-c', toString(number % {users} % {TENANTS})), 'd1', 'p1',
               concat('cold-', toString(number % {users})), 'm', 100, 20, toDecimal64(0.25, 6),
               toDecimal64(0.25, 6), toDecimal64(3, 6)
        FROM numbers({users * windows})
        SETTINGS max_partitions_per_insert_block = 10000""")
    rows = ch.query(f"SELECT count() FROM {DATABASE}.usage_1d").result_rows[0][0]
    print(f"ClickHouse: {users * windows:,} usage_10s rows of {users:,} cold users ({rows:,} usage_1d rows) in "
          f"{time.monotonic() - started:.0f} s", flush=True)
    with psycopg.connect(s.postgres_conninfo(database="postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}"')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
    url = s.postgres_url.rsplit("/", 1)[0] + f"/{DATABASE}"
    env = {**os.environ, "CLICKHOUSE_DATABASE": DATABASE, "POSTGRES_URL": url, "QUOTA_REFRESH_S": "5"}
    bench = settings.load(env)
    hot_tenants = [f"bench-h{i}" for i in range(TENANTS)]
    tenants = hot_tenants + [f"bench-c{i}" for i in range(TENANTS)]
    with psycopg.connect(bench.postgres_conninfo()) as conn:
        migrate_postgres(conn, bench.postgres_api_user, say=lambda _: None)
        conn.commit()
    with psycopg.connect(bench.postgres_conninfo(), autocommit=True) as conn:
        directory.load(conn, {
            "tenants": [{"tenant_id": t} for t in tenants],
            "departments": [{"tenant_id": t, "department_id": "d1"} for t in tenants],
            "users": [{"tenant_id": f"bench-{kind[0]}{u % TENANTS}", "user_id": f"{kind}-{u}", "department_id": "d1"}
                      for kind in ("hot", "cold") for u in range(users)]})
        for tenant in hot_tenants:
            conn.execute("SELECT * FROM set_quota_limit(%s, 'tenant', '', 'credits', 'month', 10000000, 20000000, "
                         "'bench', '')", (tenant,))
        for u in range(0, users, 10):
            conn.execute("SELECT * FROM set_quota_limit(%s, 'user', %s, 'credits', 'day', 50, 100, 'bench', '')",
                         (f"bench-h{u % TENANTS}", f"hot-{u}"))
        tokens.grant(conn, "bench-quota-client", "quota_client", tenants, "bench")
        token = tokens.issue(conn, "bench-quota-client", 1, "bench", "bench")
    return env, token, tenants


def produce_hot(s: settings.Settings, users: int) -> int:
    """One usage record per hot user and day of the month so far, as the job writes them."""
    producer = Producer({"bootstrap.servers": s.kafka_direct_url, "linger.ms": 20, "enable.idempotence": True})
    now = datetime.now(timezone.utc)
    count = 0
    for day in range(1, now.day + 1):
        stamp = now.replace(day=day).strftime("%Y-%m-%d")
        for u in range(users):
            key = {"tenant_id": f"bench-h{u % TENANTS}", "department_id": "d1", "user_id": f"hot-{u}", "day": stamp}
            value = {**key, "events": 10, "tokens_in": 1000, "tokens_out": 200, "wkf_credits": 1.5, "kuber_credits": 1.25,
                     "wkf_gpu_seconds": 30.5}
            while True:
                try:
                    producer.produce(topics.USAGE_TOPIC, json.dumps(value).encode(), json.dumps(key).encode())
                    break
                except BufferError:
                    producer.poll(0.1)
            count += 1
    producer.flush(60)
    return count


def start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[str], str]:
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "services.quota", "--port", "0"], env=env, stdout=subprocess.PIPE,
                                stderr=err, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "serving on" not in line:
        proc.kill()
        raise SystemExit(f"the quota service did not start: {line!r}; see {log}")
    return proc, line.split("serving on ")[1].split(",")[0]


async def wait_ready(base: str) -> tuple[float, int]:
    """(seconds until /health answered 200, the usage records it had read)."""
    started = time.monotonic()
    conn = Connection(base)
    try:
        while True:
            try:
                status, answer = await conn.exchange(get(conn, "/health"))
                if status == 200:
                    return time.monotonic() - started, json.loads(answer)["records"]
            except (OSError, asyncio.IncompleteReadError):
                await conn.close()
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def get(conn: Connection, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {conn.host}:{conn.port}\r\n\r\n".encode()


def body(tenant_of: int, user: str) -> dict[str, str]:
    return {"tenant": f"bench-{user[0]}{tenant_of % TENANTS}", "scope": "user", "id": user, "metric": "credits",
            "amount": "1"}


def post(conn: Connection, token: str, payload: dict[str, str]) -> bytes:
    """A prepared POST /v1/check."""
    content = json.dumps(payload, separators=(",", ":")).encode()
    return (f"POST /v1/check HTTP/1.1\r\nHost: {conn.host}:{conn.port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(content)}\r\n\r\n").encode() + content


class Tally:
    """Latencies and answers by source (or status, or error) of one run, and the CPU spent during it."""

    def __init__(self, pid: int) -> None:
        self.latencies: list[float] = []
        self.sources: dict[str, int] = {}
        self.pid = pid
        self.started = time.perf_counter()
        self.service_cpu, self.client_cpu = process_cpu(pid), time.process_time()
        self.seconds = 0.0

    def count(self, key: str) -> None:
        self.sources[key] = self.sources.get(key, 0) + 1

    def answer(self, status: int, answer: bytes, since: float) -> None:
        self.latencies.append(time.perf_counter() - since)
        at = answer.find(b'"source":"')
        self.count(answer[at + 10:answer.index(b'"', at + 10)].decode() if status == 200 and at >= 0 else f"http-{status}")

    def stop(self) -> None:
        self.seconds = time.perf_counter() - self.started
        self.service_cpu = process_cpu(self.pid) - self.service_cpu
        self.client_cpu = time.process_time() - self.client_cpu


async def exchange(conn: Connection, request: bytes, since: float, tally: Tally) -> None:
    try:
        status, answer = await conn.exchange(request)
    except (OSError, asyncio.IncompleteReadError) as exc:  # counted, not timed; the next check reconnects
        tally.count(f"error {type(exc).__name__}")
        await conn.close()
        return
    tally.answer(status, answer, since)


async def warm_up(base: str, token: str) -> float:
    """Until the refresher has loaded every hot tenant's month (checks of their users answer from memory)."""
    started = time.monotonic()
    conn = Connection(base)
    try:
        while True:
            tally = Tally(os.getpid())
            for t in range(TENANTS):
                await exchange(conn, post(conn, token, body(t, f"hot-{t}")), time.perf_counter(), tally)
            if tally.sources == {"memory": TENANTS}:
                return time.monotonic() - started
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def offered(base: str, token: str, users: int, rate: int, duration: float, connections: int,
                  pid: int) -> Tally:
    """Open loop: check i is due at start + i / rate (hot users round robin) and goes out on the next free
    connection of the pool; its latency counts from when it was due."""
    pool = [Connection(base) for _ in range(connections)]
    requests = [post(pool[0], token, body(u, f"hot-{u}")) for u in range(users)]
    total = int(rate * duration)
    slots = iter(range(total))
    tally = Tally(pid)

    async def sender(conn: Connection) -> None:
        for i in slots:  # the next check due, whichever connection is free first
            due = tally.started + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            await exchange(conn, requests[i % users], due, tally)

    return await across(pool, sender, tally)


async def closed(base: str, token: str, make: list[dict[str, str]], clients: int, pid: int) -> Tally:
    """Closed loop: `clients` concurrent callers, a connection each, through the given checks once each, as fast as
    answers come."""
    pool = [Connection(base) for _ in range(clients)]
    queue = [post(pool[0], token, payload) for payload in reversed(make)]
    tally = Tally(pid)

    async def worker(conn: Connection) -> None:
        while queue:
            await exchange(conn, queue.pop(), time.perf_counter(), tally)

    return await across(pool, worker, tally)


async def across(pool: list[Connection], work: Callable[[Connection], Awaitable[None]], tally: Tally) -> Tally:
    """work() on every connection of the pool at once; the tally stopped when the last is done."""
    try:
        await asyncio.gather(*(work(conn) for conn in pool))
    finally:
        tally.stop()
        await asyncio.gather(*(conn.close() for conn in pool))
    return tally


def show(title: str, tally: Tally) -> None:
    done = len(tally.latencies)
    latencies = tally.latencies
    print(f"{title}: {done:,} checks in {tally.seconds:.1f} s = {done / tally.seconds:,.0f} decisions/s; "
          f"p50 {percentile(latencies, 0.5):.2f} ms, p99 {percentile(latencies, 0.99):.2f} ms, "
          f"max {max(latencies, default=float('nan')) * 1000:.1f} ms; sources {tally.sources}; CPU per check: service "
          f"{tally.service_cpu / max(done, 1) * 1e6:.0f} us, clients {tally.client_cpu / max(done, 1) * 1e6:.0f} us; "
          f"load average {Path('/proc/loadavg').read_text().split()[0]}", flush=True)


async def freshness(s: settings.Settings, base: str, token: str, samples: int) -> list[float]:
    """Produce a new day total for a hot user, then check until the answer shows it; production -> seen."""
    producer = Producer({"bootstrap.servers": s.kafka_direct_url, "linger.ms": 0, "enable.idempotence": True})
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    delays: list[float] = []
    conn = Connection(base)
    try:
        for i in range(samples):
            u = 3 + 10 * i  # users without a limit, already in memory
            key = {"tenant_id": f"bench-h{u % TENANTS}", "department_id": "d1", "user_id": f"hot-{u}", "day": today}
            tokens_in = 100000 + i  # tokens: no limit binds them, so the answer's `used` is the user's day
            request = post(conn, token, {**body(u, f"hot-{u}"), "metric": "tokens"})
            sent = time.perf_counter()
            producer.produce(topics.USAGE_TOPIC, json.dumps({**key, "tokens_in": tokens_in}).encode(),
                             json.dumps(key).encode())
            producer.poll(0)
            while time.perf_counter() - sent < 30:
                answer = json.loads((await conn.exchange(request))[1])
                if answer.get("used") == str(tokens_in):
                    break
            else:
                raise SystemExit(f"freshness: a usage record was not seen within 30 s: {answer}")
            delays.append(time.perf_counter() - sent)
    finally:
        await conn.close()
    producer.flush(10)
    return delays


def core(users: int, checks: int) -> None:
    """The rules alone, in this process: what one decision costs without HTTP (services/quota/service.py)."""
    from decimal import Decimal

    from services.quota.ledger import Ledger
    from services.quota.metrics import METRICS, NO_PRICES, raw
    from services.quota.rules import Limit
    from services.quota.service import Cold, Quota

    quota = Quota(Ledger(NO_PRICES), Cold(lambda *_: []), dict.fromkeys(METRICS, True))
    quota.feed.rebuilt, quota.feed.synced_at = True, time.monotonic()
    day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    started = time.perf_counter()
    for u in range(users):
        quota.apply((f"t{u % TENANTS}", "d1", f"hot-{u}", day), raw({"wkf_credits": "1.5", "tokens_in": 1000}), live=False)
    applied = time.perf_counter() - started
    for u in range(0, users, 10):
        quota.limits[(f"t{u % TENANTS}", "user", f"hot-{u}")] = [
            Limit(f"t{u % TENANTS}", "user", f"hot-{u}", "credits", "day", Decimal(50), Decimal(100))]
    for u in range(users):  # each user's first check loads its (empty) ClickHouse month
        quota.check(f"t{u % TENANTS}", "user", f"hot-{u}", "credits", Decimal(1))
    latencies = []
    for i in range(checks):
        u = i % users
        sent = time.perf_counter()
        quota.check(f"t{u % TENANTS}", "user", f"hot-{u}", "credits", Decimal(1))
        latencies.append(time.perf_counter() - sent)
    print(f"core (no HTTP): {users / applied:,.0f} usage records applied/s; {len(latencies) / sum(latencies):,.0f} "
          f"decisions/s, p50 {percentile(latencies, 0.5) * 1000:.0f} us, p99 {percentile(latencies, 0.99) * 1000:.0f} us",
          flush=True)


async def run(args: argparse.Namespace) -> int:
    core(args.users, 50000)
    s = settings.load()
    env, token, _ = prepare(s, args.users)
    started = time.monotonic()
    records = produce_hot(s, args.users)
    print(f"Kafka: {records:,} usage records of {args.users:,} hot users produced in {time.monotonic() - started:.1f} s",
          flush=True)
    log = Path(args.log)
    proc, base = start(env, log)
    try:
        rebuilt, held = await wait_ready(base)
        print(f"rebuild: ready {rebuilt:.1f} s after it began serving, having read the whole usage topic of this stack "
              f"({held:,} records, earlier runs' included: {held / rebuilt:,.0f} records/s)", flush=True)
        hot = [body(u, f"hot-{u}") for u in range(args.users)]
        warm = await warm_up(base, token)
        print(f"warm-up: the hot tenants' months loaded from ClickHouse {warm:.1f} s after ready", flush=True)
        show(f"in memory at an offered {args.rate:,}/s ({args.connections} connections)",
             await offered(base, token, args.users, args.rate, args.duration, args.connections, proc.pid))
        show(f"in memory, flat out ({args.clients} clients)", await closed(base, token, hot * 2, args.clients, proc.pid))
        cold = [body(u, f"cold-{u}") for u in range(min(args.users, args.cold))]
        show(f"cold users (first check each, {args.clients} clients)",
             await closed(base, token, cold, args.clients, proc.pid))
        delays = await freshness(s, base, token, args.samples)
        print(f"freshness (usage record produced -> seen by a check), {len(delays)} samples: p50 "
              f"{percentile(delays, 0.5):.1f} ms, p99 {percentile(delays, 0.99):.1f} ms, mean "
              f"{statistics.mean(delays) * 1000:.1f} ms", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    print(f"load average during the run (2 cores shared): {os.getloadavg()[0]:.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/bench_quota.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10000, help="hot users, and as many cold ones (default 10000)")
    parser.add_argument("--rate", type=int, default=2000, help="offered checks/s for the in-memory run (default 2000)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of the offered run (default 20)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent callers of the closed runs (default 32)")
    parser.add_argument("--connections", type=int, default=64,
                        help="keep-alive connections the offered run sends over (default 64)")
    parser.add_argument("--cold", type=int, default=2000, help="cold users checked (default 2000)")
    parser.add_argument("--samples", type=int, default=200, help="freshness samples (default 200)")
    parser.add_argument("--log", default="/tmp/bench_quota.log", help="the service's log (default /tmp/bench_quota.log)")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
