"""The quota service's HTTP adapter (FastAPI): POST /v1/check and GET /v1/state, authenticated and authorised as
the API does (bearer API tokens or JWTs, PostgreSQL grants, the permission matrix's `quotas` metric, the caller's
tenants only), errors as problem details; GET /health and GET /metrics without a token."""

from __future__ import annotations

import asyncio
import hashlib
import time
from contextlib import asynccontextmanager
from decimal import Decimal, InvalidOperation
from typing import Any, AsyncIterator

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.app import JsonBody, _http_handler, _problem_handler
from services.api.auth import Caller, JwtVerifier, Tokens, authenticate
from services.api.params import identifier, not_found, scoped_tenants
from services.api.permissions import Metric
from services.api.problems import Problem, bad_parameter, forbidden
from services.api.stores import Postgres
from services.quota.metrics import MAX_VALUE, METRICS
from services.quota.rules import PERIODS, SCOPES, Verdict, binding
from services.quota.service import Answer, Quota
from services.quota.prom import QuotaMetrics
from telemetry.settings import Settings

AMOUNT_DECIMALS = 12


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(description="the tenant of the scope; one of the caller's")
    scope: str = Field("user", description="user, department, project or tenant")
    id: str = Field("", description="the user, department or project id (empty for the tenant)")
    metric: str = Field(description=", ".join(METRICS))
    amount: str | int | float = Field(description="what the caller wants to spend now, a decimal (a string keeps it exact); 0 asks whether anything is left")
    period: str | None = Field(None, description="day or month; default: every period that has a limit")


def amount_of(value: str | int | float) -> Decimal:
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise bad_parameter("amount", f"amount={str(value)[:40]!r} is not a decimal number") from None
    if not number.is_finite() or number < 0:
        raise bad_parameter("amount", f"amount={str(value)[:40]!r} must be a finite number of zero or more")
    if number > MAX_VALUE:
        raise bad_parameter("amount", f"amount={str(value)[:40]!r} is absurd: at most 1e30")
    if number.as_tuple().exponent < -AMOUNT_DECIMALS:  # type: ignore[operator]
        raise bad_parameter("amount", f"amount={str(value)[:40]!r} has more than {AMOUNT_DECIMALS} decimals")
    return number


def text(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize() if value == value.to_integral() else value, "f")


def verdict_json(v: Verdict) -> dict[str, Any]:
    return {"scope": v.limit.scope, "id": v.limit.scope_id, "period": v.limit.period, "period_start": v.period_start,
            "soft_limit": text(v.limit.soft), "hard_limit": text(v.limit.hard), "used": text(v.used),
            "remaining": text(v.remaining), "level": v.level}


def answer_json(a: Answer, tenant: str, scope: str, scope_id: str) -> dict[str, Any]:
    top = binding(a.verdicts)
    limit = None if top is None else (top.limit.hard if top.limit.hard is not None else top.limit.soft)
    return {
        "allow": a.allow, "decision": "allow" if a.allow else "deny", "level": top.level if top else "ok",
        "tenant": tenant, "scope": scope, "id": scope_id, "metric": a.metric, "amount": text(a.amount),
        "period": a.period, "period_start": top.period_start if top else None,
        "limit": text(limit), "soft_limit": text(top.limit.soft) if top else None,
        "hard_limit": text(top.limit.hard) if top else None,
        "used": text(top.used if top else a.used), "remaining": text(top.remaining) if top else None,
        "source": a.source, "degraded": a.degraded, "reason": a.reason, "stale": a.stale,
        "data_age_s": None if a.data_age_s is None else round(a.data_age_s, 3), "day": a.day,
        "limits": [verdict_json(v) for v in a.verdicts],
    }


class Directory:
    """Who exists: tenants, and per tenant its users, departments and projects (PostgreSQL), so an id nobody knows is
    a 404 rather than an empty quota."""

    def __init__(self) -> None:
        self.known: dict[tuple[str, str], set[str]] = {}  # (tenant, scope) -> ids; ("tenant", "tenant") -> tenants

    def has(self, tenant: str, scope: str, scope_id: str, quota: Quota) -> bool:
        if scope == "tenant":
            return tenant in self.known.get(("", "tenant"), set())
        if scope_id in self.known.get((tenant, scope), set()):
            return True
        if scope == "user":
            return bool(quota.ledger.departments_of(tenant, scope_id))
        if scope == "department":
            return (("department", tenant, scope_id) in quota.ledger.days)
        return False


