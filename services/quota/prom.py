"""The quota service's Prometheus series (telemetry/promtext.py's registry types)."""

from __future__ import annotations

import threading

from services.quota.service import Answer, Quota
from telemetry.promtext import Histogram, Metric

DECISION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class QuotaMetrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.checks = Metric("telemetry_quota_checks_total", "counter",
                             "Quota checks answered, by metric, decision and source (memory, clickhouse, fallback)",
                             ("metric", "decision", "source"))
        self.latency = Histogram("telemetry_quota_check_seconds", "Time to decide a check, authentication included",
                                 ("source",), DECISION_BUCKETS)
        self.refusals = Metric("telemetry_quota_checks_refused_total", "counter",
                              "Checks answered with a problem instead of a decision, by its code (bad-parameter, ...)",
                              ("code",))
        self.exceeded = Metric("telemetry_quota_exceeded_total", "counter",
                               "Soft or hard quota limits crossed by usage (each one also an event on quota.limit.exceeded)",
                               ("metric", "scope", "period", "level"))
        self.events_failed = Metric("telemetry_quota_exceeded_events_failed_total", "counter",
                                    "Exceeded events Kafka did not take")
        self.records = Metric("telemetry_quota_usage_records_total", "counter",
                              "telemetry.usage.v1 records read: applied, rejected (unreadable) or dropped (too old)",
                              ("result",))
        self.limit_errors = Metric("telemetry_quota_limit_refresh_errors_total", "counter",
                           "Failed reloads of the limits and the directory from PostgreSQL")
        self.rebuilt = Metric("telemetry_quota_rebuilt", "gauge", "1 once the usage topic was read to its end after start")
        self.age = Metric("telemetry_quota_data_age_seconds", "gauge",
                          "Seconds since the consumer last held everything the usage topic had (-1: never)")
        self.keys = Metric("telemetry_quota_keys", "gauge", "(tenant, department, user, day) keys held, by source",
                           ("source",))

    def decided(self, answer: Answer, seconds: float) -> None:
        with self.lock:
            self.checks.inc(answer.metric, "allow" if answer.allow else "deny", answer.source)
            self.latency.observe(answer.source, value=seconds)

    def refused(self, code: str) -> None:
        with self.lock:
            self.refusals.inc(code)

    def record(self, result: str) -> None:
        with self.lock:
            self.records.inc(result)

    def event(self, event: dict[str, object]) -> None:
        with self.lock:
            self.exceeded.inc(str(event["metric"]), str(event["scope"]), str(event["period"]), str(event["level"]))

    def undelivered(self, _: dict[str, object]) -> None:
        with self.lock:
            self.events_failed.inc()

    def render(self, quota: Quota) -> str:
        with self.lock:
            self.rebuilt.set(value=1 if quota.feed.rebuilt else 0)
            age = quota.data_age()
            self.age.set(value=-1 if age is None else round(age, 3))
            stream, base = quota.ledger.size()
            self.keys.set("stream", value=stream)
            self.keys.set("clickhouse", value=base)
            self.events_failed.values.setdefault((), 0)
            families = (self.checks, self.latency, self.refusals, self.exceeded, self.events_failed, self.records,
                        self.limit_errors, self.rebuilt, self.age, self.keys)
            return "\n".join(line for family in families for line in family.render()) + "\n"
