"""Prometheus enrichment (pipeline.enrichment) against a real Prometheus loaded with known node history; a
closed port for Prometheus down; a small aiohttp stand-in only for slowness and 503s, which the real server
cannot be made to produce on demand."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from pipeline.enrichment import (DEFAULT_TEMPLATES, OK, PARTIAL, SKIPPED, UNAVAILABLE, EnrichmentConfig,
                                  EnrichmentConfigError, PrometheusEnricher, load_config)
from pipeline.enrichment.queries import buckets, render
from pipeline.enrichment.stats import columns, window_stats
from pipeline.lifecycle import fact_version
from tests.support.fixtures_prometheus import (BASE_S, NODES, MIB, Node, PrometheusHistory, assert_close, expected,  # noqa: F401
                                      free_port, prometheus_history)

WINDOWS = {  # name -> (start ms, end ms)
    "20 min": ((BASE_S + 100) * 1000 + 500, (BASE_S + 1300) * 1000 + 200),
    "across the RAM step": ((BASE_S + 3000) * 1000, (BASE_S + 4200) * 1000 + 999),
    "shorter than a step": ((BASE_S + 5000) * 1000 + 10, (BASE_S + 5000) * 1000 + 250),
}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.parametrize("window", list(WINDOWS))
@pytest.mark.parametrize("node", NODES, ids=[n.name for n in NODES])
def test_values_equal_the_known_series(prometheus_history: PrometheusHistory, node: Node, window: str) -> None:
    start, end = WINDOWS[window]

    async def go() -> Any:
        enricher = PrometheusEnricher(EnrichmentConfig(prometheus_url=prometheus_history.url))
        try:
            return await enricher.lookup(node.name, start, end)
        finally:
            await enricher.close()

    result = run(go())
    assert result.status == (OK if node.gpu_util else PARTIAL)  # no GPU series on a CPU-only node
    assert_close(result.values, expected(node, start, end))


def test_enrich_a_fact_and_unknown_node(prometheus_history: PrometheusHistory) -> None:
    node = NODES[0]
    start, end = WINDOWS["20 min"]
    fact = {"task_id": "t", "attempt": 1, "host_name": node.name, "started_at": start, "finished_at": end,
            "enrichment_status": "pending", "gpu_util_avg": None, "version": fact_version(1)}

    async def go() -> tuple[Any, ...]:
        enricher = PrometheusEnricher(EnrichmentConfig(prometheus_url=prometheus_history.url))
        try:
            return (await enricher.enrich(fact), await enricher.enrich({**fact, "host_name": "no-such-node"}),
                    await enricher.enrich({**fact, "started_at": None}))
        finally:
            await enricher.close()

    ok, unknown, no_start = run(go())
    assert ok["enrichment_status"] == OK and ok["version"] == fact["version"] + 1
    assert {k: ok[k] for k in ("task_id", "attempt", "started_at")} == {"task_id": "t", "attempt": 1,
                                                                         "started_at": start}
    assert_close(ok, expected(node, start, end))
    assert unknown["enrichment_status"] == UNAVAILABLE and unknown["gpu_util_avg"] is None
    assert no_start["enrichment_status"] == SKIPPED


def test_cache_per_node_and_bucket(prometheus_history: PrometheusHistory) -> None:
    cfg = EnrichmentConfig(prometheus_url=prometheus_history.url)
    per_bucket = len(cfg.templates)

    async def go() -> list[int]:
        enricher = PrometheusEnricher(cfg)
        counts = []
        try:
            # 20 concurrent short tasks inside one 10-minute bucket share one request per template
            await asyncio.gather(*(enricher.lookup(NODES[1].name, (BASE_S + 10 * i) * 1000,
                                                   (BASE_S + 10 * i + 5) * 1000) for i in range(20)))
            counts.append(enricher.requests)
            await enricher.lookup(NODES[1].name, (BASE_S + 300) * 1000, (BASE_S + 599) * 1000)
            counts.append(enricher.requests)  # same bucket: no new request
            await enricher.lookup(NODES[1].name, (BASE_S + 300) * 1000, (BASE_S + 700) * 1000)
            counts.append(enricher.requests)  # one more bucket
            await enricher.lookup(NODES[0].name, (BASE_S + 300) * 1000, (BASE_S + 599) * 1000)
            counts.append(enricher.requests)  # another node
        finally:
            await enricher.close()
        return counts

    assert run(go()) == [per_bucket, per_bucket, 2 * per_bucket, 3 * per_bucket]


def test_a_filling_bucket_is_shared_by_lookups_it_has_final_values_for(prometheus_history: PrometheusHistory) -> None:
    # The clock stands inside the first bucket: its fetches hold final values up to clock - final_after_s only.
    now = [BASE_S + 200.0]
    cfg = EnrichmentConfig(prometheus_url=prometheus_history.url, final_after_s=10)
    per_bucket = len(cfg.templates)
    node = NODES[0].name

    async def go() -> list[int]:
        enricher = PrometheusEnricher(cfg, clock=lambda: now[0])
        counts = []

        async def ending_at(end_s: int) -> None:
            result = await enricher.lookup(node, (end_s - 60) * 1000, end_s * 1000)
            assert_close(result.values, expected(NODES[0], (end_s - 60) * 1000, end_s * 1000))
            counts.append(enricher.requests)

        try:
            await ending_at(BASE_S + 150)  # fetched at 200: final up to 190
            await ending_at(BASE_S + 189)  # last point 180: shared
            await ending_at(BASE_S + 199)  # last point 195 may lack samples in that fetch: fetched again
            await ending_at(BASE_S + 180)  # the newer fetch serves the older windows too
            now[0] = BASE_S + 700  # the first bucket is complete: one more fetch, then shared for good
            await ending_at(BASE_S + 590)
            await ending_at(BASE_S + 450)
            now[0] = BASE_S + 90_000
            await ending_at(BASE_S + 300)
        finally:
            await enricher.close()
        return counts

    assert run(go()) == [per_bucket, per_bucket, 2 * per_bucket, 2 * per_bucket, 3 * per_bucket, 3 * per_bucket,
                         3 * per_bucket]


def test_final_after_s_from_the_environment() -> None:
    assert load_config({"ENRICH_FINAL_AFTER_S": "45"}).final_after_s == 45.0
    with pytest.raises(EnrichmentConfigError, match="final_after_s=-1"):
        load_config({"ENRICH_FINAL_AFTER_S": "-1"})


def test_prometheus_down_is_unavailable_and_opens_the_breaker() -> None:
    cfg = EnrichmentConfig(prometheus_url=f"http://127.0.0.1:{free_port()}", retries=2, backoff_s=0.01,
                           breaker_failures=30, breaker_cooldown_s=60)
    start, end = WINDOWS["20 min"]

    async def go() -> tuple[Any, int, Any, int]:
        enricher = PrometheusEnricher(cfg)
        try:
            first = await enricher.lookup("aks-gpu-a", start, end)
            sent = enricher.requests
            second = await enricher.lookup("aks-gpu-a", start, end)
            return first, sent, second, enricher.requests - sent
        finally:
            await enricher.close()

    first, sent, second, more = run(go())
    assert first.status == UNAVAILABLE and first.values == {}
    # every bucket of every query tried and retried until the breaker opened at 30 failures ...
    assert cfg.breaker_failures <= sent < len(cfg.templates) * len(buckets(start, end, cfg)) * (cfg.retries + 1)
    assert second.status == UNAVAILABLE and more == 0  # ... after which lookups are answered at once


@pytest.fixture
def standin() -> Any:
    """Start an aiohttp app on 127.0.0.1 inside the test's loop: async with standin(handler) as url."""

    class _Server:
        def __init__(self, handler: Any) -> None:
            self.handler = handler

        async def __aenter__(self) -> str:
            app = web.Application()
            app.router.add_get("/api/v1/query_range", self.handler)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            port = free_port()
            await web.TCPSite(self.runner, "127.0.0.1", port).start()
            return f"http://127.0.0.1:{port}"

        async def __aexit__(self, *exc: object) -> None:
            await self.runner.cleanup()

    return _Server


