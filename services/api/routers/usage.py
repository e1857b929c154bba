"""Usage and cost for a time range and granularity, by department / project / user / model / checkpoint."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from services.api import drill, params
from services.api.app import JsonBody, Scope, money, page, requires
from services.api.params import DIMENSION_COLUMNS, USAGE_SOURCE, Dimension, Granularity, TimeRange
from services.api.permissions import Metric
from services.api.problems import bad_parameter
from services.api.routers.common import (FROM_QUERY, LIMIT_QUERY, OFFSET_QUERY, TO_QUERY, cost_span, id_filter, id_filters,
                                         in_range, in_windows, show_people, span, tenant_where, user_filter)
from services.api.routers.models import CostRow, Page, RunCostRow, UsageRow

router = APIRouter(prefix="/v1", tags=["usage and cost"])

GROUP_QUERY = Query([], description="dimensions to break the totals down by (repeat the parameter)")


def _links(rows: list[dict[str, Any]], path: str, dims: list[str], rng: TimeRange, granularity: Granularity,
           scope: Scope) -> None:
    """Drill-down: each row's link to the level below (services/api/drill.py)."""
    for row in rows:
        links = drill.breakdown(path, row, dims, rng.json(), granularity.value, scope.caller.policy)
        if links:
            row["links"] = links


def _dims(group_by: list[Dimension]) -> list[str]:
    return [DIMENSION_COLUMNS[d] for d in dict.fromkeys(group_by)]


@router.get("/usage", response_model=Page[UsageRow], summary="Usage per bucket and tenant, broken down by dimensions")
async def usage(request: Request, scope: Scope = Depends(requires(Metric.USAGE)), from_: str | None = FROM_QUERY,
          to: str | None = TO_QUERY, granularity: Granularity = Granularity.HOUR, group_by: list[Dimension] = GROUP_QUERY,
          department: str | None = None, project: str | None = None, user: str | None = None, model: str | None = None,
          checkpoint: str | None = None, limit: int | None = LIMIT_QUERY, offset: int | None = OFFSET_QUERY) -> JsonBody:
    """Requests, errors, tokens, task runs, loads, transfers, allocated GPU / CPU seconds and credits, summed per
    bucket, from the windows (minute, hour or day) that overlap [from, to). Credits and seconds are exact decimals
    (strings)."""
    rng = params.time_range(from_, to, scope.caller.policy.max_range)
    limit, offset = params.page(limit, offset, scope.state.settings.api_max_rows)
    table, seconds, bucket = USAGE_SOURCE[granularity]
    where = in_windows(tenant_where(scope), "window_start", rng, seconds)
    id_filters(where, (("department", department, "department_id"), ("project", project, "project_id"),
                                ("model", model, "model"), ("checkpoint", checkpoint, "checkpoint_id")))
    await user_filter(where, scope, user)
    dims = _dims(group_by)
    keys = ", ".join(["bucket", "tenant_id", *dims])
    rows = await scope.ch.query(f"""
        SELECT {bucket} AS bucket, tenant_id, {''.join(d + ', ' for d in dims)}
               sum(requests) AS requests, sum(errors) AS errors, sum(tokens_in) AS tokens_in,
               sum(tokens_out) AS tokens_out, sum(tasks) AS tasks, sum(task_failures) AS task_failures,
               sum(loads) AS loads, sum(load_bytes) AS load_bytes, sum(transfers) AS transfers,
               sum(transfer_bytes) AS transfer_bytes,
               greatest(sum(wkf_gpu_seconds), sum(kuber_gpu_seconds)) AS gpu_seconds,
               greatest(sum(wkf_cpu_seconds), sum(kuber_cpu_seconds)) AS cpu_seconds,
               sum(credits) AS credits
        FROM {{db}}.{table} {where.sql()}
        GROUP BY {keys} ORDER BY {keys}
        LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}""", {**where.params, "limit": limit + 1, "offset": offset})
    for row in rows:
        row["tasks"], row["task_failures"] = int(row["tasks"]), int(row["task_failures"])
        for column in ("gpu_seconds", "cpu_seconds", "credits"):
            row[column] = money(row[column])
    show_people(rows, scope)
    _links(rows, "/v1/usage", dims, rng, granularity, scope)
    return page(request, rows, limit, offset, {**rng.json(), "granularity": granularity.value, "group_by": dims,
                                               "tenants": scope.tenants})


