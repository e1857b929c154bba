"""The quota service's HTTP adapter: POST /v1/check answered by a lean ASGI layer in front of FastAPI (which serves
GET /v1/state, and documents the check in OpenAPI), authenticated and authorised as the API does (bearer API tokens
or JWTs, PostgreSQL grants, the permission matrix's `quotas` metric, the caller's tenants only), errors as problem
details; GET /health and GET /metrics without a token."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, AsyncIterator, Awaitable, Callable

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.app import JsonBody, _http_handler, _problem_handler, json_bytes, problem_response
from services.api.auth import Caller, JwtVerifier, Tokens, authenticate
from services.api.params import identifier, not_found, scoped_tenants
from services.api.permissions import Metric
from services.api.problems import CODES, Problem, bad_parameter, forbidden
from services.api.stores import Postgres
from services.quota.metrics import MAX_VALUE, METRICS
from services.quota.rules import PERIODS, SCOPES, Verdict, binding
from services.quota.service import Answer, Quota
from services.quota.prom import QuotaMetrics
from telemetry.settings import Settings

AMOUNT_DECIMALS = 12
CHECK_PATH = "/v1/check"
MAX_BODY = 16 * 1024  # a check is a few hundred bytes (an id is at most 200 characters)
FIELDS = ("tenant", "scope", "id", "metric", "amount", "period")
LOG = logging.getLogger("services.quota")
CHECK_CODES = {
    "bad-parameter": "400: the body is not a JSON object, or a field is missing, extra or malformed; `parameter` names it",
    "unauthenticated": CODES["unauthenticated"],
    "metric-not-permitted": "403: the caller's role has no `quotas` metric",
    "tenant-not-permitted": CODES["tenant-not-permitted"],
    "not-found": "404: no such user, department, project or tenant in the tenant",
    "body-too-large": f"413: the body is over {MAX_BODY} bytes",
    "unsupported-media-type": "415: a Content-Type other than JSON",
    "internal-error": "500: a bug; the service's log has it",
}
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class CheckRequest(BaseModel):
    """The body of POST /v1/check, for the OpenAPI description only: check_args() validates it."""
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


@dataclass(frozen=True)
class CheckArgs:
    tenant: str
    scope: str
    scope_id: str  # "" for a tenant scope
    metric: str
    amount: Decimal
    period: str | None


def _shown(value: Any) -> str:
    """A JSON value as a message shows it: strings quoted and cut, containers by their kind."""
    if isinstance(value, str):
        return repr(value[:40])
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return str(value)[:40]
    return "an object" if isinstance(value, dict) else "a list"


def _string(data: dict[str, Any], name: str, default: str | None) -> str:
    if name not in data:
        if default is None:
            raise bad_parameter(name, f"{name} is required")
        return default
    value = data[name]
    if not isinstance(value, str):
        raise bad_parameter(name, f"{name}={_shown(value)} must be a string")
    return value


def check_args(data: Any) -> CheckArgs:
    """A check's parsed JSON body validated: no other fields, strings where strings belong, a known metric and
    period, an amount by amount_of(); a 400 naming the first bad parameter. Who may ask about which scope is
    QuotaApp.subject()'s part."""
    if not isinstance(data, dict):
        raise Problem(400, "bad-parameter", "A parameter is malformed",
                      f"the body must be a JSON object of {', '.join(FIELDS)}, not {_shown(data)}")
    for key in data:
        if key not in FIELDS:
            raise bad_parameter(key[:64], f"{key[:64]!r} is not a parameter of a check; they are {', '.join(FIELDS)}")
    tenant, scope = _string(data, "tenant", None), _string(data, "scope", "user")
    scope_id, metric = _string(data, "id", ""), _string(data, "metric", None)
    if "amount" not in data:
        raise bad_parameter("amount", "amount is required (0 asks whether anything is left)")
    raw = data["amount"]
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise bad_parameter("amount", f"amount={_shown(raw)} must be a decimal number, as text (exact) or a JSON number")
    period = data.get("period")
    if period is not None and not isinstance(period, str):
        raise bad_parameter("period", f"period={_shown(period)} must be day, month or null")
    if metric not in METRICS:
        raise bad_parameter("metric", f"metric={metric[:40]!r} is unknown; known: {', '.join(METRICS)}")
    if period is not None and period not in PERIODS:
        raise bad_parameter("period", f"period={period[:40]!r} must be day or month")
    return CheckArgs(tenant, scope, "" if scope == "tenant" else scope_id, metric, amount_of(raw), period)


