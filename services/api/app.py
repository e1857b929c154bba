"""The FastAPI application: the gate every request passes (authentication, then the access log written before a
byte of the answer leaves), the error format, and the routers per area.

The gate is plain ASGI around the app: it authenticates the bearer token, lets the app compute the whole answer,
appends the access-log record (who, role, tenants, endpoint, parameters, rows, status, time) and only then sends
the answer; when the record cannot be written the answer is withheld and the caller gets 503.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api import accesslog
from services.api.auth import Caller, JwtVerifier, Tokens, authenticate
from services.api.params import iso, scoped_tenants
from services.api.permissions import Metric
from services.api.privacy import Privacy
from services.api.problems import MEDIA_TYPE, Problem, forbidden, unavailable
from services.api.stores import ClickHouseReader, Postgres
from telemetry.promtext import Histogram, Metric as Series
from telemetry.settings import Settings

LOG = logging.getLogger("services.api")
VERSION = "1.0.0"
# Operational endpoints without tenant data: no token, not in the access log (probes would flood it); the web
# page's static files (/ and /app/..., routers/web.py) likewise.
PUBLIC_PATHS = frozenset({"/health", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/"})
PUBLIC_PREFIX = "/app/"

Send = Callable[[dict[str, Any]], Awaitable[None]]


class ApiMetrics:
    def __init__(self) -> None:
        self.requests = Series("telemetry_api_requests_total", "counter", "API requests by endpoint and status",
                               ("endpoint", "status"))
        self.latency = Histogram("telemetry_api_request_seconds", "Time from request to answer, access log included",
                                 ("endpoint",))
        self.audit_failures = Series("telemetry_api_audit_failures_total", "counter",
                                     "Requests refused because their access-log record could not be written")
        self.cache = Series("telemetry_api_clickhouse_cache_total", "counter",
                            "ClickHouse answers served from the API's cache (hit) or queried (miss)", ("result",))
        self.log_records = Series("telemetry_api_access_log_records_total", "counter",
                                  "Access-log records committed")
        self.log_batches = Series("telemetry_api_access_log_batches_total", "counter",
                                  "Transactions that committed them (records / batches: the group commit's batch size)")

    def render(self, ch: ClickHouseReader, log: accesslog.GroupCommit) -> str:
        self.cache.set("hit", value=ch.hits)
        self.cache.set("miss", value=ch.misses)
        self.log_records.set(value=log.records)
        self.log_batches.set(value=log.batches)
        return "\n".join(line for family in (self.requests, self.latency, self.audit_failures, self.cache,
                                             self.log_records, self.log_batches)
                         for line in family.render()) + "\n"


@dataclass
class ApiState:
    settings: Settings
    audit: bool = True
    pg: Postgres = field(init=False)
    log: accesslog.GroupCommit = field(init=False)
    tokens: Tokens = field(init=False)
    ch: ClickHouseReader = field(init=False)
    verifier: JwtVerifier | None = field(init=False)
    key: bytes = field(init=False)
    personal_hosts: re.Pattern[str] = field(init=False)
    metrics: ApiMetrics = field(default_factory=ApiMetrics)

    def __post_init__(self) -> None:
        s = self.settings
        self.pg = Postgres(s)
        self.log = accesslog.GroupCommit(self.pg.fetch_apart)
        self.tokens = Tokens(self.pg)
        self.ch = ClickHouseReader(s)
        self.verifier = (JwtVerifier(s.api_oidc_issuer, s.api_oidc_audience or "", s.api_oidc_jwks_url or "")
                         if s.api_oidc_issuer else None)
        self.key = s.pseudonym_key()
        self.personal_hosts = re.compile(s.api_personal_hosts)


@dataclass
class RequestAudit:
    """What the access-log record of a request says; endpoints fill in tenants and rows."""

    caller: Caller | None = None
    principal: str = ""
    tenants: list[str] = field(default_factory=list)
    rows: int | None = None
    body: str = ""  # a POST's body, as sent (bounded)


def audit_of(request: Request) -> RequestAudit:
    return request.scope["state"]["audit"]


# -- the gate -----------------------------------------------------------------------------------------------------


class _Refused(Exception):
    """A streamed answer refused before its first byte (its access-log record could not be written): (status,
    headers, body) of the problem to send instead."""


class Gate:
    def __init__(self, app: Callable[..., Awaitable[None]], state: ApiState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Awaitable[Any]], send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or scope["path"].startswith(PUBLIC_PREFIX):
            await self.app(scope, receive, send)
            return
        started, at = time.perf_counter(), datetime.now(timezone.utc)
        audit = RequestAudit()
        scope.setdefault("state", {})["audit"] = audit
        authorization = next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"authorization"), None)
        try:
            audit.caller = await authenticate(authorization, self.state.pg, self.state.verifier, self.state.tokens)
            audit.principal = audit.caller.principal
            scope["state"]["caller"] = audit.caller
        except Problem as problem:
            audit.principal = problem.principal or ""
            await self._finish(scope, send, audit, *problem_response(problem, scope["path"]), started, at)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []
        received: list[bytes] = []
        streamed = False

        async def recording() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request" and sum(map(len, received)) < accesslog.MAX_VALUE_CHARS * 4:
                received.append(message.get("body", b""))
            return message

        async def capture(message: dict[str, Any]) -> None:
            nonlocal streamed
            if streamed:
                await send(message)
            elif message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body" and message.get("more_body") and start["status"] == 200:
                # A streamed answer (an export): its record is committed before its first byte leaves, with the
                # rows not known yet; a record that cannot be written stops the stream before it starts.
                audit.body = b"".join(received).decode("utf-8", "replace")
                status, headers, body = await self._commit(scope, audit, 200, list(start.get("headers", [])), b"",
                                                           started, at, streamed=True)
                if status != 200:
                    raise _Refused(status, headers, body)
                streamed = True
                await send({**start, "headers": headers})
                await send(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, recording, capture)
            audit.body = b"".join(received).decode("utf-8", "replace")
            status, out_headers, body = start["status"], list(start.get("headers", [])), b"".join(chunks)
        except _Refused as refused:
            status, out_headers, body = refused.args
            self._count(scope, status, started)
            await self._send(send, status, out_headers, body)
            return
        except Problem as problem:  # raised where FastAPI's handlers do not reach: inside a streamed body
            if streamed:
                LOG.warning("%s %s stopped while streaming: %s", scope["method"], scope["path"], problem.detail)
                self._count(scope, problem.status, started)
                raise
            status, out_headers, body = problem_response(problem, scope["path"])
        except Exception as exc:  # noqa: BLE001 - a bug must still be answered and logged
            if streamed:  # bytes already left: end the connection without the last chunk, so that no client
                # takes a cut answer for a whole one
                LOG.exception("%s %s failed while streaming", scope["method"], scope["path"])
                self._count(scope, 500, started)
                raise
            if isinstance(exc.__cause__, Problem):  # Starlette's report of a Problem raised inside a streamed body
                status, out_headers, body = problem_response(exc.__cause__, scope["path"])  # before its first byte
                await self._finish(scope, send, audit, status, out_headers, body, started, at)
                return
            LOG.exception("%s %s failed", scope["method"], scope["path"])
            problem = Problem(500, "internal-error", "Internal error", f"{type(exc).__name__} while answering; the "
                                                                      "access log has the request")
            status, out_headers, body = problem_response(problem, scope["path"])
        if streamed:
            self._count(scope, status, started)
            return
        await self._finish(scope, send, audit, status, out_headers, body, started, at)

    async def _commit(self, scope: dict[str, Any], audit: RequestAudit, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes, started: float, at: datetime,
                      streamed: bool = False) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Append the request's access-log record; the answer to send: this one with its record's id, or a 503 when
        the record could not be written."""
        if not self.state.audit:
            return status, headers, body
        request_id = str(uuid.uuid4())
        fields = self._record(scope, audit, status, started, at, endpoint_of(scope), request_id)
        if streamed:
            fields["streamed"] = True
        try:
            await self.state.log.append(accesslog.canonical(fields))
            return status, [*headers, (b"x-request-id", request_id.encode())], body  # names its committed record
        except Exception as exc:  # noqa: BLE001 - whatever failed, the answer must not leave unlogged
            self.state.metrics.audit_failures.inc()
            if isinstance(exc, Problem) and exc.code == "postgresql-unavailable":
                problem = unavailable("postgresql", f"{exc.detail}; the request was refused (its access-log "
                                                    "record could not be written either)")
            else:
                reason = exc.detail if isinstance(exc, Problem) else f"{type(exc).__name__}: {exc}"
                problem = unavailable("audit", f"the access log could not be written ({reason}); the answer was "
                                               "withheld: try again")
            return problem_response(problem, scope["path"])

    def _count(self, scope: dict[str, Any], status: int, started: float) -> None:
        endpoint = endpoint_of(scope)
        self.state.metrics.requests.inc(endpoint, str(status))
        self.state.metrics.latency.observe(endpoint, value=time.perf_counter() - started)

    async def _send(self, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k, v) for k, v in headers if k.lower() != b"content-length"]
                    + [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _finish(self, scope: dict[str, Any], send: Send, audit: RequestAudit, status: int,
                      headers: list[tuple[bytes, bytes]], body: bytes, started: float, at: datetime) -> None:
        status, headers, body = await self._commit(scope, audit, status, headers, body, started, at)
        self._count(scope, status, started)
        await self._send(send, status, headers, body)

    def _record(self, scope: dict[str, Any], audit: RequestAudit, status: int, started: float, at: datetime,
                endpoint: str, request_id: str) -> dict[str, Any]:
        caller = audit.caller
        query = scope.get("query_string", b"").decode("latin-1")
        return {
            "v": 1,
            "at": iso(at),
            "request_id": request_id,
            "principal": accesslog.bounded(audit.principal),
            "auth": caller.auth if caller else "",
            "token_id": caller.token_id if caller else "",
            "role": caller.role if caller else "",
            "tenants": audit.tenants,
            "method": scope["method"],
            "endpoint": endpoint,
            "path": accesslog.bounded(scope["path"]),
            "params": accesslog.parameters(parse_qsl(query, keep_blank_values=True)),
            "body": accesslog.bounded(audit.body),
            "status": status,
            "rows": audit.rows,
            "ms": round((time.perf_counter() - started) * 1000, 1),
            "client": (scope.get("client") or ("", 0))[0],
        }


def endpoint_of(scope: dict[str, Any]) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "(no route)"


def problem_response(problem: Problem, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    headers = [(b"content-type", MEDIA_TYPE.encode())] + [(k.lower().encode(), v.encode()) for k, v in problem.headers.items()]
    return problem.status, headers, problem.encode(path)


# -- responses ----------------------------------------------------------------------------------------------------


def money(value: Any) -> str | None:
    """An amount as exact decimal text: ClickHouse's Decimal as it is, a float by its shortest repr (so a
    Float64 column never gains digits it did not have), never a JSON number a client could round."""
    if value is None:
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = Decimal(repr(value))
    elif not isinstance(value, Decimal):
        value = Decimal(value)
    text = format(value, "f")
    return text


def _finite(value: Any) -> Any:
    """The answer with every NaN or infinity as None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


@lru_cache(maxsize=1 << 16)
def _time_text(value: datetime) -> str:
    """A time as the answers write it; cached because cached ClickHouse rows send the same times again and again
    (an answer of hundreds of minutes spent a fifth of its time here)."""
    return iso(value if value.tzinfo else value.replace(tzinfo=timezone.utc))


def _default(value: Any) -> Any:
    """What json.dumps cannot write itself: times as ISO 8601 UTC, decimals as exact text."""
    if isinstance(value, datetime):
        return _time_text(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def json_bytes(content: Any) -> bytes:
    """An answer's JSON: compact, UTF-8, NaN and infinity as null.

    orjson writes a page of rows in a fraction of the standard library's time (the largest piece of a cached
    answer's CPU); times and decimals still go through _default, so the text is the same. Integers past 64 bits
    (a UInt128 sum) are left to the standard library."""
    try:
        return orjson.dumps(content, default=_default, option=ORJSON_OPTIONS)
    except TypeError:
        return json.dumps(_finite(content), ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                          default=_default).encode()


class JsonBody(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def page(request: Request, rows: list[dict[str, Any]], limit: int, offset: int, meta: dict[str, Any]) -> JsonBody:
    """A list answer: at most limit rows of the limit + 1 fetched (the extra one says whether there is a next page)."""
    more = len(rows) > limit
    data = rows[:limit]
    audit_of(request).rows = len(data)
    return JsonBody({"data": data, "page": {"limit": limit, "offset": offset, "returned": len(data),
                                            "next_offset": offset + limit if more else None}, "meta": meta})


def single(request: Request, item: dict[str, Any], rows: int, meta: dict[str, Any] | None = None) -> JsonBody:
    audit_of(request).rows = rows
    return JsonBody({"data": item, "meta": meta or {}})


# -- dependencies -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """What one request may see: its caller, the tenants it covers, how people are shown, and the stores."""

    caller: Caller
    tenants: list[str]
    privacy: Privacy
    state: ApiState

    @property
    def ch(self) -> ClickHouseReader:
        return self.state.ch


TENANT_QUERY = Query(None, description="tenant id(s) to cover, each within the caller's grant (default: all of them)")


def requires(metric: Metric | None) -> Callable[..., Scope]:
    """A dependency: the caller may read `metric` (None: any role), over the tenants asked for."""

    async def dependency(request: Request, tenant: list[str] | None = TENANT_QUERY) -> Scope:
        state: ApiState = request.app.state.api
        caller: Caller = request.scope["state"]["caller"]
        if metric is not None and metric not in caller.policy.metrics:
            allowed = ", ".join(sorted(m.value for m in caller.policy.metrics))
            raise forbidden("metric-not-permitted", f"role {caller.role} may not read {metric.value}; it may read: "
                                                    f"{allowed}")
        tenants = scoped_tenants(tenant, caller.tenants)
        audit_of(request).tenants = tenants
        privacy = Privacy(state.key, caller.policy.identity, caller.erased, state.personal_hosts)
        return Scope(caller, tenants, privacy, state)

    return dependency


# -- the application ----------------------------------------------------------------------------------------------


def _validation_problem(exc: RequestValidationError) -> Problem:
    errors = exc.errors()
    first = errors[0] if errors else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body")]
    parameter = location[0] if location else None
    given = first.get("input")
    shown = f"={str(given)[:64]!r}" if given is not None and not isinstance(given, (dict, list)) else ""
    return Problem(400, "bad-parameter", "A parameter is malformed",
                   f"{parameter or 'request'}{shown}: {first.get('msg', 'invalid')}", parameter)


def _problem_handler(request: Request, exc: Exception) -> Response:
    problem = exc if isinstance(exc, Problem) else _validation_problem(exc)  # type: ignore[arg-type]
    status, headers, body = problem_response(problem, request.url.path)
    return Response(body, status, headers={k.decode(): v.decode() for k, v in headers})


def _http_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = "not-found" if exc.status_code == 404 else f"http-{exc.status_code}"
    problem = Problem(exc.status_code, code, str(exc.detail), f"{request.method} {request.url.path}: {exc.detail}")
    return _problem_handler(request, problem)


def create_app(settings: Settings, audit: bool = True) -> FastAPI:
    """The app with its stores (opened on start-up, closed on shut-down). audit=False serves without the access
    log: only for the benchmark's comparison, never in production (`__main__` says so loudly)."""
    from services.api.routers import ROUTERS

    state = ApiState(settings, audit)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.pg.open()
        try:
            yield
        finally:
            await state.pg.close()

    app = FastAPI(
        title="AI telemetry API",
        version=VERSION,
        summary="Usage, cost, model performance, VMs, pipeline health and audit of the AI telemetry platform",
        description=DESCRIPTION,
        lifespan=lifespan,
        redoc_url=None,
        responses={400: {"description": "bad-parameter"}, 401: {"description": "unauthenticated"},
                   403: {"description": "not permitted"}, 503: {"description": "a store or the access log is unavailable"}},
    )
    app.state.api = state
    app.add_exception_handler(Problem, _problem_handler)
    app.add_exception_handler(RequestValidationError, _problem_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(Gate, state=state)
    return app


DESCRIPTION = """\
Every request under /v1 carries `Authorization: Bearer <token>`: an API token (`python -m services.api.tokens issue`)
or a JWT of the configured OIDC issuer. The token's principal has a role and tenants (PostgreSQL grants); the role
decides which metric types it may read, over how long a range, and whether it sees user ids or pseudonyms (see the
permission matrix in the README). Every answer covers the caller's tenants only (`tenant=` narrows them).

Every request is appended to a hash-chained access log before its answer is sent; if the record cannot be written
the answer is withheld (503). Errors are `application/problem+json` with a `code` and, where one is at fault, the
`parameter`. Lists are paged with `limit` / `offset`; `page.next_offset` is null on the last page. Times are
ISO 8601 (`2026-03-01T10:00:00Z`); ranges are `[from, to)`. Money is a JSON string holding the exact decimal
(`"12.345678"`), never a float.
"""




def app_from_environment() -> FastAPI:
    """The app for uvicorn's worker processes (--workers > 1): settings from the environment."""
    import os

    from telemetry import settings as config

    return create_app(config.load(), audit=os.environ.get("API_ACCESS_LOG", "on") != "off")
