"""Who accessed what: the ingest audit log (pbac_*, asset_* events in ClickHouse) and the API's own access log."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Query, Request

from services.api import params
from services.api.app import JsonBody, Scope, page, requires
from services.api.permissions import Metric
from services.api.routers.common import (FROM_QUERY, LIMIT_QUERY, OFFSET_QUERY, TO_QUERY, id_filters, in_range,
                                         show_people, tenant_where, user_filter)
from services.api.routers.models import AccessRow, ApiAccessRow, Page

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get("/access", response_model=Page[AccessRow], summary="Who accessed what: the ingest audit log")
async def access(request: Request, scope: Scope = Depends(requires(Metric.ACCESS)), from_: str | None = FROM_QUERY,
           to: str | None = TO_QUERY, topic: str | None = Query(None, description="pbac_access, pbac_politics, "
                                                                               "pbac_service, asset_access or asset_transfer"),
           user: str | None = None, resource: str | None = None, action: str | None = None,
           decision: str | None = None, limit: int | None = LIMIT_QUERY, offset: int | None = OFFSET_QUERY) -> JsonBody:
    """Audit events (access decisions, policy changes, service messages, asset access, uploads and downloads) in
    [from, to), newest first; user matches the event's user."""
    rng = params.time_range(from_, to, scope.caller.policy.max_range)
    limit, offset = params.page(limit, offset, scope.state.settings.api_max_rows)
    where = in_range(tenant_where(scope), "ts", rng)
    id_filters(where, (("topic", topic, "topic"), ("resource", resource, "resource"),
                                ("action", action, "action"), ("decision", decision, "decision")))
    await user_filter(where, scope, user)
    rows = await scope.ch.query(f"""
        SELECT ts, topic, event_name, tenant_id, department_id, project_id, user_id, subject, action, resource,
               decision, policy_id, host_name
        FROM {{db}}.audit_log {where.sql()}
        ORDER BY ts DESC, event_id
        LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}""", {**where.params, "limit": limit + 1, "offset": offset})
    for row in rows:  # a subject is a user or a service; shown like a user id
        row["subject"] = scope.privacy.user(row["tenant_id"], row["subject"]) if row["subject"] else ""
    show_people(rows, scope, hosts=("host_name",))
    return page(request, rows, limit, offset, {**rng.json(), "tenants": scope.tenants})


@router.get("/access/api", response_model=Page[ApiAccessRow], summary="The API's own access log, for the caller's tenants")
async def api_access(request: Request, scope: Scope = Depends(requires(Metric.ACCESS)), from_: str | None = FROM_QUERY,
                     to: str | None = TO_QUERY, limit: int | None = LIMIT_QUERY,
                     offset: int | None = OFFSET_QUERY) -> JsonBody:
    """Records of requests that covered one of the caller's tenants, in [from, to), newest first: who called which
    endpoint with which parameters, and what came back. `python -m services.api.audit verify` checks the chain."""
    rng = params.time_range(from_, to, scope.caller.policy.max_range)
    limit, offset = params.page(limit, offset, scope.state.settings.api_max_rows)
    rows = await scope.state.pg.fetch("""
        SELECT seq, record FROM access_log
        WHERE (record::jsonb -> 'tenants') ?| %s AND record::jsonb ->> 'at' >= %s AND record::jsonb ->> 'at' < %s
        ORDER BY seq DESC LIMIT %s OFFSET %s""", (scope.tenants, params.iso(rng.start), params.iso(rng.end), limit + 1,
                                                 offset))
    data = [{"seq": seq, "record": json.loads(record)} for seq, record in rows]
    return page(request, data, limit, offset, {**rng.json(), "tenants": scope.tenants})
