"""What the routers share: WHERE clauses built from checked parameters (always server-side query parameters,
always the caller's tenants), and the user filter that takes a pseudonym, or a user id from roles granted identity."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Query

from services.api.app import Scope
from services.api.params import TimeRange, identifier
from services.api.privacy import is_pseudonym, pseudonym
from services.api.problems import forbidden

FROM_QUERY = Query(None, alias="from", description="start of the range, inclusive: ISO 8601 with offset, or a date "
                                                    "(default: a day before `to`)")
TO_QUERY = Query(None, description="end of the range, exclusive (default: now)")
LIMIT_QUERY = Query(None, description="rows per page (default 100; at most API_MAX_ROWS)")
OFFSET_QUERY = Query(None, description="rows to skip: the previous page's page.next_offset")


@dataclass
class Where:
    """AND-ed conditions with their parameters; every value travels as a ClickHouse query parameter."""

    clauses: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def add(self, clause: str, **params: Any) -> Where:
        self.clauses.append(clause)
        self.params.update(params)
        return self

    def sql(self) -> str:
        return "WHERE " + " AND ".join(self.clauses) if self.clauses else ""


def tenant_where(scope: Scope, column: str = "tenant_id") -> Where:
    return Where().add(f"{column} IN {{tenants:Array(String)}}", tenants=scope.tenants)


def in_range(where: Where, column: str, rng: TimeRange, kind: str = "DateTime64(3, 'UTC')") -> Where:
    return where.add(f"{column} >= {{since:{kind}}} AND {column} < {{until:{kind}}}",
                     since=rng.start, until=rng.end)


def in_windows(where: Where, column: str, rng: TimeRange, seconds: int) -> Where:
    """Rows of windows `seconds` long (window_start in column) that overlap [from, to): a range starting at 10:30
    still gets the 10:00 hour."""
    return where.add(f"{column} > {{since:DateTime('UTC')}} - toIntervalSecond({int(seconds)}) "
                     f"AND {column} < {{until:DateTime('UTC')}}", since=rng.start, until=rng.end)


def usage_span(rng: TimeRange, seconds: int = 60, step: int = 86400) -> str:
    """usage_span over the windows `seconds` long that overlap [from, to) (pair with in_windows for the same
    parameters): each instant read from the coarsest rollup whose windows divide `step`."""
    lo = f"toStartOfInterval({{since:DateTime('UTC')}}, toIntervalSecond({int(seconds)}))"
    hi = f"toStartOfInterval({{until:DateTime('UTC')}} + {int(seconds) - 1}, toIntervalSecond({int(seconds)}))"
    return f"{{db}}.usage_span(lo = {lo}, hi = {hi}, step = {int(step)})"


def cost_span(step: int) -> str:
    """cost_span over the hours that overlap [from, to): priced days and edge hours (step 86400), or hours (3600)."""
    return ("{db}.cost_span(lo = toStartOfHour({since:DateTime('UTC')}), hi = toStartOfHour({until:DateTime('UTC')} "
            f"+ 3599), step = {int(step)})")


def span(view: str, hours: bool = False) -> str:
    """A VM cost table's span view over [from, to) (the hours that overlap it with hours=True)."""
    lo = "toStartOfHour({since:DateTime64(3, 'UTC')})" if hours else "toDateTime({since:DateTime64(3, 'UTC')})"
    return f"{{db}}.{view}(lo = {lo}, hi = toDateTime({{until:DateTime64(3, 'UTC')}}) + 1)"


def id_filter(where: Where, name: str, value: str | None, column: str) -> Where:
    if value is not None:
        where.add(f"{column} = {{{name}:String}}", **{name: identifier(name, value)})
    return where


def id_filters(where: Where, filters: tuple[tuple[str, str | None, str], ...]) -> Where:
    """id_filter for each (parameter name, value, column)."""
    for name, value, column in filters:
        id_filter(where, name, value, column)
    return where


_INDEX_TTL_S = 60.0
_index: dict[tuple[bytes, str], tuple[float, dict[str, str]]] = {}  # (key, tenant) -> (built at, pseudonym -> user id)


async def pseudonym_index(scope: Scope, tenant: str) -> dict[str, str]:
    """pseudonym -> user id of the tenant's users (those with usage), rebuilt each minute."""
    cached = _index.get((scope.state.key, tenant))
    if cached and time.monotonic() - cached[0] < _INDEX_TTL_S:
        return cached[1]
    rows = await scope.ch.query("SELECT DISTINCT user_id FROM {db}.usage_1d WHERE tenant_id = {tenant:String}",
                          {"tenant": tenant})
    index = {pseudonym(scope.state.key, tenant, r["user_id"]): r["user_id"] for r in rows}
    _index[(scope.state.key, tenant)] = (time.monotonic(), index)
    return index


async def user_filter(where: Where, scope: Scope, value: str | None, column: str = "user_id", name: str = "user") -> Where:
    """Filter by a user: a pseudonym (any role; it names one tenant's user) or a user id (roles granted identity)."""
    if value is None:
        return where
    if is_pseudonym(value):
        for tenant in scope.tenants:
            user_id = (await pseudonym_index(scope, tenant)).get(value)
            if user_id is not None:
                return where.add(f"tenant_id = {{user_tenant:String}} AND {column} = {{{name}:String}}",
                                 user_tenant=tenant, **{name: user_id})
        return where.add("0")  # no user of the caller's tenants has this pseudonym
    if not scope.privacy.identity:
        raise forbidden("identity-not-permitted", f"role {scope.caller.role} sees pseudonyms only: filter {name} by "
                                                  "a pseudonym (psn_...) taken from an answer", name)
    return where.add(f"{column} = {{{name}:String}}", **{name: identifier(name, value)})


def show_people(rows: list[dict[str, Any]], scope: Scope, users: tuple[str, ...] = ("user_id",),
                hosts: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Each row's user ids (and personal host names) as this caller may see them; rows must carry tenant_id."""
    privacy = scope.privacy
    for row in rows:
        tenant = row.get("tenant_id", "")
        for column in users:
            if column in row and row[column] is not None:
                row[column] = privacy.user(tenant, row[column])
        for column in hosts:
            if column in row and row[column] is not None:
                row[column] = privacy.host(row[column])
    return rows
