"""Quota limits: list, set (a soft and a hard level) and remove them, and their change history. Only through the
set_quota_limit() function of PostgreSQL, which records every change (who, when, why, before and after) in the same
transaction; the quota service reloads limits within QUOTA_REFRESH_S."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from fastapi import APIRouter, Depends, Query, Request

from services.api import params
from services.api.app import JsonBody, Scope, audit_of, money, page, requires, single
from services.api.permissions import Metric
from services.api.problems import bad_parameter
from services.api.routers.common import LIMIT_QUERY, OFFSET_QUERY
from services.api.routers.models import Page, QuotaLimit, QuotaLimitChange, QuotaLimitRequest, Single
from telemetry.settings import QUOTA_METRICS

router = APIRouter(prefix="/v1", tags=["quota limits"])
SCOPES = ("tenant", "department", "project", "user")
PERIODS = ("day", "month")
MAX_LEVEL = Decimal(10) ** 32  # numeric(38, 6)


def level(name: str, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(value.strip())
    except (InvalidOperation, AttributeError):
        raise bad_parameter(name, f"{name}={str(value)[:40]!r} is not a decimal number") from None
    if not number.is_finite() or number < 0 or number >= MAX_LEVEL:
        raise bad_parameter(name, f"{name}={value[:40]!r} must be from 0 to 1e32")
    if number.as_tuple().exponent < -6:  # type: ignore[operator]
        raise bad_parameter(name, f"{name}={value[:40]!r} has more than 6 decimals")
    return number


def _row(values: tuple) -> dict:
    tenant, scope, scope_id, metric, period, soft, hard, updated_at, updated_by = values
    return {"tenant_id": tenant, "scope": scope, "scope_id": scope_id, "metric": metric, "period": period,
            "soft_limit": money(soft), "hard_limit": money(hard), "updated_at": params.iso(updated_at),
            "updated_by": updated_by}


@router.get("/quota-limits", response_model=Page[QuotaLimit], summary="Quota limits of the caller's tenants")
async def list_limits(request: Request, scope: Scope = Depends(requires(Metric.QUOTA_LIMITS)),
                      limit: int | None = LIMIT_QUERY, offset: int | None = OFFSET_QUERY) -> JsonBody:
    limit, offset = params.page(limit, offset, scope.state.settings.api_max_rows)
    rows = await scope.state.pg.fetch("""
        SELECT tenant_id, scope, scope_id, metric, period, soft_limit, hard_limit, updated_at, updated_by
        FROM quota_limits WHERE tenant_id = ANY(%s)
        ORDER BY tenant_id, scope, scope_id, metric, period LIMIT %s OFFSET %s""", (scope.tenants, limit + 1, offset))
    return page(request, [_row(r) for r in rows], limit, offset, {"tenants": scope.tenants})


@router.put("/quota-limits", response_model=Single[QuotaLimitChange],
            summary="Set a quota limit (soft and hard both null: remove it); every change is recorded")
async def set_limit(request: Request, body: QuotaLimitRequest,
                    scope: Scope = Depends(requires(Metric.QUOTA_LIMITS))) -> JsonBody:
    tenant = params.scoped_tenants([params.identifier("tenant", body.tenant)], scope.caller.tenants)[0]
    if body.scope not in SCOPES:
        raise bad_parameter("scope", f"scope={body.scope[:40]!r} must be one of {', '.join(SCOPES)}")
    scope_id = "" if body.scope == "tenant" else params.identifier("id", body.id)
    if body.metric not in QUOTA_METRICS:
        raise bad_parameter("metric", f"metric={body.metric[:40]!r} is unknown; known: {', '.join(QUOTA_METRICS)}")
    if body.period not in PERIODS:
        raise bad_parameter("period", f"period={body.period[:40]!r} must be day or month")
    soft, hard = level("soft", body.soft), level("hard", body.hard)
    if soft is not None and hard is not None and soft > hard:
        raise bad_parameter("soft", f"the soft level {body.soft} is above the hard level {body.hard}")
    if "\x00" in body.reason:
        raise bad_parameter("reason", "reason must not contain NUL characters")
    if not await scope.state.pg.fetch("SELECT 1 FROM tenants WHERE tenant_id = %s", (tenant,)):
        raise params.not_found(f"tenant {tenant!r} is not in the directory")
    audit_of(request).tenants = [tenant]
    rows = await scope.state.pg.fetch("SELECT seq, changed_at FROM set_quota_limit(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                                      (tenant, body.scope, scope_id, body.metric, body.period, soft, hard,
                                       scope.caller.principal, body.reason))
    if not rows:
        raise params.not_found(f"no {body.period} {body.metric} limit of {body.scope} {scope_id or tenant!r} to remove")
    seq, changed_at = rows[0]
    changes = await scope.state.pg.fetch(_CHANGES_SQL + " AND seq = %s", ([tenant], seq))
    return single(request, _change(changes[0]), 1)


_CHANGES_SQL = """
    SELECT seq, changed_at, changed_by, reason, tenant_id, scope, scope_id, metric, period, old_soft, old_hard,
           new_soft, new_hard, deleted
    FROM quota_limit_changes WHERE tenant_id = ANY(%s)"""


def _change(values: tuple) -> dict:
    (seq, changed_at, changed_by, reason, tenant, scope, scope_id, metric, period, old_soft, old_hard, new_soft,
     new_hard, deleted) = values
    return {"seq": seq, "changed_at": params.iso(changed_at), "changed_by": changed_by, "reason": reason,
            "tenant_id": tenant, "scope": scope, "scope_id": scope_id, "metric": metric, "period": period,
            "old_soft": money(old_soft), "old_hard": money(old_hard), "new_soft": money(new_soft),
            "new_hard": money(new_hard), "deleted": deleted}


@router.get("/quota-limits/changes", response_model=Page[QuotaLimitChange],
            summary="Every change of the caller's tenants' quota limits, newest first")
async def changes(request: Request, scope: Scope = Depends(requires(Metric.QUOTA_LIMITS)),
                  limit: int | None = LIMIT_QUERY, offset: int | None = OFFSET_QUERY,
                  metric: str | None = Query(None, description="only this metric's changes")) -> JsonBody:
    limit, offset = params.page(limit, offset, scope.state.settings.api_max_rows)
    sql, args = _CHANGES_SQL, [scope.tenants]
    if metric is not None:
        sql += " AND metric = %s"
        args.append(metric)
    rows = await scope.state.pg.fetch(sql + " ORDER BY seq DESC LIMIT %s OFFSET %s", (*args, limit + 1, offset))
    return page(request, [_change(r) for r in rows], limit, offset, {"tenants": scope.tenants})
