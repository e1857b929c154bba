"""The quota service's reads of its two stores, blocking (run in worker threads): limits from PostgreSQL (as
POSTGRES_API_USER, which may read quota_limits), and from ClickHouse (as the read-only reader) a cold scope's usage
per user and day of a month, a project's usage per day, and the price catalogue's `*` prices."""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
from clickhouse_connect.driver.client import Client

from services.quota.ledger import Key
from services.quota.metrics import COLUMNS, PRICE_KINDS, Prices, Raw, column
from services.quota.rules import Limit
from telemetry import clickhouse
from telemetry.settings import Settings

_LIMITS_SQL = """SELECT tenant_id, scope, scope_id, metric, period, soft_limit, hard_limit FROM quota_limits"""


class StoreUnavailable(Exception):
    """A store did not answer; the message names it and the reason."""


def load_limits(conninfo: str) -> dict[tuple[str, str, str], list[Limit]]:
    """Every limit, by (tenant, scope, scope_id)."""
    try:
        with psycopg.connect(conninfo, connect_timeout=3) as conn:
            rows = conn.execute(_LIMITS_SQL).fetchall()
    except psycopg.Error as exc:
        raise StoreUnavailable(f"PostgreSQL: {str(exc).strip().splitlines()[0][:200]}") from exc
    book: dict[tuple[str, str, str], list[Limit]] = {}
    for tenant, scope, scope_id, metric, period, soft, hard in rows:
        book.setdefault((tenant, scope, scope_id), []).append(Limit(tenant, scope, scope_id, metric, period, soft, hard))
    return book


def month_range(month: str) -> tuple[str, str]:
    """['YYYY-MM-01', first day of the next month) of a YYYY-MM month."""
    first = date.fromisoformat(month + "-01")
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first.isoformat(), following.isoformat()


MAX_QUERIES = 8  # cold queries in flight at once (clickhouse-connect's connection pool keeps 8)
_SUMS = ", ".join(f"sum({name}) AS {name}" for name in COLUMNS)
_FILTERS = {"user": "AND user_id = {id:String}", "department": "AND department_id = {id:String}", "tenant": "",
            "project": "AND project_id = {id:String}"}


class ClickHouseUsage:
    """Cold reads from usage_1d: one query per scope and month. A client per worker thread."""

    def __init__(self, settings: Settings, timeout_s: int = 5) -> None:
        self.settings = settings
        self.database = settings.clickhouse_database
        self.timeout_s = timeout_s
        self._local = threading.local()
        # a burst of cold checks queues here rather than opening a query (and a connection) per worker thread
        self.slots = threading.BoundedSemaphore(MAX_QUERIES)

    def _client(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = clickhouse.connect(self.settings, reader=True, connect_timeout=2,
                                        send_receive_timeout=self.timeout_s + 2, autogenerate_session_id=False,
                                        query_limit=0)
            client.set_client_setting("max_execution_time", self.timeout_s)
            self._local.client = client
        return client

    def _rows(self, sql: str, parameters: dict[str, Any]) -> list[tuple[Any, ...]]:
        try:
            with self.slots:
                return self._client().query(sql.replace("{db}", self.database), parameters=parameters).result_rows
        except Exception as exc:  # noqa: BLE001 - any failure is "ClickHouse cannot answer now": the caller degrades
            self._local.client = None
            text = str(exc).strip().splitlines()
            raise StoreUnavailable(f"ClickHouse: {(text[0] if text else type(exc).__name__)[:200]}") from exc

    def scope_month(self, scope: str, tenant: str, scope_id: str, month: str) -> list[tuple[Key, Raw]]:
        """A user's, department's, project's or tenant's usage per (department, user, day) of the month."""
        start, end = month_range(month)
        rows = self._rows(f"""
            SELECT department_id, user_id, toString(toDate(window_start)) AS day, {_SUMS}
            FROM {{db}}.usage_1d
            WHERE tenant_id = {{tenant:String}} {_FILTERS[scope]}
              AND window_start >= toDateTime({{start:String}}, 'UTC') AND window_start < toDateTime({{end:String}}, 'UTC')
            GROUP BY department_id, user_id, day""", {"tenant": tenant, "id": scope_id, "start": start, "end": end})
        return [((tenant, department, user, day), tuple(column(dict(zip(COLUMNS, values)), c) for c in COLUMNS))
                for department, user, day, *values in rows]

    def prices(self) -> Prices:
        rows = self._rows("""
            SELECT kind, formatDateTime(valid_from, '%Y-%m-%d %H:%i:%S'), formatDateTime(valid_to, '%Y-%m-%d %H:%i:%S'),
                   toString(unit_price), currency
            FROM {db}.price_in_force WHERE item = '*' AND kind IN {kinds:Array(String)}
            ORDER BY kind, valid_from""", {"kinds": list(PRICE_KINDS)})
        periods: dict[str, list[tuple[str, str, Decimal]]] = {}
        currency = ""
        for kind, start, end, price, cur in rows:
            periods.setdefault(kind, []).append((start, end, Decimal(price)))
            currency = cur or currency
        return Prices(currency, {k: tuple(v) for k, v in periods.items()})

    def ping(self) -> bool:
        try:
            return bool(self._client().ping())
        except Exception:  # noqa: BLE001
            self._local.client = None
            return False