class QuotaApp:
    def __init__(self, settings: Settings, quota: Quota, metrics: QuotaMetrics, directory: Directory,
                 auth_cache_s: float) -> None:
        self.settings, self.quota, self.metrics, self.directory = settings, quota, metrics, directory
        self.pg = Postgres(settings)
        self.tokens = Tokens(self.pg)
        self.verifier = (JwtVerifier(settings.api_oidc_issuer, settings.api_oidc_audience or "",
                                     settings.api_oidc_jwks_url or "") if settings.api_oidc_issuer else None)
        self.auth_cache_s = auth_cache_s
        self.callers: dict[bytes, tuple[float, Caller]] = {}
        self.in_flight: dict[bytes, asyncio.Lock] = {}

    async def caller(self, request: Request) -> Caller:
        """The authenticated caller; a token's answer is reused for auth_cache_s (revocation takes that long)."""
        header = request.headers.get("authorization")
        digest = hashlib.sha256((header or "").encode()).digest()
        cached = self.callers.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            caller = cached[1]
        else:
            # one lookup per token at a time: a burst of checks with a token just expired from the cache waits for
            # it instead of each taking a PostgreSQL connection (which ran out, answering 503, in the benchmark)
            flight = self.in_flight.setdefault(digest, asyncio.Lock())
            async with flight:
                cached = self.callers.get(digest)
                if cached is not None and cached[0] > time.monotonic():
                    caller = cached[1]
                else:
                    caller = await authenticate(header, self.pg, self.verifier, self.tokens)
                    if len(self.callers) > 10000:
                        self.callers.clear()
                    self.callers[digest] = (time.monotonic() + self.auth_cache_s, caller)
            self.in_flight.pop(digest, None)
        if Metric.QUOTAS not in caller.policy.metrics:
            raise forbidden("metric-not-permitted", f"role {caller.role} may not ask for quotas; give the caller a "
                                                    "role with the `quotas` metric (e.g. quota_client)")
        return caller

    def subject(self, caller: Caller, tenant: str, scope: str, scope_id: str) -> None:
        scoped_tenants([identifier("tenant", tenant)], caller.tenants)
        if scope not in SCOPES:
            raise bad_parameter("scope", f"scope={scope[:40]!r} must be one of {', '.join(SCOPES)}")
        if scope == "tenant":
            if scope_id not in ("", tenant):
                raise bad_parameter("id", "a tenant scope takes no id (or the tenant's own)")
        else:
            identifier("id", scope_id)
        if not self.directory.has(tenant, scope, "" if scope == "tenant" else scope_id, self.quota):
            raise not_found(f"no {scope} {scope_id or tenant!r} in tenant {tenant!r} (neither in the directory nor "
                            "in the usage)")


def create_app(settings: Settings, quota: Quota, metrics: QuotaMetrics, directory: Directory,
               auth_cache_s: float = 5.0) -> FastAPI:
    service = QuotaApp(settings, quota, metrics, directory, auth_cache_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await service.pg.open()
        try:
            yield
        finally:
            await service.pg.close()

    app = FastAPI(title="AI telemetry quota service", version="1.0.0", lifespan=lifespan, redoc_url=None,
                  summary="Allow or deny spending per user, department, project and tenant, within milliseconds")
    app.state.quota = service
    app.add_exception_handler(Problem, _problem_handler)
    app.add_exception_handler(RequestValidationError, _problem_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)

    @app.post("/v1/check", summary="May this scope spend this amount of this metric now?")
    async def check(request: Request, body: CheckRequest) -> JsonBody:
        started = time.perf_counter()
        caller = await service.caller(request)
        scope_id = "" if body.scope == "tenant" else body.id
        service.subject(caller, body.tenant, body.scope, scope_id)
        if body.metric not in METRICS:
            raise bad_parameter("metric", f"metric={body.metric[:40]!r} is unknown; known: {', '.join(METRICS)}")
        if body.period is not None and body.period not in PERIODS:
            raise bad_parameter("period", f"period={body.period[:40]!r} must be day or month")
        amount = amount_of(body.amount)
        answer = quota.check(body.tenant, body.scope, scope_id, body.metric, amount, body.period) \
            if quota.in_memory(body.tenant, body.scope, scope_id) else \
            await anyio.to_thread.run_sync(quota.check, body.tenant, body.scope, scope_id, body.metric, amount,
                                           body.period)
        metrics.decided(answer, time.perf_counter() - started)
        return JsonBody(answer_json(answer, body.tenant, body.scope, scope_id))

    @app.get("/v1/state", summary="A scope's usage and limits per metric, day and month")
    async def state(request: Request, tenant: str = Query(...), scope: str = Query("user"),
                    id: str = Query("")) -> JsonBody:  # noqa: A002 - the API's parameter name
        caller = await service.caller(request)
        scope_id = "" if scope == "tenant" else id
        service.subject(caller, tenant, scope, scope_id)
        result = await anyio.to_thread.run_sync(quota.state, tenant, scope, scope_id)
        out = {"tenant": tenant, "scope": scope, "id": scope_id, **{k: v for k, v in result.items() if k != "metrics"},
               "metrics": {m: {"used": {p: text(u) for p, u in item["used"].items()}, "allow": item["allow"],
                               "limits": [verdict_json(v) for v in item["verdicts"]]}
                           for m, item in result["metrics"].items()}}
        if out["data_age_s"] is not None:
            out["data_age_s"] = round(out["data_age_s"], 3)
        return JsonBody(out)

    @app.get("/health", summary="Liveness and readiness: rebuilt from the usage topic, and how current")
    async def health() -> Response:
        feed = quota.feed
        age = quota.data_age()
        ready = feed.rebuilt
        body = {"status": "ok" if ready else "rebuilding", "rebuilt": feed.rebuilt, "records": feed.records,
                "data_age_s": None if age is None else round(age, 3),
                "stale": age is None or age > quota.stale_after_s, "kafka_error": feed.error,
                "keys": dict(zip(("stream", "clickhouse"), quota.ledger.size()))}
        return JsonBody(body, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.render(quota), media_type="text/plain; version=0.0.4")

    return app
