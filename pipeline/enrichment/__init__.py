"""Prometheus enrichment of task facts: resource use of the attempt's node over [started_at, finished_at].

queries.py builds query_range requests from configurable PromQL templates, stats.py turns answers into
avg / max / CPU- and GPU-seconds, client.py fetches them asynchronously with timeouts, retries and a cache.
"""

from pipeline.enrichment.client import OK, PARTIAL, SKIPPED, UNAVAILABLE, Enrichment, PrometheusEnricher
from pipeline.enrichment.queries import DEFAULT_TEMPLATES, EnrichmentConfig, EnrichmentConfigError, load_config

__all__ = ["DEFAULT_TEMPLATES", "Enrichment", "EnrichmentConfig", "EnrichmentConfigError", "OK", "PARTIAL",
           "PrometheusEnricher", "SKIPPED", "UNAVAILABLE", "load_config"]
