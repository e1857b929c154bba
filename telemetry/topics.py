"""The Kafka topic catalogue: every topic the platform uses, its partition count and what it carries.

This is the single source of truth for topic names; the stack, the simulator, the SDK and the job read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Role(str, Enum):
    """What a topic is for, which decides who produces to it and who reads it."""

    SOURCE = "source"  # raw events from the platform's producers
    DLQ = "dlq"  # records the job rejected, with a reason
    OUTPUT = "output"  # facts the job publishes for other services
    CLICKHOUSE = "clickhouse"  # rows the job commits (exactly-once) for the loader to insert into one table


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    role: Role
    family: str | None  # the event family in schemas/ that a source topic carries
    description: str
    table: str | None = None  # the ClickHouse table the loader fills from it (JSONEachRow values)
    config: dict[str, str] = field(default_factory=dict, hash=False)  # topic-level Kafka settings it is created with


# Partition counts are sized for a 2-core dev box yet leave room for parallelism 2-6 in production;
# high-volume topics (LLM requests, task events, credits) get more.
CATALOGUE: tuple[Topic, ...] = (
    Topic("xumi_load", 6, Role.SOURCE, "xumi_load", "XUMI weights / checkpoint load start and finish"),
    Topic("xumi_task", 6, Role.SOURCE, "xumi_task", "XUMI task lifecycle: queued, started, initialized, finished, failed"),
    Topic("wkf_task", 6, Role.SOURCE, "wkf_task", "Workflow service TaskStarted / TaskCompleted / TaskFailed"),
    Topic("pbac_access", 3, Role.SOURCE, "pbac_access", "PBAC access decisions: who accessed what, allowed or denied"),
    Topic("pbac_politics", 1, Role.SOURCE, "pbac_politics", "PBAC policy changes"),
    Topic("pbac_service", 1, Role.SOURCE, "pbac_service", "PBAC service messages: update, load, policy reloads"),
    Topic("asset_access", 3, Role.SOURCE, "asset_access", "Asset storage access audit"),
    Topic("asset_transfer", 3, Role.SOURCE, "asset_transfer", "Asset storage uploads and downloads"),
    Topic("wkf_cpu", 3, Role.SOURCE, "wkf_cpu", "Workflow CPU credits"),
    Topic("wkf_gpu", 3, Role.SOURCE, "wkf_gpu", "Workflow GPU credits"),
    Topic("kuber_cpu", 3, Role.SOURCE, "kuber_cpu", "Kubernetes CPU credits"),
    Topic("kuber_gpu", 3, Role.SOURCE, "kuber_gpu", "Kubernetes GPU credits"),
    Topic("telemetry.events.v1", 12, Role.SOURCE, "llm_request", "LLM request events"),
    Topic("telemetry.metrics.v1", 3, Role.SOURCE, "sdk_metric",
          "Producer SDK metrics and milestones (seed 004): metric values, status, CPU / RAM / GPU context"),
    Topic("telemetry.dlq.v1", 3, Role.DLQ, None, "Rejected records: original bytes, source position, reason",
          table="dlq_events"),
    # compacted: each update carries a user's day so far, so the newest record of a key is all a reader needs
    Topic("telemetry.usage.v1", 6, Role.OUTPUT, None, "Per-user running usage for the quota service",
          config={"cleanup.policy": "compact"}),
    # seed 001's naming rules: system (quota), component (limit), action (exceeded); events add the note (.soft / .hard)
    Topic("quota.limit.exceeded", 3, Role.OUTPUT, None,
          "The quota service's events: a user's, department's or tenant's usage crossed a soft or hard limit"),
)

CATALOGUE += (
    Topic("telemetry.ch.usage.v1", 6, Role.CLICKHOUSE, None, "Usage window deltas", table="usage_10s"),
    Topic("telemetry.ch.audit.v1", 3, Role.CLICKHOUSE, None, "Audit log rows", table="audit_log"),
    Topic("telemetry.ch.tasks.v1", 3, Role.CLICKHOUSE, None, "Task facts, enriched", table="task_facts"),
    Topic("telemetry.ch.late.v1", 1, Role.CLICKHOUSE, None, "Events past the allowed lateness", table="late_events"),
    Topic("telemetry.ch.ingest.v1", 1, Role.CLICKHOUSE, None, "Ingest counters per window and topic",
          table="ingest_stats_10s"),
)

BY_NAME: dict[str, Topic] = {t.name: t for t in CATALOGUE}
SOURCE_TOPICS: tuple[str, ...] = tuple(t.name for t in CATALOGUE if t.role is Role.SOURCE)
DLQ_TOPIC = "telemetry.dlq.v1"
USAGE_TOPIC = "telemetry.usage.v1"
QUOTA_EXCEEDED_TOPIC = "quota.limit.exceeded"
LLM_TOPIC = "telemetry.events.v1"
# What the ClickHouse loader consumes (read_committed) and the table each one fills.
LOADER_TOPICS: dict[str, str] = {t.name: t.table for t in CATALOGUE if t.table is not None}
METRICS_TOPIC = "telemetry.metrics.v1"
# Kafka header of watermark heartbeats in the source topics (services/heartbeat/__main__.py): records carrying it are no
# events, and every consumer of a source topic skips them (the job does, before validation).
HEARTBEAT_HEADER = "telemetry-heartbeat"


def topic(name: str) -> Topic:
    """Look a topic up by name, with an error that lists the known ones."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known topics: {', '.join(BY_NAME)}") from None


def clickhouse_topic(table: str) -> str:
    """The topic whose records the loader inserts into this ClickHouse table."""
    for name, target in LOADER_TOPICS.items():
        if target == table:
            return name
    raise KeyError(f"no ClickHouse topic fills table {table!r}; the catalogue's: {', '.join(LOADER_TOPICS.values())}")
