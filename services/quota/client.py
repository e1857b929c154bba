"""A small Python client of the quota service: `QuotaClient(url, token).check(...)` -> Decision, `.state(...)`.

    from services.quota.client import QuotaClient
    quota = QuotaClient("http://127.0.0.1:8010", token)
    if not quota.check("tenant-a", "credits", "12.5", user="alice").allow: ...

Amounts go as decimal text and come back as Decimal, so nothing is rounded on the way. An error answer raises
QuotaError with the problem's code and detail; a service that cannot be reached raises it with code `unreachable`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests


class QuotaError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


@dataclass(frozen=True)
class Decision:
    allow: bool
    level: str  # ok, soft (a warning) or hard
    metric: str
    period: str | None
    limit: Decimal | None
    used: Decimal | None
    remaining: Decimal | None
    source: str  # memory, clickhouse or fallback
    degraded: bool
    stale: bool
    data_age_s: float | None
    reason: str
    raw: dict[str, Any]

    @classmethod
    def of(cls, body: dict[str, Any]) -> "Decision":
        return cls(body["allow"], body["level"], body["metric"], body["period"], _decimal(body["limit"]),
                   _decimal(body["used"]), _decimal(body["remaining"]), body["source"], body["degraded"],
                   body["stale"], body["data_age_s"], body["reason"], body)


class QuotaClient:
    def __init__(self, url: str, token: str, timeout_s: float = 2.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.session.request(method, self.url + path, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise QuotaError(0, "unreachable", f"the quota service at {self.url} did not answer: {exc}") from exc
        if response.status_code != 200:
            try:
                problem = response.json()
                code, detail = problem.get("code", f"http-{response.status_code}"), problem.get("detail", "")
            except ValueError:
                code, detail = f"http-{response.status_code}", response.text[:200]
            raise QuotaError(response.status_code, code, detail)
        return response.json()

    def check(self, tenant: str, metric: str, amount: Decimal | int | str, *, user: str | None = None,
              department: str | None = None, project: str | None = None, period: str | None = None) -> Decision:
        """May the user (or department, project; none of them: the tenant) spend amount of metric now?"""
        named = [(scope, value) for scope, value in (("user", user), ("department", department), ("project", project))
                 if value is not None]
        if len(named) > 1:
            raise ValueError("name at most one of user, department and project")
        scope, scope_id = named[0] if named else ("tenant", "")
        body = {"tenant": tenant, "scope": scope, "id": scope_id, "metric": metric, "amount": str(amount)}
        if period is not None:
            body["period"] = period
        return Decision.of(self._call("POST", "/v1/check", json=body))

    def state(self, tenant: str, scope: str = "user", scope_id: str = "") -> dict[str, Any]:
        """The scope's usage per metric, day and month, with every limit that binds it (amounts as decimal text)."""
        return self._call("GET", "/v1/state", params={"tenant": tenant, "scope": scope, "id": scope_id})

    def close(self) -> None:
        self.session.close()