def test_slow_prometheus_times_out_as_unavailable(standin: Any) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)  # well past the 0.2 s timeout
        return web.json_response({})

    async def go() -> tuple[Any, int]:
        async with standin(slow) as url:
            enricher = PrometheusEnricher(EnrichmentConfig(prometheus_url=url, timeout_s=0.2, retries=1,
                                                           backoff_s=0.01, breaker_failures=1000))
            try:
                return await enricher.lookup("n", *WINDOWS["shorter than a step"]), enricher.requests
            finally:
                await enricher.close()

    result, requests = run(go())
    assert result.status == UNAVAILABLE and requests == 2 * len(DEFAULT_TEMPLATES)


def test_503_is_retried_then_succeeds(standin: Any) -> None:
    seen: dict[str, int] = {}

    async def flaky(request: web.Request) -> web.Response:
        q = request.query["query"] + request.query["start"]
        seen[q] = seen.get(q, 0) + 1
        if seen[q] == 1:
            return web.Response(status=503)
        start = int(request.query["start"])
        values = [[t, "50"] for t in range(start, int(request.query["end"]) + 1, 15)]
        return web.json_response({"status": "success", "data": {"resultType": "matrix",
                                                                "result": [{"metric": {}, "values": values}]}})

    async def go() -> Any:
        async with standin(flaky) as url:
            enricher = PrometheusEnricher(EnrichmentConfig(prometheus_url=url, backoff_s=0.01,
                                                           breaker_failures=1000))
            try:
                return await enricher.lookup("n", *WINDOWS["20 min"])
            finally:
                await enricher.close()

    result = run(go())
    assert result.status == OK and result.values["ram_avg"] == 50.0
    assert set(seen.values()) == {2}


