"""What the service knows of usage, in memory: per (tenant, department, user, UTC day) the day's usage columns from
the usage topic (the stream) and from ClickHouse (the base of a cold scope), and the quota metrics summed per user,
department and tenant per day and per month.

The hand-over is per key: a (tenant, department, user, day) counts with its stream record when there is one (it is
the day's whole total, by the same rules as ClickHouse's usage_1d), else with ClickHouse's row; never both.
"""

from __future__ import annotations

import threading
from typing import Iterable

from services.quota.metrics import NO_PRICES, NO_USAGE, Prices, Raw, Totals, add, subtract, totals

Key = tuple[str, str, str, str]  # tenant_id, department_id, user_id, day (YYYY-MM-DD)
# A scope the ledger sums: ("user", tenant, user_id), ("department", tenant, department_id), ("tenant", tenant, "")
ScopeKey = tuple[str, str, str]


def scope_keys(key: Key) -> tuple[ScopeKey, ScopeKey, ScopeKey]:
    tenant, department, user, _ = key
    return ("user", tenant, user), ("department", tenant, department), ("tenant", tenant, "")


class Ledger:
    """Thread-safe: the consumer thread writes, request handlers read; every operation is short and holds the lock."""

    def __init__(self, prices: Prices = NO_PRICES, horizon: str = "") -> None:
        self.prices = prices
        self.horizon = horizon  # days before this (YYYY-MM-DD) are dropped: no period of now reaches them
        self.stream: dict[Key, Raw] = {}
        self.base: dict[Key, Raw] = {}
        self.days: dict[ScopeKey, dict[str, Totals]] = {}
        self.months: dict[ScopeKey, dict[str, Totals]] = {}
        self.departments: dict[tuple[str, str], set[str]] = {}  # (tenant, user) -> departments its keys name
        self.loaded: set[tuple[ScopeKey, str]] = set()  # (scope, YYYY-MM) whose ClickHouse base is in
        self.lock = threading.Lock()

    def _totals(self, key: Key) -> Totals:
        found = self.stream.get(key)
        if found is None:
            found = self.base.get(key)
        return NO_USAGE if found is None else totals(found, key[3], self.prices)

    def _shift(self, key: Key, delta: Totals) -> None:
        day = key[3]
        month = day[:7]
        for scope in scope_keys(key):
            days = self.days.setdefault(scope, {})
            days[day] = add(days.get(day, NO_USAGE), delta)
            months = self.months.setdefault(scope, {})
            months[month] = add(months.get(month, NO_USAGE), delta)

    def _put(self, store: dict[Key, Raw], key: Key, columns: Raw | None) -> None:
        old = self._totals(key)
        if columns is None:
            store.pop(key, None)
        else:
            store[key] = columns
            self.departments.setdefault((key[0], key[2]), set()).add(key[1])
        new = self._totals(key)
        if new != old:
            self._shift(key, subtract(new, old))

    def put_stream(self, key: Key, columns: Raw | None) -> bool:
        """A usage-topic record (None: a tombstone); False when its day is before the horizon and it was dropped."""
        if key[3] < self.horizon:
            return False
        with self.lock:
            self._put(self.stream, key, columns)
        return True

    def put_base(self, scope: ScopeKey, month: str, rows: Iterable[tuple[Key, Raw]]) -> None:
        """ClickHouse's rows of a scope's month; the scope's month counts as loaded from now on. A key the stream
        holds keeps the stream's record."""
        with self.lock:
            for key, columns in rows:
                if key[3] >= self.horizon:
                    self._put(self.base, key, columns)
            self.loaded.add((scope, month))

    def is_loaded(self, scope: ScopeKey, month: str) -> bool:
        """Whether the scope's month holds ClickHouse's rows: its own, or its tenant's (a tenant's load brings every
        row of its users and departments, so a user without a row there had no usage)."""
        return (scope, month) in self.loaded or (("tenant", scope[1], ""), month) in self.loaded

    def used(self, scope: ScopeKey, period: str, day: str) -> Totals:
        """The scope's usage in the day (period "day") or in the day's calendar month (period "month")."""
        with self.lock:
            if period == "day":
                return self.days.get(scope, {}).get(day, NO_USAGE)
            return self.months.get(scope, {}).get(day[:7], NO_USAGE)

    def departments_of(self, tenant: str, user: str) -> set[str]:
        with self.lock:
            return set(self.departments.get((tenant, user), ()))

    def reprice(self, prices: Prices) -> None:
        """Use new prices: every sum is rebuilt from the keys' columns."""
        with self.lock:
            self.prices = prices
            self.days, self.months = {}, {}
            for key in set(self.stream) | set(self.base):
                self._shift(key, self._totals(key))

    def drop_before(self, horizon: str) -> None:
        """Forget every day before horizon (YYYY-MM-DD, the first of a month)."""
        with self.lock:
            self.horizon = horizon
            for store in (self.stream, self.base):
                for key in [k for k in store if k[3] < horizon]:
                    del store[key]
            for scope_days in self.days.values():
                for day in [d for d in scope_days if d < horizon]:
                    del scope_days[day]
            for scope_months in self.months.values():
                for month in [m for m in scope_months if m < horizon[:7]]:
                    del scope_months[month]
            self.loaded = {(s, m) for s, m in self.loaded if m >= horizon[:7]}

    def size(self) -> tuple[int, int]:
        """(stream keys, ClickHouse keys) held."""
        with self.lock:
            return len(self.stream), len(self.base)


