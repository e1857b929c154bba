"""The quota service's core, without HTTP or Kafka: answer a check or a state request from the ledger (loading a
cold scope from ClickHouse once per month), follow the fail-open / fail-closed policy while the ledger is rebuilt or
ClickHouse is away, mark answers stale when the usage topic could not be read for a while, and find the limits a
live usage update crosses (the exceeded events)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable

from services.quota.ledger import Key, Ledger, ScopeKey, scope_keys
from services.quota.metrics import METRICS, NO_USAGE, Raw, Totals, add, index, totals
from services.quota.rules import PERIODS, Limit, Verdict, allowed, binding, crossed, judge, month_before, period_start
from services.quota.stores import StoreUnavailable

Clock = Callable[[], float]
LimitBook = dict[tuple[str, str, str], list[Limit]]


def utc_day(now: float) -> str:
    # POSIX time has 86,400 s a day: the day number alone names the UTC day (formatted once a day, not per check)
    return _day_text(int(now // 86400))


@lru_cache(maxsize=8)
def _day_text(days: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=days)).isoformat()


@dataclass
class Feed:
    """How current the ledger is with the usage topic: rebuilt (read up to the end offsets seen at start-up), and
    when the consumer last confirmed it held everything the topic had (monotonic seconds)."""

    rebuilt: bool = False
    synced_at: float | None = None
    error: str = ""
    records: int = 0


@dataclass(frozen=True)
class Answer:
    allow: bool
    metric: str
    amount: Decimal
    verdicts: list[Verdict]
    used: Decimal | None
    source: str  # memory, clickhouse or fallback
    reason: str
    degraded: bool
    stale: bool
    data_age_s: float | None
    period: str | None
    day: str


@dataclass
class Cold:
    """The ClickHouse side the service needs: a scope's month of rows, and the prices."""

    scope_month: Callable[[str, str, str, str], list[tuple[Key, Raw]]]


