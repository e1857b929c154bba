"""Prometheus enrichment as a PyFlink AsyncFunction over FACT_ROW_TYPE rows, and the helper that adds it to a
job. PyFlink refuses AsyncFunction in thread mode, so `add_enrichment` switches the environment's
python.execution-mode to process while the async operator is added and restores it after (see its docstring).
"""

from __future__ import annotations

import time

from pyflink.common import Row, Time
from pyflink.datastream import AsyncDataStream, AsyncFunction, DataStream, RuntimeContext

from pipeline.enrichment import OK, PARTIAL, SKIPPED, UNAVAILABLE, EnrichmentConfig, PrometheusEnricher, load_config
from udfs.lifecycle import FACT_ROW_TYPE, to_fact, to_row
from udfs.python_env import execution_mode


class PrometheusEnrichment(AsyncFunction):
    """Enrich one task fact; a fact whose lookups outlast Flink's timeout is still emitted, as unavailable."""

    def __init__(self, cfg: EnrichmentConfig | None = None) -> None:
        self.cfg = cfg  # None: from the worker's environment (PROMETHEUS_URL, ENRICH_*)

    def open(self, runtime_context: RuntimeContext) -> None:
        self.enricher = PrometheusEnricher(self.cfg or load_config())
        metrics = runtime_context.get_metrics_group().add_group("enrichment")
        self.by_status = {status: metrics.counter(f"status_{status}") for status in (OK, PARTIAL, UNAVAILABLE, SKIPPED)}
        self.latency_ms = metrics.distribution("latency_ms")

    async def async_invoke(self, value: Row) -> list[Row]:
        began = time.monotonic()
        try:
            fact = await self.enricher.enrich(to_fact(value))
        except Exception:  # noqa: BLE001 - a lookup that fails in any way leaves the fact unenriched, never lost
            return self.timeout(value)
        self.latency_ms.update(int((time.monotonic() - began) * 1000))
        self.by_status[fact["enrichment_status"]].inc()
        return [to_row(fact)]

    def timeout(self, value: Row) -> list[Row]:
        """The fact as it came, marked unavailable (its version one above the pending row's)."""
        self.by_status[UNAVAILABLE].inc()
        fact = to_fact(value)
        return [to_row({**fact, "enrichment_status": UNAVAILABLE, "version": fact["version"] | 1})]


def add_enrichment(facts: DataStream, function: PrometheusEnrichment, timeout_s: float = 30.0,
                   capacity: int = 100) -> DataStream:
    """facts -> enriched facts (unordered). The async operator is created in process mode whatever the job's
    mode: PyFlink reads python.execution-mode from the environment's configuration as each operator is added,
    so the rest of the job keeps its own (thread) mode. timeout_s should exceed the enricher's worst case,
    (retries + 1) x timeout_s + backoff."""
    with execution_mode(facts.get_execution_environment(), "process"):
        return AsyncDataStream.unordered_wait(facts, function, Time.milliseconds(int(timeout_s * 1000)),
                                              capacity, output_type=FACT_ROW_TYPE)
