"""Async Prometheus client for enrichment: per-request timeout, retries with exponential backoff, a circuit
breaker, and an LRU cache of query_range results per (resource, node, time bucket) shared by concurrent lookups
and, for a bucket still filling, by every later lookup that needs no evaluation time past what it had final.

It never raises for Prometheus being slow, down or wrong: the result's status says ok / partial / unavailable.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import aiohttp

from pipeline.enrichment.queries import EnrichmentConfig, buckets, range_params, render, window_grid
from pipeline.enrichment.stats import BadResponse, Series, Stats, columns, parse_matrix, window_stats

OK, PARTIAL, UNAVAILABLE, SKIPPED = "ok", "partial", "unavailable", "skipped"
_RETRY_STATUS = {429, 500, 502, 503, 504}


class _Failed(Exception):
    """A request failed for good (after retries, or not retryable)."""


@dataclass(frozen=True)
class _Fetch:
    """One query_range of a bucket, done or in flight. final_until: the last evaluation time (s) whose value
    was final when the request left: Prometheus had every sample up to it (cfg.final_after_s)."""

    task: asyncio.Task[list[Series]]
    final_until: float


@dataclass(frozen=True)
class Enrichment:
    status: str
    values: dict[str, Any]  # the enrichment columns plus cpu_seconds and gpu_seconds


class PrometheusEnricher:
    """One per process (or per Flink subtask); use inside the event loop that runs the lookups."""

    def __init__(self, cfg: EnrichmentConfig, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._cache: OrderedDict[tuple[str, str, int], _Fetch] = OrderedDict()
        self._failures = 0
        self._open_until = 0.0
        self.requests = 0  # HTTP requests sent (for tests and metrics)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def enrich(self, fact: Mapping[str, Any]) -> dict[str, Any]:
        """The fact with its resource columns, cpu/gpu seconds, enrichment_status and a version one higher
        than the pending row's (lifecycle versions are even, so `| 1` is the +1 and stays idempotent)."""
        node = fact.get(self.cfg.node_field) or ""
        start, end = fact.get("started_at"), fact.get("finished_at")
        if not node or start is None or end is None:
            result = Enrichment(SKIPPED, {})
        else:
            result = await self.lookup(node, start, end)
        return {**fact, **result.values, "enrichment_status": result.status, "version": fact["version"] | 1}

    async def lookup(self, node: str, start_ms: int, end_ms: int) -> Enrichment:
        """Resource use of `node` over [start_ms, end_ms]."""
        cfg = self.cfg
        spans = buckets(start_ms, end_ms, cfg)
        if len(spans) > cfg.max_buckets:
            return Enrichment(SKIPPED, {})
        names = list(cfg.templates)
        first, last = window_grid(start_ms, end_ms, cfg.step_s)
        answers = await asyncio.gather(*(self._resource(name, node, spans, last) for name in names))
        stats: dict[str, Stats | None] = {}
        for name, series in zip(names, answers):
            stats[name] = window_stats(series, first, last) if series is not None else None
        got = sum(s is not None for s in stats.values())
        status = OK if got == len(names) else PARTIAL if got else UNAVAILABLE
        if status == UNAVAILABLE:
            return Enrichment(status, {})
        return Enrichment(status, columns(stats, max(0, end_ms - start_ms) / 1000))

    async def _resource(self, name: str, node: str, spans: list[int], last: int) -> list[Series] | None:
        """All series of one resource over the buckets, up to evaluation time `last`, or None if any bucket could
        not be fetched."""
        parts = await asyncio.gather(*(self._bucket(name, node, b, last) for b in spans), return_exceptions=True)
        if any(isinstance(p, BaseException) for p in parts):
            return None
        merged: dict[int, Series] = {}
        for part in parts:
            for i, s in enumerate(part):  # type: ignore[arg-type]
                merged.setdefault(i, []).extend(s)
        return list(merged.values())

    def _bucket(self, name: str, node: str, bucket_start: int, last: int) -> asyncio.Task[list[Series]]:
        """The fetch of one bucket that holds final values up to `last`: a cached one, one in flight (as fresh as
        a new request), or a new one. A task that ended moments ago needs points a fetch made before it ended
        may lack, so a bucket still filling is fetched again for it, and at most once per evaluation step and
        node once lookups trail the clock by final_after_s: the tasks of one node share each step's fetch."""
        cfg = self.cfg
        key = (name, node, bucket_start)
        bucket_last = bucket_start + cfg.bucket_s - cfg.step_s
        hit = self._cache.get(key)
        if hit is not None and (not hit.task.done() or (not hit.task.exception()
                                                        and hit.final_until >= min(last, bucket_last))):
            self._cache.move_to_end(key)
            return hit.task
        task = asyncio.ensure_future(self._fetch(name, node, bucket_start))
        self._cache[key] = _Fetch(task, min(bucket_last, self.clock() - cfg.final_after_s))
        self._cache.move_to_end(key)
        while len(self._cache) > cfg.cache_size:
            self._cache.popitem(last=False)
        return task

    async def _fetch(self, name: str, node: str, bucket_start: int) -> list[Series]:
        cfg = self.cfg
        query = render(cfg.templates[name], node, cfg.rate_window)
        payload = await self._get("/api/v1/query_range", range_params(query, bucket_start, cfg))
        try:
            series = parse_matrix(payload)
        except BadResponse as exc:
            raise _Failed(str(exc)) from None
        # Series order must be stable across buckets to merge per-GPU series: sort by their label set.
        labels = [tuple(sorted(r.get("metric", {}).items())) for r in payload["data"]["result"]]
        return [s for _, s in sorted(zip(labels, series), key=lambda p: p[0])]

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        """GET with timeout, retries with exponential backoff, and the circuit breaker."""
        cfg = self.cfg
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=cfg.timeout_s))
        for attempt in range(cfg.retries + 1):
            if attempt:
                await asyncio.sleep(cfg.backoff_s * 2 ** (attempt - 1))
            if time.monotonic() < self._open_until:
                raise _Failed("circuit open: Prometheus failed repeatedly")
            self.requests += 1
            try:
                async with self._session.get(cfg.prometheus_url.rstrip("/") + path, params=params) as resp:
                    if resp.status in _RETRY_STATUS:
                        self._failed()
                        continue
                    body = await resp.json(content_type=None)
                    self._failures = 0
                    return body  # 4xx with a JSON error body is parsed (and refused) by parse_matrix
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                self._failed()
        raise _Failed(f"{path} failed {cfg.retries + 1} times")

    def _failed(self) -> None:
        self._failures += 1
        if self._failures >= self.cfg.breaker_failures:
            self._open_until = time.monotonic() + self.cfg.breaker_cooldown_s