class _Disconnected(Exception):
    """The client went away before its body arrived: nobody to answer."""


def _json_media_type(value: bytes | None) -> bool:
    """No Content-Type (as curl -d and FastAPI allow), application/json or application/*+json, any parameters."""
    if value is None:
        return True
    kind = value.split(b";", 1)[0].strip().lower()
    return kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))


async def read_body(receive: Receive, length: bytes | None) -> bytes:
    """The request's body, at most MAX_BODY bytes (else a 413 before reading more)."""
    too_large = Problem(413, "body-too-large", "The body is too large",
                        f"a check's body is at most {MAX_BODY} bytes", headers={"Connection": "close"})
    if length is not None and (not length.strip().isdigit() or int(length) > MAX_BODY):
        raise too_large  # (a malformed Content-Length never gets here: the HTTP parser refuses it)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


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

    async def caller(self, header: str | None) -> Caller:
        """The caller of an Authorization header; a token's answer is reused for auth_cache_s (revocation takes that
        long)."""
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

    async def respond(self, scope: dict[str, Any], receive: Receive) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """POST /v1/check from its ASGI scope and body: (status, headers, body), the answer or its problem."""
        started = time.perf_counter()
        authorization = content_type = length = None
        for name, value in scope["headers"]:
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif name == b"content-type" and content_type is None:
                content_type = value
            elif name == b"content-length" and length is None:
                length = value
        try:
            if not _json_media_type(content_type):
                raise Problem(415, "unsupported-media-type", "Unsupported media type",
                              f"Content-Type {content_type[:60]!r} is not JSON: send application/json")
            body = await read_body(receive, length)
            try:
                data = json.loads(body)
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
                raise Problem(400, "bad-parameter", "A parameter is malformed",
                              f"the body is not JSON: {str(exc)[:100]}") from None
            args = check_args(data)
            caller = await self.caller(authorization)
            self.subject(caller, args.tenant, args.scope, args.scope_id)
            check = (args.tenant, args.scope, args.scope_id, args.metric, args.amount, args.period)
            answer = self.quota.check(*check) if self.quota.in_memory(*check[:3]) else \
                await anyio.to_thread.run_sync(self.quota.check, *check)
            self.metrics.decided(answer, time.perf_counter() - started)
            out = json_bytes(answer_json(answer, args.tenant, args.scope, args.scope_id))
            return 200, [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())], out
        except _Disconnected:
            raise
        except Problem as exc:
            problem = exc
        except Exception:  # noqa: BLE001 - a bug must cost one answer, never the connection or the service
            LOG.exception("POST %s failed", CHECK_PATH)
            problem = Problem(500, "internal-error", "Internal error", "a bug: the quota service's log has it")
        self.metrics.refused(problem.code)
        status, headers, out = problem_response(problem, CHECK_PATH)
        return status, [*headers, (b"content-length", str(len(out)).encode())], out


class CheckFirst:
    """ASGI in front of the FastAPI app: POST /v1/check is answered here, without FastAPI's routing, request parsing,
    validation and dependency machinery (nearly all of a check's cost); everything else goes to FastAPI."""

    def __init__(self, app: FastAPI, service: QuotaApp) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != CHECK_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            status, headers, body = await self.service.respond(scope, receive)
        except _Disconnected:
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def create_app(settings: Settings, quota: Quota, metrics: QuotaMetrics, directory: Directory,
               auth_cache_s: float = 5.0) -> CheckFirst:
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

    @app.post(CHECK_PATH, summary="May this scope spend this amount of this metric now?",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": CheckRequest.model_json_schema()}}}},
              description="Answered by the service's lean layer (CheckFirst) before FastAPI; errors are problem "
                          "details: " + "; ".join(f"`{c}` {d}" for c, d in CHECK_CODES.items()))
    async def check(request: Request) -> Response:
        status, headers, body = await service.respond(request.scope, request.receive)
        return Response(body, status, headers={k.decode(): v.decode() for k, v in headers if k != b"content-length"})

    @app.get("/v1/state", summary="A scope's usage and limits per metric, day and month")
    async def state(request: Request, tenant: str = Query(...), scope: str = Query("user"),
                    id: str = Query("")) -> JsonBody:  # noqa: A002 - the API's parameter name
        caller = await service.caller(request.headers.get("authorization"))
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

    return CheckFirst(app, service)
