"""The background refresh: limits and the directory from PostgreSQL, prices from ClickHouse, every QUOTA_REFRESH_S;
then every limited user, department and tenant not in memory yet is loaded from ClickHouse, so its checks answer
from memory and its crossings are seen. A store that does not answer keeps what was loaded last."""

from __future__ import annotations

import logging
import threading

import psycopg

from services.quota.app import Directory
from services.quota.prom import QuotaMetrics
from services.quota.service import Quota, utc_day
from services.quota.stores import ClickHouseUsage, StoreUnavailable, load_limits
from telemetry.settings import Settings

LOG = logging.getLogger("services.quota")
_DIRECTORY_SQL = """
    SELECT '', 'tenant', tenant_id FROM tenants
    UNION ALL SELECT tenant_id, 'department', department_id FROM departments
    UNION ALL SELECT tenant_id, 'project', project_id FROM projects
    UNION ALL SELECT tenant_id, 'user', user_id FROM users"""


class Refresher:
    def __init__(self, settings: Settings, quota: Quota, usage: ClickHouseUsage, directory: Directory,
                 metrics: QuotaMetrics) -> None:
        self.settings, self.quota, self.usage, self.directory, self.metrics = settings, quota, usage, directory, metrics
        self.conninfo = settings.postgres_conninfo(api=True)

    def once(self) -> str | None:
        """Reload limits, directory and prices; why not, when a store did not answer."""
        problems = []
        try:
            self.quota.limits = load_limits(self.conninfo)
            with psycopg.connect(self.conninfo, connect_timeout=3) as conn:
                known: dict[tuple[str, str], set[str]] = {}
                for tenant, scope, scope_id in conn.execute(_DIRECTORY_SQL):
                    known.setdefault((tenant, scope), set()).add(scope_id)
            self.directory.known = known
        except (StoreUnavailable, psycopg.Error) as exc:
            self.metrics.limit_errors.inc()
            problems.append(f"PostgreSQL at {self.settings.postgres_url} as {self.settings.postgres_api_user}: {exc}")
        try:
            prices = self.usage.prices()
            if prices != self.quota.ledger.prices:
                self.quota.ledger.reprice(prices)
        except StoreUnavailable as exc:
            problems.append(f"ClickHouse at {self.settings.clickhouse_url}: {exc}")
        return "; ".join(problems) or None

    def warm(self) -> None:
        if not self.quota.feed.rebuilt:
            return
        day = utc_day(self.quota.wall())
        for scope, tenant, scope_id in self.quota.scopes_to_warm(day):
            try:
                rows = self.usage.scope_month(scope, tenant, scope_id, day[:7])
            except StoreUnavailable as exc:
                LOG.warning("quota: could not load %s %s of %s: %s", scope, scope_id, tenant, exc)
                return
            self.quota.ledger.put_base((scope, tenant, scope_id), day[:7], rows)

    def loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.quota_refresh_s):
            problem = self.once()
            if problem:
                LOG.warning("quota: refresh: %s", problem)
            self.warm()
