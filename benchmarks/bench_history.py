"""A year of history: every dashboard panel, role summary, API and monthly-report query timed at production volume.

Generates --months of synthetic history into the project's own migrations (INSERT ... SELECT from numbers(), the
rollups' materialized views and the cost refresh running as in production), loads the example price catalogue (which
prices every day into costs_1h / costs_1d, the VM cost tables and the task sums: timed), then sends each query --runs
times as the read-only user would (clickhouse-connect over HTTP, the reader profile's settings) and prints p50 / p95,
rows read, the server's peak memory and a flag for anything over 1 s. The volume (issue 16): --users 10000 --keys 35000 --nodes 2000 --events-per-s 2500;
--scale multiplies all four. Task facts, audit and DLQ rows follow from the event rate (--tasks-per-event ...).

By default it starts its own dev ClickHouse server (chdb) in --workdir and reads the server's peak RSS per query from
/proc; --url points it at another server (then no memory figures). tests/benchmarks/test_bench_history.py runs the
same functions on a small volume.

    python benchmarks/bench_history.py [--scale 0.1] [--months 12] [--ranges 30d,365d] [--runs 5] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import clickhouse_connect
from clickhouse_connect.driver.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dev import demo, grafana_sql  # noqa: E402
from dev.chdb_server.users import write_users  # noqa: E402
from services.api.permissions import ROLES  # noqa: E402
from services.api.routers import infra, performance, tasks, usage  # noqa: E402
from services.api.routers import access as access_router  # noqa: E402
from telemetry import costs, prices  # noqa: E402
from telemetry.migrate import migrate  # noqa: E402
from telemetry.settings import REPO_ROOT  # noqa: E402

DASHBOARDS = sorted((REPO_ROOT / "monitoring" / "grafana" / "dashboards").glob("*.json"))
PRICES = REPO_ROOT / "sql" / "clickhouse" / "prices" / "example.yaml"
SLOW_S = 1.0
MAX_POINTS = 1000  # Grafana's default maxDataPoints for a panel about as wide as the screen


@dataclass(frozen=True)
class Volume:
    """What is generated. Keys are usage keys (tenant x department x project x user x model x checkpoint)."""

    users: int = 10_000
    keys: int = 35_000
    nodes: int = 2_000
    events_per_s: float = 2_500
    months: int = 12
    minute_days: int = 3  # usage_1m holds the last days only (its TTL is the same; older minutes are never read)
    tensec_hours: int = 6  # usage_10s likewise
    ingest_days: int = 365
    tasks_per_event: float = 0.001  # ended task attempts per event
    audit_per_event: float = 0.01
    dlq_per_event: float = 0.0002
    tenants: int = 4

    def scaled(self, scale: float) -> Volume:
        return replace(self, users=max(4, round(self.users * scale)), keys=max(8, round(self.keys * scale)),
                       nodes=max(2, round(self.nodes * scale)), events_per_s=self.events_per_s * scale)

    @property
    def days(self) -> int:
        return round(self.months * 365 / 12)

    def per_year(self, per_event: float) -> int:
        return int(self.events_per_s * per_event * self.days * 86400)


@dataclass
class Query:
    group: str  # panel | variable | summary | api | report
    name: str
    sql: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Timing:
    query: Query
    range_name: str
    seconds: list[float] = field(default_factory=list)
    rows_read: int = 0
    peak_mb: float | None = None
    error: str = ""

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def p95(self) -> float:
        """Nearest rank: with 5 runs, the slowest."""
        if not self.seconds:
            return float("nan")
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, max(0, -(-95 * len(ordered) // 100) - 1))]


# --------------------------------------------------------------------------------------------------------------
# Generation: one INSERT ... SELECT per table and period, deterministic (hashes of the row number)


def _key_dims(k: str, vol: Volume) -> str:
    """SQL for the usage key dimensions of key expression k (UInt64)."""
    user = f"({k} % {vol.users})"
    tenant = f"concat('t', toString({user} % {vol.tenants}))"
    department = f"concat({tenant}, '-d', toString(intDiv({user}, {vol.tenants}) % 25))"
    return (f"{tenant} AS tenant_id, {department} AS department_id, "
            f"concat({department}, '-p', toString({k} % 10)) AS project_id, concat('u', toString({user})) AS user_id, "
            f"concat('model-', toString({k} % 8)) AS model, concat('v', toString({k} % 3)) AS model_version, "
            f"if({k} % 5 = 0, '', concat('ck-', toString({k} % 64))) AS checkpoint_id, '1' AS checkpoint_version")


def _usage_metrics(events: str) -> str:
    """Usage columns for a window holding about `events` events (SQL Float64 expression), from rand-like hashes."""
    h = "cityHash64(number)"
    return f"""
        toUInt64(({h} % 1000) / 500 * {events} * 0.8) AS requests,
        toUInt64(requests * (bitShiftRight({h}, 10) % 30) / 1000) AS errors,
        mapFilter((k, v) -> v > 0, map('timeout', errors, 'oom', intDiv(errors, 3))) AS errors_by_type,
        requests * 400 AS tokens_in, requests * 150 AS tokens_out,
        requests * 180.5 AS latency_ms_sum,
        mapFilter((k, v) -> v > 0, map(toUInt16(500 + bitShiftRight({h}, 20) % 20), requests, toUInt16(540), intDiv(requests, 10)))
            AS latency_hist,
        toInt64(bitShiftRight({h}, 30) % 3) AS tasks, toInt64(tasks > 0 AND bitShiftRight({h}, 32) % 10 = 0) AS task_failures,
        toInt64(0) AS task_retries, tasks * 2000 AS task_queue_ms_sum, tasks * 9000 AS task_load_ms_sum,
        tasks * 3000 AS task_init_ms_sum, tasks * 60000 AS task_inference_ms_sum, tasks * 74000 AS task_duration_ms_sum,
        toUInt64(bitShiftRight({h}, 34) % 2) AS loads, toUInt64(loads * (bitShiftRight({h}, 35) % 2)) AS load_cache_hits,
        loads * 2000000000 AS load_bytes, loads * 9000 AS load_ms_sum,
        tasks * 80.0 AS cpu_seconds, tasks * 60.0 AS gpu_seconds,
        toDecimal128(tasks * 85, 6) AS wkf_cpu_seconds, toDecimal128(tasks * 62, 6) AS wkf_gpu_seconds,
        toDecimal128(tasks * 90, 6) AS kuber_cpu_seconds, toDecimal128(tasks * 61, 6) AS kuber_gpu_seconds,
        toDecimal128(requests * 0.013, 6) AS wkf_credits, toDecimal128(tasks * 0.5, 6) AS kuber_credits,
        wkf_credits + kuber_credits AS credits,
        toUInt64(bitShiftRight({h}, 40) % 4) AS audit_events, toUInt64(audit_events = 3) AS access_denied,
        toUInt64(bitShiftRight({h}, 42) % 2) AS transfers, transfers * 1000000 AS transfer_bytes, toUInt64(0) AS late_events"""


USAGE_COLUMNS = ("window_start, tenant_id, department_id, project_id, user_id, model, model_version, checkpoint_id, "
                 "checkpoint_version, requests, errors, errors_by_type, tokens_in, tokens_out, latency_ms_sum, "
                 "latency_hist, tasks, task_failures, task_retries, task_queue_ms_sum, task_load_ms_sum, task_init_ms_sum, "
                 "task_inference_ms_sum, task_duration_ms_sum, loads, load_cache_hits, load_bytes, load_ms_sum, "
                 "cpu_seconds, gpu_seconds, wkf_cpu_seconds, wkf_gpu_seconds, kuber_cpu_seconds, kuber_gpu_seconds, "
                 "wkf_credits, kuber_credits, credits, audit_events, access_denied, transfers, transfer_bytes, late_events")


def generation_statements(db: str, vol: Volume, now: datetime) -> list[tuple[str, str]]:
    """(what, SQL) in order. The rollups are generated as tables of their own (not summed from usage_10s), each over
    the period readers take it for; usage_10s inserts still run the materialized views, as the loader's do."""
    end = int(now.replace(minute=0, second=0, microsecond=0).timestamp())
    start = end - vol.days * 86400
    per_key_s = vol.events_per_s / vol.keys  # events per second per key
    out = []

    def usage(table: str, window_s: int, since: int, until: int, chunk_rows: int = 20_000_000) -> None:
        windows = (until - since) // window_s
        per_chunk = max(1, chunk_rows // vol.keys)
        for first in range(0, windows, per_chunk):
            n = min(per_chunk, windows - first) * vol.keys
            out.append((f"{table} windows {first}..{first + n // vol.keys} of {windows}", f"""
                INSERT INTO {db}.{table} ({USAGE_COLUMNS})
                SELECT toDateTime({since + first * window_s} + intDiv(number, {vol.keys}) * {window_s}, 'UTC') AS window_start,
                       {_key_dims(f'(number % {vol.keys})', vol)}, {_usage_metrics(f'{per_key_s * window_s}')}
                FROM numbers({n})"""))

    usage("usage_1d", 86400, start, end)
    usage("usage_1h", 3600, start, end)
    usage("usage_1m", 60, end - vol.minute_days * 86400, end)
    usage("usage_10s", 10, end - vol.tensec_hours * 3600, end, chunk_rows=2_000_000)

    facts = vol.per_year(vol.tasks_per_event)
    h = "cityHash64(number)"
    for first in range(0, facts, 10_000_000):
        n = min(10_000_000, facts - first)
        out.append((f"task_facts {first}..{first + n} of {facts}", f"""
            INSERT INTO {db}.task_facts (task_id, attempt, status, tenant_id, department_id, project_id, user_id,
                base_model, model_version, checkpoint_id, checkpoint_version, node_id, host_name, vm_type, queued_at,
                started_at, finished_at, queue_ms, checkpoint_load_ms, init_ms, inference_ms, total_ms, input_bytes,
                output_bytes, error_type, enrichment_status, gpu_util_avg, gpu_util_max, gpu_mem_avg, gpu_mem_max,
                cpu_util_avg, ram_max, cpu_seconds, gpu_seconds, job_version, version)
            WITH cityHash64(n.number + {first}) AS h,
                 fromUnixTimestamp64Milli(toInt64(({start} + ({first} + n.number) * {vol.days * 86400} / {facts}) * 1000)
                     - toInt64(60000 + bitShiftRight(h, 16) % 840000)) AS finished,
                 finished - toIntervalMillisecond(toInt64(600 + bitShiftRight(h, 24) % 900000)) AS started,
                 started - toIntervalMillisecond(toInt64(bitShiftRight(h, 28) % 60000)) AS queued,
                 multiIf((h % 100) < 90, 'finished', (h % 100) < 98, 'failed', 'orphaned') AS state,
                 bitShiftRight(h, 8) % {vol.nodes} AS node
            SELECT concat('task-', toString(n.number + {first})), toUInt16(1 + bitShiftRight(h, 50) % 2), state,
                   k.tenant_id, k.department_id, k.project_id, k.user_id, k.model, k.model_version, k.checkpoint_id,
                   k.checkpoint_version, concat('node-', toString(node)), concat('host-', toString(node)),
                   ['NV6', 'NC24', 'D8s', 'ND40'][1 + node % 4], queued, started, finished,
                   toUInt32(dateDiff('millisecond', queued, started)), toUInt32(bitShiftRight(h, 30) % 20000),
                   toUInt32(bitShiftRight(h, 33) % 5000), toUInt32(dateDiff('millisecond', started, finished) * 0.8),
                   toUInt32(dateDiff('millisecond', queued, finished)), bitShiftRight(h, 36) % 100000, bitShiftRight(h, 37) % 200000,
                   if(state = 'failed', ['timeout', 'oom', 'bad_input'][1 + bitShiftRight(h, 38) % 3], ''),
                   if(bitShiftRight(h, 40) % 20 = 0, 'unavailable', 'ok'), toFloat32(bitShiftRight(h, 41) % 100),
                   toFloat32(bitShiftRight(h, 42) % 100), bitShiftRight(h, 43) % 80000000000, bitShiftRight(h, 44) % 80000000000,
                   toFloat32(bitShiftRight(h, 45) % 100), bitShiftRight(h, 46) % 512000000000, dateDiff('second', started, finished) * 8.0,
                   dateDiff('second', started, finished) * 1.0, 'bench', toUInt64(2)
            FROM numbers({n}) AS n
            LEFT JOIN (SELECT number AS kk, {_key_dims('number', vol)} FROM numbers({vol.keys})) AS k
                ON k.kk = cityHash64(n.number + {first}) % {vol.keys}"""))

    audits = vol.per_year(vol.audit_per_event)
    for first in range(0, audits, 20_000_000):
        n = min(20_000_000, audits - first)
        out.append((f"audit_log {first}..{first + n} of {audits}", f"""
            INSERT INTO {db}.audit_log (event_id, ts, topic, event_name, tenant_id, department_id, project_id, user_id,
                node_id, host_name, subject, action, resource, decision, policy_id, details)
            SELECT generateUUIDv4(number), fromUnixTimestamp64Milli(toInt64(({start} + ({first} + number) * {vol.days * 86400}
                       / {audits}) * 1000)),
                   ['pbac_access', 'asset_access', 'pbac_service', 'asset_transfer'][1 + {h} % 4] AS topic,
                   concat(topic, '.checked'), concat('t', toString(bitShiftRight({h}, 8) % {vol.users} % {vol.tenants})) AS tenant,
                   concat(tenant, '-d', toString(intDiv(bitShiftRight({h}, 8) % {vol.users}, {vol.tenants}) % 25)) AS department,
                   concat(department, '-p', toString(bitShiftRight({h}, 20) % 10)), concat('u', toString(bitShiftRight({h}, 8) % {vol.users})),
                   '', '', concat('svc-', toString(bitShiftRight({h}, 24) % 50)), ['read', 'write', 'delete'][1 + bitShiftRight({h}, 26) % 3],
                   concat('ck-', toString(bitShiftRight({h}, 28) % 64)), if(bitShiftRight({h}, 30) % 20 = 0, 'deny', 'allow'),
                   concat('policy-', toString(bitShiftRight({h}, 32) % 10)),
                   if(topic = 'asset_access', '{{"asset_type":"checkpoint","bytes":1024}}', '{{}}')
            FROM numbers({n})"""))

    dlq = vol.per_year(vol.dlq_per_event)
    out.append((f"dlq_events {dlq}", f"""
        INSERT INTO {db}.dlq_events (ts, reason, message, topic, kafka_partition, kafka_offset, payload, payload_encoding,
            job_version, rejected_at)
        SELECT fromUnixTimestamp64Milli(toInt64(({start} + number * {vol.days * 86400} / {max(dlq, 1)}) * 1000)) AS ts,
               ['schema', 'json', 'too_large', 'unknown_topic'][1 + {h} % 4], 'synthetic',
               ['xumi.llm', 'wkf.task', 'kuber.pod'][1 + bitShiftRight({h}, 4) % 3], toUInt32(bitShiftRight({h}, 8) % 12), number,
               '{{"bad": true}}', 'utf-8', 'bench', ts
        FROM numbers({dlq})"""))

    windows = vol.ingest_days * 8640
    out.append((f"ingest_stats_10s {windows} windows x 8 topics", f"""
        INSERT INTO {db}.ingest_stats_10s (window_start, topic, consumed, valid, dlq, duplicates, late)
        SELECT toDateTime({end - vol.ingest_days * 86400} + intDiv(number, 8) * 10, 'UTC'),
               ['xumi.llm', 'wkf.task', 'kuber.pod', 'pbac.access', 'asset.access', 'xumi.load', 'wkf.credit',
                'kuber.credit'][1 + number % 8], toUInt64({vol.events_per_s * 10 / 8} + {h} % 7) AS c, c - 1,
               toUInt64(1), toUInt64(0), toUInt64({h} % 2)
        FROM numbers({windows * 8})"""))
    return out


def generate(writer: Client, db: str, vol: Volume, now: datetime, say: Callable[[str], None] = print) -> None:
    started = time.monotonic()
    for what, sql in generation_statements(db, vol, now):
        t = time.monotonic()
        # optimize_on_insert = 0: the generated rows never share a key, so aggregating each block on insert (3x the
        # time here) would find nothing to merge
        writer.command(sql, settings={"max_execution_time": 0, "max_insert_threads": 2, "max_threads": 2,
                                      "optimize_on_insert": 0})
        say(f"  {what}: {time.monotonic() - t:.1f} s")
    say(f"generated in {time.monotonic() - started:.0f} s")


# --------------------------------------------------------------------------------------------------------------
# The queries


def _interval_s(panel: dict[str, Any], range_s: int) -> int:
    """Grafana's $__interval: range / max data points, rounded up to a step Grafana uses, at least the panel's minimum."""
    floor = grafana_sql_duration(panel.get("interval", "1s"))
    raw = max(1, range_s // int(panel.get("maxDataPoints", MAX_POINTS)))
    nice = next((step for step in (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800,
                                   21600, 43200, 86400, 604800, 2592000) if step >= raw), 2592000)
    return max(nice, floor)


def grafana_sql_duration(text: str) -> int:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text)
    return 0 if not match else int(match.group(1)) * {"ms": 0, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def panel_queries(reader: Client, start: datetime, end: datetime) -> list[Query]:
    """Every ClickHouse query of every dashboard (its variables first, run as Grafana runs them, at All)."""
    out: list[Query] = []
    range_s = int((end - start).total_seconds())
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        variables: dict[str, dict[str, Any]] = {}
        everything: dict[str, list[str]] = {}
        for var in board["templating"]["list"]:
            sql = grafana_sql.expand_variables(var["query"]["rawSql"], everything, variables)
            sql = grafana_sql.expand_clickhouse_macros(sql, start, end, _interval_s({}, range_s))
            out.append(Query("variable", f"{path.stem}: ${var['name']}", sql))
            options = [str(r[0]) for r in reader.query(sql).result_rows]
            variables[var["name"]] = {**var, "options": options or [""]}
            everything[var["name"]] = [grafana_sql.ALL]
        for panel in grafana_sql.panels(board):
            for target in panel.get("targets", []):
                if not target.get("rawSql"):
                    continue
                sql = grafana_sql.expand_variables(target["rawSql"], everything, variables)
                sql = grafana_sql.expand_clickhouse_macros(sql, start, end, _interval_s(panel, range_s))
                out.append(Query("panel", f"{path.stem}: {panel['title']}", sql))
    return out


def summary_queries(db: str, start: datetime, end: datetime) -> list[Query]:
    span = {"since": int(start.timestamp()), "until": int(end.timestamp())}
    return [Query("summary", title, sql, span) for title, sql in demo.role_summaries(db).items()]


def report_queries(db: str, end: datetime) -> list[Query]:
    """The monthly chargeback: the last whole calendar month before `end`, per department and project and cost item."""
    first = (end.replace(day=1) - timedelta(days=1)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last = end.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return [Query("report", f"monthly chargeback, every department ({first:%Y-%m})", f"""
        SELECT tenant_id, department_id, project_id, sum(token_cost) AS tokens, sum(gpu_cost) AS gpu,
               sum(cpu_cost) AS cpu, sum(load_cost) AS checkpoint_loads, sum(total_cost) AS total,
               arraySort(groupUniqArrayArray(unpriced)) AS unpriced, groupUniqArray(catalogue_version) AS versions
        FROM {db}.cost_span(lo = {{lo:DateTime('UTC')}}, hi = {{hi:DateTime('UTC')}}, step = 86400)
        GROUP BY tenant_id, department_id, project_id
        ORDER BY tenant_id, department_id, project_id""", {"lo": first, "hi": last})]


class _Recorder:
    """Stands in for the API's ClickHouse reader: keeps each query the endpoint sends, answers with no rows."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def query(self, sql: str, parameters: dict[str, Any], derive: Any = None) -> list[dict[str, Any]]:
        self.sent.append((sql.replace("{db}", self.db), dict(parameters)))
        return []

    async def fetch(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []


# (role, endpoint, its arguments besides the range): the API's ClickHouse queries, as the routers build them
API_CALLS: list[tuple[str, str, Callable[..., Any], dict[str, Any]]] = [
    ("financial_director", "/v1/usage?granularity=day&group_by=department", usage.usage,
     {"granularity": usage.Granularity.DAY, "group_by": [usage.Dimension("department")]}),
    ("financial_director", "/v1/costs?granularity=day&group_by=department", usage.costs,
     {"granularity": usage.Granularity.DAY, "group_by": [usage.Dimension("department")]}),
    ("financial_director", "/v1/costs?granularity=month&group_by=project", usage.costs,
     {"granularity": usage.Granularity.MONTH, "group_by": [usage.Dimension("project")]}),
    ("financial_director", "/v1/costs/runs", usage.run_costs, {}),
    ("pipeline_td", "/v1/models/performance", performance.performance, {}),
    ("pipeline_td", "/v1/errors/top", performance.errors_top, {}),
    ("pipeline_td", "/v1/tasks", tasks.tasks, {"limit": 50}),
    ("admin", "/v1/vms", infra.vms, {}),
    ("admin", "/v1/pipeline/health", infra.pipeline_health, {}),
    ("admin", "/v1/pipeline/dlq", infra.pipeline_dlq, {}),
    ("admin", "/v1/access", access_router.access, {"limit": 50}),
]


def api_queries(db: str, tenants: list[str], start: datetime, end: datetime) -> list[Query]:
    """Each endpoint run against a recorder over [start, end), capped at its role's longest range."""
    import inspect

    from fastapi.params import Depends as DependsParam
    from fastapi.params import Param

    out = []
    for role, label, endpoint, extra in API_CALLS:
        policy = ROLES[role]
        lo = max(start, end - policy.max_range)
        recorder = _Recorder(db)
        state = SimpleNamespace(ch=recorder, pg=recorder, settings=SimpleNamespace(api_max_rows=10_000))
        scope = SimpleNamespace(caller=SimpleNamespace(policy=policy, erased=frozenset(), role=role), tenants=tenants,
                                privacy=None, state=state, ch=recorder)
        request = SimpleNamespace(scope={"state": {"audit": SimpleNamespace()}})
        kwargs: dict[str, Any] = {}
        for name, param in inspect.signature(endpoint).parameters.items():
            if name in ("request", "scope"):
                continue
            default = param.default
            if isinstance(default, DependsParam):
                continue
            kwargs[name] = default.default if isinstance(default, Param) else default
            if kwargs[name] is ...:
                kwargs[name] = None
        kwargs.update({"from_": lo.isoformat(), "to": end.isoformat(), **extra})
        asyncio.run(endpoint(request, scope, **kwargs))
        suffix = f" ({(end - lo).days} days: the role's limit)" if lo > start else ""
        for n, (sql, params) in enumerate(recorder.sent, 1):
            out.append(Query("api", f"{role} {label}{f' #{n}' if len(recorder.sent) > 1 else ''}{suffix}", sql, params))
    return out


# --------------------------------------------------------------------------------------------------------------
# Measuring


def _rss_kb(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def measure(reader: Client, query: Query, range_name: str, runs: int, server_pid: int | None,
            settings: dict[str, Any]) -> Timing:
    """Run the query `runs` times; the server's peak RSS above its RSS before each run (Linux clear_refs)."""
    timing = Timing(query, range_name)
    peaks = []
    for _ in range(runs):
        before = 0
        if server_pid:
            Path(f"/proc/{server_pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            before = _rss_kb(server_pid, "VmRSS")
        t = time.perf_counter()
        try:
            reader.query(query.sql, parameters=query.params, settings=settings)
        except Exception as exc:  # a timeout or the memory cap: recorded, the other queries go on
            timing.error = str(exc).splitlines()[0][:160]
            break
        timing.seconds.append(time.perf_counter() - t)
        if server_pid:
            peaks.append((_rss_kb(server_pid, "VmHWM") - before) / 1024)
    timing.peak_mb = max(0.0, max(peaks)) if peaks else None
    if not timing.error:
        timing.rows_read = rows_selected(reader, query, settings)
    return timing


def rows_selected(reader: Client, query: Query, settings: dict[str, Any]) -> int:
    """Rows of the granules the MergeTree indexes select for the query (EXPLAIN ESTIMATE): what it reads from the
    tables. (The dev server's summary counts result rows: chdb does not report rows read.)"""
    try:
        rows = reader.query("EXPLAIN ESTIMATE " + query.sql, parameters=query.params, settings=settings).result_rows
    except Exception:
        return -1
    return sum(int(r[3]) for r in rows)


def run_all(reader: Client, db: str, vol: Volume, ranges: list[tuple[str, timedelta]], now: datetime, runs: int,
            server_pid: int | None, settings: dict[str, Any], say: Callable[[str], None] = print,
            only: str | None = None) -> list[Timing]:
    end = now.replace(second=0, microsecond=0)
    tenants = [f"t{n}" for n in range(vol.tenants)]
    timings = []
    for range_name, length in ranges:
        start = end - length
        queries = (panel_queries(reader, start, end) + summary_queries(db, start, end) + api_queries(db, tenants, start, end)
                   + report_queries(db, end))
        queries = [q for q in queries if only is None or re.search(only, q.name)]
        say(f"\nrange {range_name} ({start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC): {len(queries)} queries x {runs} runs")
        for query in queries:
            timing = measure(reader, query, range_name, runs, server_pid, settings)
            say(row(timing))
            timings.append(timing)
    return timings


def row(t: Timing) -> str:
    flag = "FAILED" if t.error else ("> 1 s" if t.p95 > SLOW_S else "")
    peak = "" if t.peak_mb is None else f"{t.peak_mb:8.0f}"
    if t.error:
        return f"  {t.range_name:>5} {t.query.group:8} {t.query.name[:78]:78} {'':>7} {'':>7} {'':>13} {peak:>8}  FAILED: {t.error}"
    return (f"  {t.range_name:>5} {t.query.group:8} {t.query.name[:78]:78} {t.p50:7.3f} {t.p95:7.3f} {t.rows_read:13,}"
            f" {peak:>8}  {flag}")


def report(timings: list[Timing], say: Callable[[str], None] = print) -> None:
    say(f"\n  {'range':>5} {'group':8} {'query':78} {'p50 s':>7} {'p95 s':>7} {'rows est.':>13} {'peak MB':>8}")
    for t in timings:
        say(row(t))
    for range_name in dict.fromkeys(t.range_name for t in timings):
        mine = [t for t in timings if t.range_name == range_name]
        fast = sum(1 for t in mine if not t.error and t.p95 <= SLOW_S)
        mid = sum(1 for t in mine if not t.error and SLOW_S < t.p95 <= 2)
        slow = sum(1 for t in mine if not t.error and t.p95 > 2)
        failed = sum(1 for t in mine if t.error)
        say(f"range {range_name}: {len(mine)} queries: p95 <= 1 s {fast}, 1-2 s {mid}, > 2 s {slow}, failed {failed}")


# --------------------------------------------------------------------------------------------------------------
# The server, and the command line


def start_server(workdir: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """A dev ClickHouse server on a free loopback port: (process, writer URL, reader URL)."""
    logins = {"default": secrets.token_urlsafe(16), "reader": secrets.token_urlsafe(16)}
    write_users(workdir / "users.yaml", {"default": (logins["default"], False), "reader": (logins["reader"], True)})
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    log = open(workdir / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "dev.chdb_server", "--path", str(workdir / "data"), "--port", "0",
                             "--users", str(workdir / "users.yaml")], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=log)
    log.close()
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    match = re.search(r"listening on http://(\S+?),", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the dev ClickHouse server did not start: {line!r}; see {workdir / 'server.log'}")
    host = match.group(1)
    return (proc, f"http://default:{logins['default']}@{host}", f"http://reader:{logins['reader']}@{host}")


def prepare(writer: Client, db: str, vol: Volume, now: datetime, say: Callable[[str], None] = print) -> None:
    """A fresh database: migrations, history, then the example catalogue (which prices every day: timed)."""
    writer.command(f"DROP DATABASE IF EXISTS {db}")
    migrate(writer, db, retention_months=vol.months + 1, say=lambda _: None)
    generate(writer, db, vol, now, say)
    t = time.monotonic()
    prices.load(writer, db, prices.read_catalogue(PRICES), say=lambda line: say("  " + line) if "priced" in line else None)
    # the rollups were generated directly, so no insert noted their days: those the catalogue does not cover (usage
    # without a price, shown as unpriced) are priced here, as the refresher would price them
    priced = {row[0] for row in writer.query(f"SELECT DISTINCT toDate(window_start) FROM {db}.costs_1d").result_rows}
    rest = [day for day in costs.days_with_usage(writer, db) if day not in priced]
    costs.refresh(writer, db, rest, say=lambda _: None)
    say(f"price catalogue loaded, {vol.days} days priced into costs_1h / costs_1d and the VM cost tables in "
        f"{time.monotonic() - t:.0f} s")


def catch_up(writer: Client, db: str, vol: Volume, say: Callable[[str], None] = print) -> None:
    """Data generated before a migration: apply it, and compute what the refresher fills per day with runs."""
    applied = migrate(writer, db, retention_months=vol.months + 1, say=lambda _: None)
    if applied:
        t = time.monotonic()
        say(f"applied {', '.join(m.name for m in applied)}: computing the VM cost tables and task sums again")
        costs.refresh(writer, db, days=[], vm_days=costs.days_with_runs(writer, db), say=lambda line: say("  " + line))
        say(f"  done in {time.monotonic() - t:.0f} s")


def parse_ranges(text: str) -> list[tuple[str, timedelta]]:
    out = []
    for part in text.split(","):
        match = re.fullmatch(r"(\d+)([hd])", part.strip())
        if not match:
            raise argparse.ArgumentTypeError(f"range {part!r}: write e.g. 24h, 30d, 365d")
        n = int(match.group(1))
        out.append((part.strip(), timedelta(hours=n) if match.group(2) == "h" else timedelta(days=n)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/bench_history.py", description=__doc__.splitlines()[0])
    full = Volume()
    parser.add_argument("--users", type=int, default=full.users)
    parser.add_argument("--keys", type=int, default=full.keys, help="usage keys (tenant .. checkpoint combinations)")
    parser.add_argument("--nodes", type=int, default=full.nodes)
    parser.add_argument("--events-per-s", type=float, default=full.events_per_s)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies users, keys, nodes and events/s (CI: 0.01)")
    parser.add_argument("--months", type=int, default=full.months)
    parser.add_argument("--minute-days", type=int, default=full.minute_days, help="days of usage_1m generated")
    parser.add_argument("--ingest-days", type=int, default=full.ingest_days, help="days of ingest_stats_10s generated")
    parser.add_argument("--ranges", type=parse_ranges, default=parse_ranges("30d,365d"), help="default 30d,365d")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=int, default=20, help="max_execution_time per query, seconds")
    parser.add_argument("--max-memory-gb", type=float, default=7.0, help="max_memory_usage per query")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / ".local" / "bench_history",
                        help="the dev server's data (kept for --reuse)")
    parser.add_argument("--reuse", action="store_true",
                        help="time the data --workdir already holds, after applying the migrations added since it was "
                        "generated (and, when any applied, computing the VM cost tables and task sums of every day "
                        "with runs again)")
    parser.add_argument("--only", help="time only queries whose name matches this regular expression")
    parser.add_argument("--database", default="bench_history")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.scale <= 0:
        parser.error("--runs and --scale must be positive")
    vol = replace(full, users=args.users, keys=args.keys, nodes=args.nodes, events_per_s=args.events_per_s,
                  months=args.months, minute_days=args.minute_days, ingest_days=args.ingest_days).scaled(args.scale)
    state = args.workdir / "state.json"
    if args.reuse:
        saved = json.loads(state.read_text())
        vol, now = Volume(**saved["volume"]), datetime.fromisoformat(saved["now"])
    else:
        shutil.rmtree(args.workdir, ignore_errors=True)
        now = datetime.now(timezone.utc)
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"volume: {vol}")
    proc, writer_url, reader_url = start_server(args.workdir)
    try:
        writer = clickhouse_connect.get_client(dsn=writer_url, send_receive_timeout=3600)
        if not args.reuse:
            prepare(writer, args.database, vol, now)
            state.write_text(json.dumps({"volume": vol.__dict__, "now": now.isoformat()}))
        else:
            catch_up(writer, args.database, vol)
        reader = clickhouse_connect.get_client(dsn=reader_url, database=args.database,
                                               send_receive_timeout=args.timeout + 60)
        counts = writer.query(f"SELECT table, sum(rows), formatReadableSize(sum(bytes_on_disk)) FROM system.parts "
                              f"WHERE database = '{args.database}' AND active GROUP BY table ORDER BY sum(rows) DESC").result_rows
        print("rows: " + ", ".join(f"{t} {n:,} ({size})" for t, n, size in counts if n))
        settings = {"max_execution_time": args.timeout, "max_memory_usage": int(args.max_memory_gb * 2**30),
                    "max_threads": 2}
        timings = run_all(reader, args.database, vol, args.ranges, now, args.runs, proc.pid, settings, only=args.only)
        report(timings)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
