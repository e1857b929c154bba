"""The API's two stores: PostgreSQL through async psycopg connections (as POSTGRES_API_USER) and ClickHouse through
clickhouse-connect as the read-only reader, one client per worker thread. Failures become 503 problems that name
the store and the reason; nothing partial is returned."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import anyio
import pyarrow as pa
import psycopg
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

from services.api.problems import Problem, unavailable
from telemetry import clickhouse
from telemetry.settings import Settings

# ClickHouse error codes that mean "not now" rather than a bug: timeout, memory, too many queries, network.
LOG = logging.getLogger("services.api")
_TRANSIENT_CODES = {"159", "160", "202", "209", "210", "241", "242", "394", "516"}


Derive = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


class ClickHouseReader:
    """Read-only queries with server-side parameters; a client per worker thread.

    Answers are cached for API_CACHE_SECONDS, keyed by the query and its parameters (tenants included), so
    dashboards refreshing the same panels cost ClickHouse one query per period; concurrent requests for the same
    answer wait for the one query in flight instead of each sending it. Only ClickHouse's rows are cached:
    authentication, authorisation, pseudonyms and the access log happen for every request."""

    MAX_ENTRIES = 2000
    REFRESH_AHEAD = 0.3  # the last 30 % of an answer's life (3 s of 10): a query in the background

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database = settings.clickhouse_database
        self.ttl = float(settings.api_cache_seconds)
        self._local = threading.local()
        # touched on the event loop only, so no lock
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._in_flight: dict[str, asyncio.Lock] = {}
        self._refreshing: set[asyncio.Task[Any]] = set()
        self.clock = time.monotonic
        self.hits = self.misses = 0

    async def query(self, sql: str, parameters: dict[str, Any], derive: Derive | None = None) -> list[dict[str, Any]]:
        """The rows of a SELECT as dicts (the caller's own copies); a 503 problem when ClickHouse cannot answer now.
        A cached answer is served on the event loop; a query runs in a worker thread (clickhouse-connect blocks).
        derive (a pure function of the rows, e.g. percentiles from histograms) runs once per query, not per request:
        its result is what is cached."""
        if self.ttl <= 0:
            rows = await anyio.to_thread.run_sync(self._query, sql, parameters)
            return derive(rows) if derive else rows
        key = sql + "\x00" + repr(sorted(parameters.items())) + ("\x00" + derive.__qualname__ if derive else "")
        cached = self._cache.get(key)
        now = self.clock()
        if cached is None or cached[0] <= now:
            rows = await self._load(key, sql, parameters, derive=derive)
        else:
            self.hits += 1
            rows = cached[1]
            # Refresh ahead: an answer asked for in the last part of its life is queried again in the background,
            # so a dashboard's steady requests do not all queue behind ClickHouse when it expires. No answer is
            # served older than the TTL all the same.
            if cached[0] - now < self.ttl * self.REFRESH_AHEAD and key not in self._in_flight:
                task = asyncio.create_task(self._load(key, sql, parameters, refresh=True, derive=derive))
                self._refreshing.add(task)
                task.add_done_callback(self._refreshed)
        return [dict(row) for row in rows]

    async def _load(self, key: str, sql: str, parameters: dict[str, Any], refresh: bool = False,
                    derive: Derive | None = None) -> list[dict[str, Any]]:
        flight = self._in_flight.setdefault(key, asyncio.Lock())
        try:
            async with flight:  # one query per key at a time: the others find its answer in the cache
                cached = self._cache.get(key)
                if cached is not None and cached[0] > self.clock() and not refresh:
                    self.hits += 1
                    return cached[1]
                self.misses += 1
                rows = await anyio.to_thread.run_sync(self._query, sql, parameters)
                if derive is not None:
                    rows = derive(rows)
                if len(self._cache) >= self.MAX_ENTRIES:
                    now = self.clock()
                    for stale in [k for k, (expires, _) in self._cache.items() if expires <= now] or list(self._cache)[:100]:
                        self._cache.pop(stale, None)
                self._cache[key] = (self.clock() + self.ttl, rows)
                return rows
        finally:
            if not flight.locked():
                self._in_flight.pop(key, None)

    def _refreshed(self, task: asyncio.Task[Any]) -> None:
        self._refreshing.discard(task)
        if not task.cancelled() and task.exception() is not None:  # the next request past the TTL queries itself
            LOG.warning("refreshing a cached ClickHouse answer failed: %s", task.exception())

    def _client(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = clickhouse.connect(
                self.settings, reader=True, connect_timeout=3, send_receive_timeout=self.settings.api_query_timeout_s + 5,
                autogenerate_session_id=False, query_limit=0)
            client.set_client_setting("max_execution_time", self.settings.api_query_timeout_s)
            self._local.client = client
        return client

    def _query(self, sql: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        with self._answering():
            result = self._client().query(sql.replace("{db}", self.database), parameters=parameters)
        names = result.column_names
        return [dict(zip(names, row)) for row in result.result_rows]

    def arrow_batches(self, sql: str, parameters: dict[str, Any]) -> Iterator[pa.RecordBatch]:
        """A SELECT's rows as Arrow record batches, as ClickHouse sends them (call from a worker thread; nothing
        cached): an export streams them without holding the answer."""
        with self._answering():
            with self._client().query_arrow_stream(sql.replace("{db}", self.database), parameters=parameters) as stream:
                yield from stream

    def arrow_schema(self, sql: str, parameters: dict[str, Any]) -> pa.Schema:
        """The columns a SELECT would give, as Arrow types (its rows are not read: add LIMIT 0)."""
        with self._answering():
            raw = self._client().raw_query(sql.replace("{db}", self.database), parameters=parameters, fmt="ArrowStream",
                                           settings={"output_format_arrow_string_as_string": 1})
        return pa.ipc.open_stream(raw).schema

    @contextmanager
    def _answering(self) -> Iterator[None]:
        """ClickHouse's failures as problems: 503 when it cannot answer now, 500 when it refused the query."""
        try:
            yield
        except OperationalError as exc:  # no answer at all: the network, a restart
            self._local.client = None
            raise unavailable("clickhouse", f"ClickHouse at {self.settings.clickhouse_url} did not answer: "
                                            f"{_first_line(exc)}") from exc
        except DatabaseError as exc:
            code = getattr(exc, "code", None) or _error_code(str(exc))
            self._local.client = None
            if code in _TRANSIENT_CODES:
                raise unavailable("clickhouse", f"ClickHouse could not answer: {_first_line(exc)}") from exc
            raise Problem(500, "internal-error", "Internal error", f"ClickHouse refused a query: {_first_line(exc)}") from exc
        except (ClickHouseError, OSError) as exc:
            self._local.client = None
            raise unavailable("clickhouse", f"ClickHouse at {self.settings.clickhouse_url} did not answer: "
                                            f"{_first_line(exc)}") from exc

    def ping(self) -> bool:
        try:
            return self._client().ping()
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            self._local.client = None
            return False