@router.get("/costs", response_model=Page[CostRow], summary="Chargeback per bucket and tenant, at the prices in force")
async def costs(request: Request, scope: Scope = Depends(requires(Metric.COSTS)), from_: str | None = FROM_QUERY,
          to: str | None = TO_QUERY, granularity: Granularity = Granularity.DAY, group_by: list[Dimension] = GROUP_QUERY,
          department: str | None = None, project: str | None = None, user: str | None = None, model: str | None = None,
          limit: int | None = LIMIT_QUERY, offset: int | None = OFFSET_QUERY) -> JsonBody:
    """Token, GPU, CPU and checkpoint-load cost (usage x the unit prices in force at each hour) of the hours that
    overlap [from, to), summed per bucket; exact decimals (strings) in the catalogue's currency. Read from the priced
    tables costs_1d / costs_1h (whole days from the daily one), which `python -m telemetry.costs refresh` keeps up
    to date: usage newer than its last run is not priced yet. Priced per hour: no minute buckets."""
    if granularity == Granularity.MINUTE:
        raise bad_parameter("granularity", "costs are priced per hour: use granularity hour, day or month")
    rng = params.time_range(from_, to, scope.caller.policy.max_range)
    limit, offset = params.page(limit, offset, scope.state.settings.api_max_rows)
    bucket = {Granularity.HOUR: "hour", Granularity.DAY: "toStartOfDay(hour)",
              Granularity.MONTH: "toDateTime(toStartOfMonth(hour), 'UTC')"}[granularity]
    where = in_windows(tenant_where(scope), "hour", rng, 3600)
    id_filters(where, (("department", department, "department_id"), ("project", project, "project_id"),
                                ("model", model, "model")))
    await user_filter(where, scope, user)
    dims = _dims(group_by)
    keys = ", ".join(["bucket", "tenant_id", *dims])
    rows = await scope.ch.query(f"""
        SELECT {bucket} AS bucket, tenant_id, {''.join(d + ', ' for d in dims)}
               sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out, sum(token_cost) AS token_cost,
               sum(gpu_cost) AS gpu_cost, sum(cpu_cost) AS cpu_cost, sum(load_cost) AS load_cost,
               sum(total_cost) AS total_cost, arraySort(groupUniqArrayArray(unpriced)) AS unpriced
        FROM {cost_span(3600 if granularity == Granularity.HOUR else 86400)} {where.sql()}
        GROUP BY {keys} ORDER BY {keys}
        LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}""", {**where.params, "limit": limit + 1, "offset": offset})
    for row in rows:
        for column in ("token_cost", "gpu_cost", "cpu_cost", "load_cost", "total_cost"):
            row[column] = money(row[column])
    show_people(rows, scope)
    _links(rows, "/v1/costs", dims, rng, granularity, scope)
    return page(request, rows, limit, offset, {**rng.json(), "granularity": granularity.value, "group_by": dims,
                                               "tenants": scope.tenants})


@router.get("/costs/runs", response_model=Page[RunCostRow], summary="Cost of model runs by model x checkpoint and outcome")
async def run_costs(request: Request, scope: Scope = Depends(requires(Metric.COSTS)), from_: str | None = FROM_QUERY,
              to: str | None = TO_QUERY, model: str | None = None, limit: int | None = LIMIT_QUERY,
              offset: int | None = OFFSET_QUERY) -> JsonBody:
    """Runs ended in [from, to) (task_costs, priced per day): their count, run time and cost per base model x checkpoint and status,
    so failed runs' cost stands beside successful ones'."""
    rng = params.time_range(from_, to, scope.caller.policy.max_range)
    limit, offset = params.page(limit, offset, scope.state.settings.api_max_rows)
    where = in_range(tenant_where(scope), "finished_at", rng)
    id_filter(where, "model", model, "base_model")
    keys = "tenant_id, base_model, checkpoint_id, status"
    rows = await scope.ch.query(f"""
        SELECT {keys}, count() AS runs, sum(duration_s) AS duration_s, sum(vm_cost) AS vm_cost,
               sum(gpu_cost) AS gpu_cost, sum(cpu_cost) AS cpu_cost, sum(total_cost) AS total_cost
        FROM {span('task_costs_span')} {where.sql()}
        GROUP BY {keys} ORDER BY {keys}
        LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}""", {**where.params, "limit": limit + 1, "offset": offset})
    for row in rows:
        row["duration_s"] = float(row["duration_s"])
        for column in ("vm_cost", "gpu_cost", "cpu_cost", "total_cost"):
            row[column] = money(row[column])
    return page(request, rows, limit, offset, {**rng.json(), "tenants": scope.tenants})
