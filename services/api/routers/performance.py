"""Model x checkpoint performance, and seed 002's examples: per-minute model metrics, top errors, day-1 retention."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from pipeline import sketch
from services.api import params
from services.api.app import JsonBody, Scope, page, requires, single
from services.api.permissions import Metric
from services.api.problems import bad_parameter
from services.api.routers.common import (FROM_QUERY, LIMIT_QUERY, OFFSET_QUERY, TO_QUERY, id_filter, in_range,
                                         in_windows, tenant_where, usage_span)
from services.api.routers.models import ErrorRow, MinuteRow, ModelRow, Page, Retention, Single

router = APIRouter(prefix="/v1", tags=["models"])


def _quantiles(hist: dict[int, int], *qs: float) -> list[float | None]:
    return [None if value is None else round(value, 3) for value in sketch.quantiles(hist, qs)]


def _latency_p50_p95(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's histogram replaced by its p50 and p95 (cached with the rows: the sketch is the costly part)."""
    for row in rows:
        row["latency_ms_p50"], row["latency_ms_p95"] = _quantiles(row.pop("hist") or {}, 0.5, 0.95)
    return rows


def _latency_p50_p95_p99(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["latency_ms_p50"], row["latency_ms_p95"], row["latency_ms_p99"] = _quantiles(row.pop("hist") or {},
                                                                                         0.5, 0.95, 0.99)
    return rows


@router.get("/models/performance", response_model=Page[ModelRow], summary="Model x checkpoint: runs, failures, latency")
async def performance(request: Request, scope: Scope = Depends(requires(Metric.MODELS)), from_: str | None = FROM_QUERY,
                to: str | None = TO_QUERY, model: str | None = None, checkpoint: str | None = None,
                limit: int | None = LIMIT_QUERY, offset: int | None = OFFSET_QUERY) -> JsonBody:
    """Per base model x version x checkpoint: task attempts ended in [from, to) (task_facts), their failure rate and
    inference-time percentiles, the mean checkpoint load time, and the LLM requests of the same range with latency
    percentiles from the mergeable sketch. Ordered by runs, most first."""
    rng = params.time_range(from_, to, scope.caller.policy.max_range)
    limit, offset = params.page(limit, offset, scope.state.settings.api_max_rows)
    facts = in_range(tenant_where(scope), "finished_at", rng).add("status IN ('finished', 'failed')")
    id_filter(facts, "model", model, "base_model")
    id_filter(facts, "checkpoint", checkpoint, "checkpoint_id")
    keys = "tenant_id, base_model, model_version, checkpoint_id"
    rows = await scope.ch.query(f"""
        SELECT {keys}, count() AS runs, countIf(status = 'failed') AS failures,
               quantilesExact(0.5, 0.95, 0.99)(inference_ms) AS q, avg(checkpoint_load_ms) AS load_ms_avg
        FROM {{db}}.task_facts FINAL {facts.sql()}
        GROUP BY {keys} ORDER BY runs DESC, {keys}
        LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}""", {**facts.params, "limit": limit + 1, "offset": offset})
    requests = in_windows(tenant_where(scope), "window_start", rng, 60)
    id_filter(requests, "model", model, "model")
    id_filter(requests, "checkpoint", checkpoint, "checkpoint_id")
    llm = {(r["tenant_id"], r["model"], r["model_version"], r["checkpoint_id"]): r for r in await scope.ch.query(f"""
        SELECT tenant_id, model, model_version, checkpoint_id, sum(requests) AS requests, sum(errors) AS errors,
               sumMap(latency_hist) AS hist
        FROM {usage_span(rng)} {requests.sql()}
        GROUP BY tenant_id, model, model_version, checkpoint_id HAVING requests > 0""", requests.params,
        derive=_latency_p50_p95_p99)}
    out = []
    for row in rows:
        p50, p95, p99 = (None if v is None or v != v else float(v) for v in (row.pop("q") or [None] * 3))
        found = llm.get((row["tenant_id"], row["base_model"], row["model_version"], row["checkpoint_id"]), {})
        load = row["load_ms_avg"]
        out.append({**row, "failure_rate": round(row["failures"] / row["runs"], 6) if row["runs"] else None,
                    "inference_ms_p50": p50, "inference_ms_p95": p95, "inference_ms_p99": p99,
                    "load_ms_avg": None if load is None or load != load else round(float(load), 3),
                    "requests": int(found.get("requests", 0)), "request_errors": int(found.get("errors", 0)),
                    "latency_ms_p50": found.get("latency_ms_p50"), "latency_ms_p95": found.get("latency_ms_p95"),
                    "latency_ms_p99": found.get("latency_ms_p99")})
    return page(request, out, limit, offset, {**rng.json(), "tenants": scope.tenants})


@router.get("/metrics/minute", response_model=Page[MinuteRow], summary="Per-minute request metrics per model (seed 002)")
async def metrics_minute(request: Request, scope: Scope = Depends(requires(Metric.MODELS)),
                   model_id: str | None = Query(None, description="base model name, e.g. xumi-base-7b"),
                   from_: str | None = FROM_QUERY, to: str | None = TO_QUERY, limit: int | None = LIMIT_QUERY,
                   offset: int | None = OFFSET_QUERY) -> JsonBody:
    """Seed 002's `GET /v1/metrics/minute?model_id=&from=&to=`: requests, errors, p50 / p95 latency and tokens per
    minute and model version, from usage_1m."""
    rng = params.time_range(from_, to, scope.caller.policy.max_range)
    limit, offset = params.page(limit, offset, scope.state.settings.api_max_rows)
    where = in_windows(tenant_where(scope), "window_start", rng, 60)
    id_filter(where, "model_id", model_id, "model")
    rows = await scope.ch.query(f"""
        SELECT window_start AS minute, model, model_version, sum(requests) AS requests, sum(errors) AS errors,
               sumMap(latency_hist) AS hist, sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out
        FROM {{db}}.usage_1m {where.sql()}
        GROUP BY minute, model, model_version HAVING requests > 0 ORDER BY minute, model, model_version
        LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}""", {**where.params, "limit": limit + 1, "offset": offset},
        derive=_latency_p50_p95)
    return page(request, rows, limit, offset, {**rng.json(), "tenants": scope.tenants})


@router.get("/errors/top", response_model=Page[ErrorRow], summary="Top error types of requests and runs (seed 002)")
async def errors_top(request: Request, scope: Scope = Depends(requires(Metric.ERRORS)), from_: str | None = FROM_QUERY,
               to: str | None = TO_QUERY, limit: int | None = LIMIT_QUERY, offset: int | None = OFFSET_QUERY) -> JsonBody:
    """Seed 002's `GET /v1/errors/top?from=&to=`: error types of LLM requests (usage errors_by_type) and of failed
    task attempts (task_facts), most frequent first, with their share of that source's errors."""
    rng = params.time_range(from_, to, scope.caller.policy.max_range)
    limit, offset = params.page(limit, offset, scope.state.settings.api_max_rows)
    usage = in_windows(tenant_where(scope), "window_start", rng, 60)
    facts = in_range(tenant_where(scope), "finished_at", rng).add("status = 'failed'")
    rows = await scope.ch.query(f"""
        SELECT source, error_type, count, count / sum(count) OVER (PARTITION BY source) AS share
        FROM (
            SELECT 'request' AS source, kv.1 AS error_type, toUInt64(sum(kv.2)) AS count
            FROM {usage_span(rng)} ARRAY JOIN CAST(errors_by_type, 'Array(Tuple(String, UInt64))') AS kv {usage.sql()}
            GROUP BY error_type
            UNION ALL
            SELECT 'task' AS source, if(error_type = '', '(none)', error_type) AS error_type, count() AS count
            FROM {{db}}.task_facts FINAL {facts.sql()}
            GROUP BY error_type)
        ORDER BY count DESC, source, error_type
        LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}""", {**usage.params, **facts.params, "limit": limit + 1,
                                                            "offset": offset})
    for row in rows:
        row["share"] = round(float(row["share"]), 6)
    return page(request, rows, limit, offset, {**rng.json(), "tenants": scope.tenants})


@router.get("/retention/d1", response_model=Single[list[Retention]], summary="Day-1 retention of a cohort (seed 002)")
async def retention_d1(request: Request, scope: Scope = Depends(requires(Metric.RETENTION)),
                 cohort_date: date = Query(..., description="the day (UTC) the cohort's users were first active")) -> JsonBody:
    """Seed 002's `GET /v1/retention/d1?cohort_date=`: per tenant, the users whose first LLM request (within the
    retention ClickHouse keeps) was on cohort_date, and how many of them sent one the next day."""
    today = datetime.now(timezone.utc).date()
    if not params.EARLIEST.date() <= cohort_date <= today:
        raise bad_parameter("cohort_date", f"cohort_date={cohort_date} must lie between {params.EARLIEST.date()} and today")
    day = datetime.combine(cohort_date, datetime.min.time(), timezone.utc)
    params.time_range(params.iso(day), params.iso(day + timedelta(days=2)), scope.caller.policy.max_range,
                      now=max(datetime.now(timezone.utc), day + timedelta(days=2)))
    where = tenant_where(scope).add("requests > 0")
    rows: list[dict[str, Any]] = await scope.ch.query(f"""
        SELECT tenant_id, countIf(first = {{day:Date}}) AS cohort_users,
               countIf(first = {{day:Date}} AND next_day) AS retained
        FROM (SELECT tenant_id, user_id, min(toDate(window_start)) AS first,
                     countIf(toDate(window_start) = {{day:Date}} + 1) > 0 AS next_day
              FROM {{db}}.usage_1d {where.sql()} GROUP BY tenant_id, user_id)
        GROUP BY tenant_id ORDER BY tenant_id""", {**where.params, "day": cohort_date})
    out = [{"cohort_date": cohort_date.isoformat(), "tenant_id": r["tenant_id"], "cohort_users": r["cohort_users"],
            "retained": r["retained"],
            "rate": round(r["retained"] / r["cohort_users"], 6) if r["cohort_users"] else None} for r in rows]
    return single(request, out, len(out), {"tenants": scope.tenants})