@dataclass
class Quota:
    ledger: Ledger
    cold: Cold
    fail_open: dict[str, bool]  # per metric: the answer while the usage cannot be known
    stale_after_s: float = 10.0
    project_cache_s: float = 10.0
    limits: LimitBook = field(default_factory=dict)
    feed: Feed = field(default_factory=Feed)
    wall: Clock = time.time
    monotonic: Clock = time.monotonic
    projects: dict[tuple[str, str, str], tuple[float, list[tuple[Key, Raw]]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- reading usage ---------------------------------------------------------------------------------------------

    def data_age(self) -> float | None:
        synced = self.feed.synced_at
        return None if synced is None else max(0.0, self.monotonic() - synced)

    def usage(self, tenant: str, scope: str, scope_id: str, day: str) -> tuple[dict[str, Totals] | None, str, str]:
        """The scope's usage per period ({"day": ..., "month": ...}), where it came from, and why not when None."""
        if not self.feed.rebuilt:
            return None, "fallback", "the usage topic is still being read after a start (rebuild)"
        month = day[:7]
        if scope == "project":
            return self._project(tenant, scope_id, day)
        key: ScopeKey = (scope, tenant, scope_id)
        source = "memory"
        if not self.ledger.is_loaded(key, month):
            try:
                rows = self.cold.scope_month(scope, tenant, scope_id, month)
            except StoreUnavailable as exc:
                return None, "fallback", f"a cold {scope}: {exc}"
            self.ledger.put_base(key, month, rows)
            source = "clickhouse"
        return {p: self.ledger.used(key, p, day) for p in PERIODS}, source, ""

    def _project(self, tenant: str, project: str, day: str) -> tuple[dict[str, Totals] | None, str, str]:
        """Projects are not on the usage topic: their usage is ClickHouse's, reused for project_cache_s."""
        cache_key = (tenant, project, day[:7])
        cached = self.projects.get(cache_key)
        if cached is None or cached[0] <= self.monotonic():
            try:
                rows = self.cold.scope_month("project", tenant, project, day[:7])
            except StoreUnavailable as exc:
                return None, "fallback", f"a project's usage: {exc}"
            cached = (self.monotonic() + self.project_cache_s, rows)
            with self.lock:
                self.projects[cache_key] = cached
        prices = self.ledger.prices
        month, today = NO_USAGE, NO_USAGE
        for key, columns in cached[1]:
            t = totals(columns, key[3], prices)
            month = add(month, t)
            if key[3] == day:
                today = add(today, t)
        return {"day": today, "month": month}, "clickhouse", ""

    # -- limits ----------------------------------------------------------------------------------------------------

    def enclosing(self, tenant: str, scope: str, scope_id: str) -> list[tuple[str, str]]:
        """The scope and those enclosing it whose limits also bind it: a user's departments (from its usage keys)
        and the tenant."""
        scopes = [(scope, scope_id)]
        if scope == "user":
            scopes += [("department", d) for d in sorted(self.ledger.departments_of(tenant, scope_id))]
        if scope != "tenant":
            scopes.append(("tenant", ""))
        return scopes

    def limits_of(self, tenant: str, scope: str, scope_id: str, metric: str, period: str | None) -> list[Limit]:
        return [limit for limit in self.limits.get((tenant, scope, scope_id), ())
                if limit.metric == metric and (period is None or limit.period == period)]

    def in_memory(self, tenant: str, scope: str, scope_id: str) -> bool:
        """Whether a check of the scope can be answered without a store (so without leaving the event loop)."""
        if not self.feed.rebuilt:
            return True
        if scope == "project":
            return False
        month = utc_day(self.wall())[:7]
        for which, which_id in self.enclosing(tenant, scope, scope_id):
            if (which == scope or self.limits.get((tenant, which, which_id))) and \
                    not self.ledger.is_loaded((which, tenant, which_id), month):
                return False
        return True

    # -- answers ---------------------------------------------------------------------------------------------------

    def check(self, tenant: str, scope: str, scope_id: str, metric: str, amount: Decimal,
              period: str | None = None) -> Answer:
        """May the scope spend amount more of metric now (in period, or in every period that has a limit)?"""
        day = utc_day(self.wall())
        age = self.data_age()
        stale = age is None or age > self.stale_after_s
        m = index(metric)
        verdicts: list[Verdict] = []
        sources: list[str] = []
        reasons: list[str] = []
        used_self: Decimal | None = None
        for which, which_id in self.enclosing(tenant, scope, scope_id):
            limits = self.limits_of(tenant, which, which_id, metric, period)
            if not limits and (which, which_id) != (scope, scope_id):
                continue
            used, source, reason = self.usage(tenant, which, which_id, day)
            sources.append(source)
            if used is None:
                reasons.append(reason)
                continue
            if (which, which_id) == (scope, scope_id):
                used_self = used[period or "day"][m]
            verdicts += [judge(limit, used[limit.period][m], amount, day) for limit in limits]
        if reasons:
            allow = self.fail_open.get(metric, True)
            reason = "; ".join(reasons) + f": {'fail-open' if allow else 'fail-closed'} policy for {metric}"
            top = binding(verdicts)
            return Answer(allow, metric, amount, verdicts, used_self, "fallback", reason, True, stale, age,
                          top.limit.period if top else period, day)
        source = "clickhouse" if "clickhouse" in sources else "memory"
        top = binding(verdicts)
        ok = allowed(verdicts)
        if top is None:
            reason = "no limit applies"
        elif top.level == "hard":
            reason = f"the {top.limit.period}'s hard limit of the {top.limit.scope} would be exceeded"
        elif top.level == "soft":
            reason = f"over the {top.limit.period}'s soft limit of the {top.limit.scope} (a warning)"
        else:
            reason = "within every limit"
        if stale:
            reason += f"; STALE: the usage topic was last read in full {age:.1f} s ago" if age is not None else \
                      "; STALE: the usage topic has not been read in full yet"
        return Answer(ok, metric, amount, verdicts, used_self, source, reason, False, stale, age,
                      top.limit.period if top else period, day)

    def state(self, tenant: str, scope: str, scope_id: str) -> dict[str, Any]:
        """A scope's usage per metric and period with every limit that binds it."""
        day = utc_day(self.wall())
        used, source, reason = self.usage(tenant, scope, scope_id, day)
        age = self.data_age()
        out: dict[str, Any] = {"day": day, "month": day[:7], "source": source, "degraded": used is None,
                               "reason": reason, "stale": age is None or age > self.stale_after_s, "data_age_s": age,
                               "metrics": {}}
        for metric in METRICS:
            answer = self.check(tenant, scope, scope_id, metric, Decimal(0))
            out["metrics"][metric] = {
                "used": {p: (used[p][index(metric)] if used else None) for p in PERIODS},
                "verdicts": answer.verdicts, "allow": answer.allow,
            }
        return out

    # -- the stream ------------------------------------------------------------------------------------------------

    def apply(self, key: Key, columns: Raw | None, live: bool) -> list[dict[str, Any]]:
        """One usage-topic record into the ledger; the exceeded events it causes when live (caught up), for the
        scopes whose month is loaded (so their usage before the update is known)."""
        if not live:
            self.ledger.put_stream(key, columns)
            return []
        watched: list[tuple[ScopeKey, list[Limit]]] = []
        for scope in scope_keys(key):
            limits = self.limits.get((scope[1], scope[0], scope[2]), [])
            if limits and self.ledger.is_loaded(scope, key[3][:7]):
                watched.append((scope, limits))
        before = {scope: {p: self.ledger.used(scope, p, key[3]) for p in PERIODS} for scope, _ in watched}
        self.ledger.put_stream(key, columns)
        events = []
        for scope, limits in watched:
            for limit in limits:
                m = index(limit.metric)
                old = before[scope][limit.period][m]
                new = self.ledger.used(scope, limit.period, key[3])[m]
                for level in crossed(limit, old, new):
                    events.append(exceeded_event(limit, level, period_start(limit.period, key[3]), new, self.wall()))
        return events

    def scopes_to_warm(self, day: str) -> list[tuple[str, str, str]]:
        """(scope, tenant, id) of every limit's user / department / tenant not loaded for day's month: loaded ahead of
        any check, so their checks answer from memory and crossings are seen."""
        out = []
        for (tenant, scope, scope_id) in list(self.limits):
            if scope != "project" and not self.ledger.is_loaded((scope, tenant, scope_id), day[:7]):
                out.append((scope, tenant, scope_id))
        return out

    def horizon(self) -> str:
        return month_before(utc_day(self.wall()))


def exceeded_event(limit: Limit, level: str, start: str, used: Decimal, now: float) -> dict[str, Any]:
    """The quota.limit.exceeded record of a crossing (event name per seed 001: system.component.action.note)."""
    value = limit.soft if level == "soft" else limit.hard
    return {
        "event_name": f"quota.limit.exceeded.{level}",
        "ts": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "tenant_id": limit.tenant_id, "scope": limit.scope, "scope_id": limit.scope_id, "metric": limit.metric,
        "period": limit.period, "period_start": start, "level": level, "limit": format(value, "f"),
        "used": format(used, "f"),
    }
