"""VMs (activity, idle time, resources) and pipeline health (ingest counters, DLQ by reason, freshness)."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Request

from services.api import params
from services.api.app import JsonBody, Scope, money, page, requires
from services.api.permissions import Metric
from services.api.routers.common import (FROM_QUERY, LIMIT_QUERY, OFFSET_QUERY, TO_QUERY, Where, id_filter, in_range, span,
                                         in_windows, tenant_where)
from services.api.routers.models import DlqRow, Page, TopicHealthRow, VmRow

router = APIRouter(prefix="/v1", tags=["infrastructure and pipeline"])


@router.get("/vms", response_model=Page[VmRow], summary="VMs the caller's tenants ran on: busy time, resources, idle cost")
async def vms(request: Request, scope: Scope = Depends(requires(Metric.VMS)), from_: str | None = FROM_QUERY,
        to: str | None = TO_QUERY, vm_type: str | None = None, limit: int | None = LIMIT_QUERY,
        offset: int | None = OFFSET_QUERY) -> JsonBody:
    """Per node that ran an attempt of the caller's tenants ending in [from, to): those attempts, their busy time,
    the node's mean GPU / CPU use and peak RAM during them, and their share of the VM's cost. Nodes are shared
    between tenants, so idle time and its cost (vm_costs_span) are shown only for a node whose every attempt in
    the range was the caller's tenants' (dedicated); elsewhere they would describe other tenants' work."""
    rng = params.time_range(from_, to, scope.caller.policy.max_range)
    limit, offset = params.page(limit, offset, scope.state.settings.api_max_rows)
    mine = in_range(tenant_where(scope), "finished_at", rng).add("node_id != ''")
    id_filter(mine, "vm_type", vm_type, "vm_type")
    everyone = in_range(Where(), "finished_at", rng)
    hours = Where().add("hour >= toStartOfHour({since:DateTime64(3, 'UTC')}) AND hour < {until:DateTime64(3, 'UTC')}")
    rows = await scope.ch.query(f"""
        WITH mine AS (
            SELECT node_id, anyLast(host_name) AS host_name, anyLast(vm_type) AS vm_type, count() AS runs,
                   sum(if(started_at IS NULL, 0, greatest(toUnixTimestamp64Milli(finished_at)
                       - toUnixTimestamp64Milli(assumeNotNull(started_at)), 0))) / 1000 AS busy_seconds,
                   avg(gpu_util_avg) AS gpu_util_avg, avg(cpu_util_avg) AS cpu_util_avg, max(ram_max) AS ram_max
            FROM {{db}}.task_facts FINAL {mine.sql()} GROUP BY node_id),
        others AS (
            SELECT node_id, countIf(tenant_id NOT IN {{tenants:Array(String)}}) AS others
            FROM {{db}}.task_costs {everyone.sql()} AND node_id IN (SELECT node_id FROM mine) GROUP BY node_id),
        cost AS (
            SELECT node_id, sum(vm_cost) AS vm_cost FROM {span('task_costs_span')} {mine.sql()} GROUP BY node_id),
        activity AS (
            SELECT node_id, sum(observed_seconds) AS observed_seconds, sum(idle_seconds) AS idle_seconds,
                   sum(idle_cost) AS idle_cost
            FROM {span('vm_costs_span', hours=True)} {hours.sql()} AND node_id IN (SELECT node_id FROM mine) GROUP BY node_id)
        SELECT m.node_id AS node_id, m.host_name AS host_name, m.vm_type AS vm_type, m.runs AS runs,
               m.busy_seconds AS busy_seconds, m.gpu_util_avg AS gpu_util_avg, m.cpu_util_avg AS cpu_util_avg,
               m.ram_max AS ram_max, ifNull(c.vm_cost, 0) AS vm_cost, ifNull(o.others, 0) = 0 AS dedicated,
               a.observed_seconds AS observed_seconds, a.idle_seconds AS idle_seconds, a.idle_cost AS idle_cost
        FROM mine AS m
        LEFT JOIN others AS o ON o.node_id = m.node_id
        LEFT JOIN cost AS c ON c.node_id = m.node_id
        LEFT JOIN activity AS a ON a.node_id = m.node_id
        ORDER BY m.runs DESC, m.node_id
        LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}""",
        {**mine.params, **everyone.params, "limit": limit + 1, "offset": offset}, )
    for row in rows:
        dedicated = bool(row["dedicated"])
        row["dedicated"] = dedicated
        row["host_name"] = scope.privacy.host(row["host_name"])
        row["busy_seconds"] = round(float(row["busy_seconds"]), 3)
        for column in ("gpu_util_avg", "cpu_util_avg", "ram_max"):
            value = row[column]
            row[column] = None if value is None or value != value else round(float(value), 3)
        row["vm_cost"] = money(row["vm_cost"])
        if dedicated and row["observed_seconds"] is not None:
            row["observed_seconds"] = round(float(row["observed_seconds"]), 3)
            row["idle_seconds"] = round(float(row["idle_seconds"]), 3)
            row["idle_cost"] = money(row["idle_cost"])
        else:
            row["observed_seconds"] = row["idle_seconds"] = row["idle_cost"] = None
    return page(request, rows, limit, offset, {**rng.json(), "tenants": scope.tenants})


