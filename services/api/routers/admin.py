"""The caller's own grant, and erasure requests."""

from __future__ import annotations

from datetime import datetime, timezone

from fastapi import APIRouter, Depends, Request

from services.api import params
from services.api.app import JsonBody, Scope, audit_of, requires, single
from services.api.permissions import Metric
from services.api.privacy import is_pseudonym, pseudonym
from services.api.problems import bad_parameter
from services.api.routers.common import pseudonym_index
from services.api.routers.models import Erasure, ErasureRequest, Single, WhoAmI

router = APIRouter(prefix="/v1", tags=["access control and privacy"])


@router.get("/whoami", response_model=Single[WhoAmI], summary="The caller: principal, role, tenants, permissions")
async def whoami(request: Request, scope: Scope = Depends(requires(None))) -> JsonBody:
    caller = scope.caller
    return single(request, {"principal": caller.principal, "role": caller.role, "auth": caller.auth,
                            "tenants": list(caller.tenants),
                            "metrics": sorted(m.value for m in caller.policy.metrics),
                            "max_range_days": caller.policy.max_range.days, "identity": caller.policy.identity}, 1)


@router.post("/privacy/erasures", response_model=Single[Erasure], status_code=200,
             summary="Erase a user's identity: every later answer shows only the pseudonym")
async def erase(request: Request, body: ErasureRequest, scope: Scope = Depends(requires(Metric.PRIVACY))) -> JsonBody:
    """Records the erasure (who asked, when, why) and clears the user's name and e-mail in the directory; from the
    next request on, every answer shows the user as the pseudonym, to every role. The request itself is in the
    access log. What stays (ClickHouse history, the lake) is said in the README."""
    tenant = params.scoped_tenants([params.identifier("tenant", body.tenant)], scope.caller.tenants)[0]
    user = body.user
    if is_pseudonym(user):
        resolved = (await pseudonym_index(scope, tenant)).get(user)
        if resolved is None:
            raise params.not_found(f"no user of tenant {tenant!r} has the pseudonym {user}")
        user = resolved
    else:
        params.identifier("user", user)
    if "\x00" in body.reason:
        raise bad_parameter("reason", "reason must not contain NUL characters")
    rows = await scope.state.pg.fetch("""
        WITH added AS (
            INSERT INTO erasures (tenant_id, user_id, requested_by, reason) VALUES (%s, %s, %s, %s)
            ON CONFLICT (tenant_id, user_id) DO NOTHING RETURNING requested_at),
        cleared AS (
            UPDATE users SET display_name = '', email = '', erased_at = coalesce(erased_at, now())
            WHERE tenant_id = %s AND user_id = %s RETURNING 1)
        SELECT (SELECT requested_at FROM added), (SELECT count(*) FROM cleared)""",
        (tenant, user, scope.caller.principal, body.reason, tenant, user))
    requested_at = rows[0][0]
    already = requested_at is None
    if already:
        earlier = await scope.state.pg.fetch("SELECT requested_at, requested_by FROM erasures WHERE tenant_id = %s AND "
                                             "user_id = %s", (tenant, user))
        requested_at, requested_by = earlier[0]
    else:
        requested_by = scope.caller.principal
    audit_of(request).tenants = [tenant]
    return single(request, {"tenant_id": tenant, "pseudonym": pseudonym(scope.state.key, tenant, user),
                            "requested_by": requested_by,
                            "requested_at": params.iso(requested_at or datetime.now(timezone.utc)),
                            "already_erased": already}, 1)
