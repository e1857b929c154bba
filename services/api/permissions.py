"""The permission matrix, in one place: per role, the metric types it may read, the longest time range one request
may span, and whether it sees people's identities (user ids, personal host names) or their pseudonyms.

Every endpoint names its metric type; `python -m dev.readme_tables` renders this matrix into the README.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import Enum


class Metric(str, Enum):
    """The kinds of data the API serves; each endpoint reads exactly one."""

    USAGE = "usage"  # requests, tokens, tasks, credits, transfers per department / project / user / model
    COSTS = "costs"  # chargeback and run costs at the prices in force
    MODELS = "models"  # model x checkpoint performance: runs, failure rate, latency percentiles
    VMS = "vms"  # VM activity, idle time and cost, resource use
    PIPELINE = "pipeline"  # ingest counters, DLQ by reason, freshness
    TASKS = "tasks"  # task attempt drill-down: facts and their events
    ACCESS = "access"  # who accessed what: the ingest audit log and the API's own access log
    ERRORS = "errors"  # top error types of requests and runs
    RETENTION = "retention"  # day-1 retention of user cohorts
    PRIVACY = "privacy"  # erasure requests
    QUOTAS = "quotas"  # the quota service's decisions and a scope's quota state
    QUOTA_LIMITS = "quota_limits"  # setting and removing quota limits (write), with their change history


METRIC_DESCRIPTIONS: dict[Metric, str] = {
    Metric.USAGE: "requests, tokens, task runs, credits, transfers per department / project / user / model / checkpoint",
    Metric.COSTS: "chargeback (token, GPU, CPU, load cost) and the cost of runs, at the prices in force",
    Metric.MODELS: "model x checkpoint performance: runs, failure rate, inference and request latency percentiles",
    Metric.VMS: "VMs: runs, busy time, resource use; idle time and cost where the VM served only the caller's tenants",
    Metric.PIPELINE: "pipeline health: ingest counters per topic, DLQ records by reason, freshness",
    Metric.TASKS: "task drill-down: an attempt's fact and the events the lake holds for it",
    Metric.ACCESS: "who accessed what: the ingest audit log (pbac_*, asset_*) and the API's access log",
    Metric.ERRORS: "top error types of LLM requests and task runs",
    Metric.RETENTION: "day-1 retention of the users first active on a day",
    Metric.PRIVACY: "erasure requests (write)",
    Metric.QUOTAS: "quota service: allow / deny checks and the quota state of a user, department, project or tenant",
    Metric.QUOTA_LIMITS: "quota limits (soft and hard levels) per tenant / department / project / user: set, remove, history",
}


@dataclass(frozen=True)
class RolePolicy:
    role: str
    description: str
    metrics: frozenset[Metric]
    max_range: timedelta
    identity: bool  # sees user ids and personal host names; everyone else gets pseudonyms


def _policy(role: str, description: str, metrics: set[Metric], max_days: int, identity: bool) -> RolePolicy:
    return RolePolicy(role, description, frozenset(metrics), timedelta(days=max_days), identity)


ROLES: dict[str, RolePolicy] = {p.role: p for p in (
    _policy("pipeline_td", "Pipeline TD (seed 003): model x checkpoint performance, failures, latency",
            {Metric.USAGE, Metric.MODELS, Metric.PIPELINE, Metric.TASKS, Metric.ERRORS, Metric.RETENTION}, 92, False),
    _policy("admin", "Admin (seed 003): VMs, resources, pipeline health, who accessed what, erasures",
            {Metric.USAGE, Metric.MODELS, Metric.VMS, Metric.PIPELINE, Metric.TASKS, Metric.ACCESS, Metric.ERRORS,
             Metric.RETENTION, Metric.PRIVACY, Metric.QUOTAS, Metric.QUOTA_LIMITS}, 92, True),
    _policy("financial_director", "Financial Director (seed 003): costs per department / project / user, chargeback",
            {Metric.USAGE, Metric.COSTS, Metric.VMS, Metric.QUOTAS}, 400, False),
    _policy("auditor", "read-only auditor: who accessed what, and the usage and costs behind it",
            {Metric.USAGE, Metric.COSTS, Metric.ACCESS}, 400, True),
    _policy("quota_service", "the quota service (a machine): a user's usage, to allow or deny",
            {Metric.USAGE}, 35, True),
    _policy("quota_client", "a service asking the quota service for decisions (a machine): checks and quota state",
            {Metric.QUOTAS}, 35, True),
)}


def policy(role: str) -> RolePolicy | None:
    return ROLES.get(role)


def markdown_table() -> str:
    """The README's permission matrix: a row per role, a column per metric type."""
    metrics = list(Metric)
    lines = ["| role | " + " | ".join(m.value for m in metrics) + " | longest range | identities |",
             "| --- | " + " | ".join("---" for _ in metrics) + " | --- | --- |"]
    for p in ROLES.values():
        marks = " | ".join("yes" if m in p.metrics else "" for m in metrics)
        identity = "user ids" if p.identity else "pseudonyms"
        lines.append(f"| `{p.role}` | {marks} | {p.max_range.days} days | {identity} |")
    lines.append("")
    lines.append("| metric type | what |")
    lines.append("| --- | --- |")
    lines.extend(f"| `{m.value}` | {METRIC_DESCRIPTIONS[m]} |" for m in metrics)
    return "\n".join(lines)