@router.get("/pipeline/health", response_model=Page[TopicHealthRow], summary="Ingest counters per topic and freshness")
async def pipeline_health(request: Request, scope: Scope = Depends(requires(Metric.PIPELINE)), from_: str | None = FROM_QUERY,
                    to: str | None = TO_QUERY, limit: int | None = LIMIT_QUERY, offset: int | None = OFFSET_QUERY) -> JsonBody:
    """Per source topic, the records of event-time windows in [from, to): consumed = valid + dlq + duplicates, and
    late. These are the platform's counts (a topic carries every tenant; no record or tenant is shown). meta.freshness
    gives, per tenant of the caller, the newest complete usage window and how far behind now it is."""
    rng = params.time_range(from_, to, scope.caller.policy.max_range)
    limit, offset = params.page(limit, offset, scope.state.settings.api_max_rows)
    where = in_windows(Where(), "window_start", rng, 10)
    rows = await scope.ch.query(f"""
        SELECT topic, sum(consumed) AS consumed, sum(valid) AS valid, sum(dlq) AS dlq, sum(duplicates) AS duplicates,
               sum(late) AS late
        FROM {{db}}.ingest_stats_10s {where.sql()} GROUP BY topic ORDER BY topic
        LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}""", {**where.params, "limit": limit + 1, "offset": offset})
    latest = await scope.ch.query("""
        SELECT tenant_id, max(window_start) AS latest FROM {db}.usage_10s
        WHERE tenant_id IN {tenants:Array(String)} GROUP BY tenant_id""", {"tenants": scope.tenants})
    now = datetime.now(timezone.utc)
    freshness = {}
    for r in latest:
        newest = r["latest"].replace(tzinfo=timezone.utc)
        freshness[r["tenant_id"]] = {"latest_window": params.iso(newest),
                                     "behind_s": round((now - newest).total_seconds() - 10, 1)}
    return page(request, rows, limit, offset, {**rng.json(), "tenants": scope.tenants, "freshness": freshness})


@router.get("/pipeline/dlq", response_model=Page[DlqRow], summary="DLQ records by topic and reason")
async def pipeline_dlq(request: Request, scope: Scope = Depends(requires(Metric.PIPELINE)), from_: str | None = FROM_QUERY,
                 to: str | None = TO_QUERY, topic: str | None = None, limit: int | None = LIMIT_QUERY,
                 offset: int | None = OFFSET_QUERY) -> JsonBody:
    """Records the job rejected (dlq_events), stamped in [from, to), counted per source topic and reason code. The
    records themselves stay out: a rejected record may belong to any tenant."""
    rng = params.time_range(from_, to, scope.caller.policy.max_range)
    limit, offset = params.page(limit, offset, scope.state.settings.api_max_rows)
    where = in_range(Where(), "ts", rng)
    id_filter(where, "topic", topic, "topic")
    rows = await scope.ch.query(f"""
        SELECT topic, reason, count() AS records, max(ts) AS last_at
        FROM {{db}}.dlq_events FINAL {where.sql()} GROUP BY topic, reason ORDER BY records DESC, topic, reason
        LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}""", {**where.params, "limit": limit + 1, "offset": offset})
    return page(request, rows, limit, offset, {**rng.json(), "tenants": scope.tenants})
