"""Errors as RFC 9457 problem details (application/problem+json): a type per kind of problem, a title, the
status, a detail that says what to do, and the parameter at fault where there is one."""

from __future__ import annotations

import json
from typing import Any

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "urn:ai-telemetry:problem"


class Problem(Exception):
    """Raised anywhere in a request; the app turns it into the problem response."""

    def __init__(self, status: int, code: str, title: str, detail: str, parameter: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.title, self.detail, self.parameter = status, code, title, detail, parameter
        self.headers = headers or {}
        self.principal: str | None = None  # set when the caller was identified before the request failed

    def body(self, instance: str) -> dict[str, Any]:
        out: dict[str, Any] = {"type": f"{TYPE_BASE}:{self.code}", "title": self.title, "status": self.status,
                               "detail": self.detail, "instance": instance, "code": self.code}
        if self.parameter:
            out["parameter"] = self.parameter
        return out

    def encode(self, instance: str) -> bytes:
        return json.dumps(self.body(instance), ensure_ascii=True).encode()


def bad_parameter(parameter: str, detail: str) -> Problem:
    return Problem(400, "bad-parameter", "A parameter is malformed", detail, parameter)


def unauthenticated(detail: str) -> Problem:
    return Problem(401, "unauthenticated", "Authentication required", detail,
                   headers={"WWW-Authenticate": 'Bearer realm="telemetry"'})


def forbidden(code: str, detail: str, parameter: str | None = None) -> Problem:
    return Problem(403, code, "Forbidden", detail, parameter)


def unavailable(what: str, detail: str) -> Problem:
    return Problem(503, f"{what}-unavailable", f"{what} is unavailable", detail, headers={"Retry-After": "5"})


# Every code the API answers with, for the README and the OpenAPI description.
CODES: dict[str, str] = {
    "bad-parameter": "400: a parameter is malformed or out of range; `parameter` names it",
    "not-found": "404: no such endpoint, task or user in the caller's tenants",
    "unauthenticated": "401: no bearer token, or one that is malformed, unknown, expired, revoked or badly signed",
    "no-grant": "403: the token's principal has no grant",
    "unknown-role": "403: the grant names a role the permission matrix does not know",
    "metric-not-permitted": "403: the role may not read this metric type",
    "tenant-not-permitted": "403: a tenant outside the caller's grant was asked for",
    "range-exceeds-role-limit": "403: the time range is longer than the role may read in one request",
    "identity-not-permitted": "403: the role sees pseudonyms only, and filtered by a user id",
    "jwks-unavailable": "503: the OIDC provider's JWKS could not be fetched (and no keys were cached)",
    "http-405": "405: the endpoint exists, the method does not",
    "clickhouse-unavailable": "503: ClickHouse did not answer (the reason follows); nothing partial is returned",
    "postgresql-unavailable": "503: PostgreSQL did not answer; the request was refused",
    "audit-unavailable": "503: the access log could not be written, so the answer was withheld",
    "internal-error": "500: a bug; the access log has the request",
}