def test_templates_are_configurable(tmp_path: Any) -> None:
    path = tmp_path / "templates.yaml"
    path.write_text('ram: node_memory_Active_bytes{instance="{node}"}\n')
    cfg = load_config({"ENRICH_TEMPLATES": str(path), "PROMETHEUS_URL": "http://127.0.0.1:1", "ENRICH_RETRIES": "0"})
    assert cfg.templates["ram"] == 'node_memory_Active_bytes{instance="{node}"}'
    assert cfg.templates["gpu_util"] == DEFAULT_TEMPLATES["gpu_util"] and cfg.retries == 0
    assert render(cfg.templates["ram"], 'a"b\\c', "1m") == 'node_memory_Active_bytes{instance="a\\"b\\\\c"}'
    with pytest.raises(EnrichmentConfigError, match="unknown resources"):
        EnrichmentConfig(templates={"gpu_temp": "x{node}"})
    with pytest.raises(EnrichmentConfigError, match="no {node}"):
        EnrichmentConfig(templates={"ram": "node_memory_Active_bytes"})
    with pytest.raises(EnrichmentConfigError, match="ENRICH_TIMEOUT_S|bad enrichment"):
        load_config({"ENRICH_TIMEOUT_S": "soon"})


def test_gpu_seconds_formula() -> None:
    # two GPUs over 60 s: one at 100 % throughout, one at 0 % then 50 %: 60 + 15 = 75 GPU-seconds
    gpus = [[(0.0, 100.0), (15.0, 100.0), (30.0, 100.0), (45.0, 100.0)],
            [(0.0, 0.0), (15.0, 0.0), (30.0, 50.0), (45.0, 50.0)]]
    stats = window_stats(gpus, 0, 45)
    assert stats is not None and (stats.avg, stats.max) == (62.5, 100.0)
    assert columns({"gpu_util": stats}, 60.0)["gpu_seconds"] == 75.0
    assert window_stats(gpus, 100, 200) is None