def _error_code(text: str) -> str | None:
    marker = "Code: "
    at = text.find(marker)
    if at < 0:
        return None
    digits = "".join(ch for ch in text[at + len(marker):at + len(marker) + 6] if ch.isdigit())
    return digits or None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


class Postgres:
    """Connections of the API's PostgreSQL login, kept open between requests (at most max_size at once).

    Deliberately simple: a request that finds no idle connection opens one, so when PostgreSQL comes back after an
    outage the next request works (a pool reconnecting in the background with back-off took up to a minute)."""

    def __init__(self, settings: Settings, max_size: int = 10) -> None:
        self.conninfo = settings.postgres_conninfo(api=True)
        self.url = settings.postgres_url
        self.max_size = max_size
        self.idle: list[psycopg.AsyncConnection[Any]] = []
        self.slots: asyncio.Semaphore | None = None
        self._apart: ThreadPoolExecutor | None = None
        self._apart_conn: psycopg.Connection[Any] | None = None

    async def open(self) -> None:
        self.slots = asyncio.Semaphore(self.max_size)

    async def close(self) -> None:
        while self.idle:
            await self.idle.pop().close()
        if self._apart is not None:
            await asyncio.get_running_loop().run_in_executor(self._apart, self._close_apart)
            self._apart.shutdown(wait=False)
            self._apart = None

    async def fetch_apart(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """fetch() on a thread of its own with a blocking connection, one statement at a time (the access log's
        group commit): the round trips happen there and the event loop only gets the rows. On the loop, each of a
        statement's waits for PostgreSQL waited for a whole turn of a busy loop: an access-log batch took 15-40 ms
        (p50 / p90) under 50 clients instead of 1, and the requests waiting for it cut throughput by a third."""
        if self._apart is None:
            self._apart = ThreadPoolExecutor(1, thread_name_prefix="postgres-apart")
        return await asyncio.get_running_loop().run_in_executor(self._apart, self._fetch_blocking, sql, params)

    def _fetch_blocking(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        for reused in (True, False):  # an open connection may have died with a restarted server: one more try
            conn = self._apart_conn if reused else None
            try:
                if conn is None or conn.closed:
                    reused = False
                    conn = self._apart_conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=3)
                cur = conn.execute(sql, params)  # type: ignore[arg-type]
                return cur.fetchall() if cur.description else []
            except psycopg.OperationalError as exc:
                self._close_apart()
                if reused:
                    continue
                raise unavailable("postgresql", f"PostgreSQL at {self.url} did not answer: {_first_line(exc)}") from exc
        raise AssertionError("unreachable")

    def _close_apart(self) -> None:
        conn, self._apart_conn = self._apart_conn, None
        if conn is not None:
            conn.close()

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one statement (autocommit); a 503 problem when PostgreSQL does not answer."""
        assert self.slots is not None, "open() first"
        try:
            await asyncio.wait_for(self.slots.acquire(), timeout=5)
        except TimeoutError:
            raise unavailable("postgresql", f"all {self.max_size} connections to PostgreSQL stayed busy for 5 s") from None
        try:
            # An idle connection may have died with a restarted server: one more try on a new one.
            for reused in (True, False):
                conn = self.idle.pop() if reused and self.idle else None
                try:
                    if conn is None:
                        reused = False
                        conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True, connect_timeout=3)
                    cur = await conn.execute(sql, params)  # type: ignore[arg-type]
                    rows = await cur.fetchall() if cur.description else []
                except psycopg.OperationalError as exc:
                    if conn is not None:
                        await conn.close()
                    if reused:
                        continue
                    raise unavailable("postgresql", f"PostgreSQL at {self.url} did not answer: {_first_line(exc)}") from exc
                except BaseException:
                    if conn is not None:
                        await conn.close()
                    raise
                self.idle.append(conn)
                return rows
            raise AssertionError("unreachable")
        finally:
            self.slots.release()
