"""Documentation models of the answers (OpenAPI); the endpoints build their JSON directly, and the tests check
every answer against these."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

Row = TypeVar("Row")
Money = str  # exact decimal text


class PageInfo(BaseModel):
    limit: int
    offset: int
    returned: int
    next_offset: int | None = Field(description="offset of the next page; null on the last one")


class Page(BaseModel, Generic[Row]):
    data: list[Row]
    page: PageInfo
    meta: dict[str, object]


class Single(BaseModel, Generic[Row]):
    data: Row
    meta: dict[str, object]


class UsageRow(BaseModel):
    bucket: str = Field(description="start of the bucket (minute, hour, day or month), UTC")
    tenant_id: str
    department_id: str | None = None
    project_id: str | None = None
    user_id: str | None = Field(None, description="user id, or its pseudonym (psn_...) for roles without identity")
    model: str | None = None
    model_version: str | None = None
    checkpoint_id: str | None = None
    requests: int
    errors: int
    tokens_in: int
    tokens_out: int
    tasks: int
    task_failures: int
    loads: int
    load_bytes: int
    transfers: int
    transfer_bytes: int
    gpu_seconds: str = Field(description="allocated GPU-seconds (credit families, the larger of Workflow and Kubernetes), exact decimal")
    cpu_seconds: str = Field(description="allocated core-seconds, exact decimal")
    credits: Money = Field(description="credits charged, exact decimal")
    links: dict[str, str] | None = Field(None, description="drill-down: `next` (the level below: department -> "
                                                      "project -> user) or `tasks` (the user's tasks), relative URLs")


class CostRow(BaseModel):
    bucket: str
    tenant_id: str
    department_id: str | None = None
    project_id: str | None = None
    user_id: str | None = None
    model: str | None = None
    model_version: str | None = None
    checkpoint_id: str | None = None
    tokens_in: int
    tokens_out: int
    token_cost: Money
    gpu_cost: Money
    cpu_cost: Money
    load_cost: Money
    total_cost: Money
    unpriced: list[str] = Field(description="kind:item of usage without a price in force")
    links: dict[str, str] | None = Field(None, description="drill-down: `next` (the level below: department -> "
                                                      "project -> user) or `tasks` (the user's tasks), relative URLs")


class RunCostRow(BaseModel):
    tenant_id: str
    base_model: str
    checkpoint_id: str
    status: str = Field(description="finished | failed | orphaned")
    runs: int
    duration_s: float
    vm_cost: Money
    gpu_cost: Money
    cpu_cost: Money
    total_cost: Money


class ModelRow(BaseModel):
    tenant_id: str
    base_model: str
    model_version: str
    checkpoint_id: str
    runs: int = Field(description="ended task attempts (finished + failed)")
    failures: int
    failure_rate: float | None
    inference_ms_p50: float | None
    inference_ms_p95: float | None
    inference_ms_p99: float | None
    load_ms_avg: float | None
    requests: int = Field(description="LLM requests to the model x checkpoint")
    request_errors: int
    latency_ms_p50: float | None = Field(description="LLM request latency from the mergeable sketch (1% accuracy)")
    latency_ms_p95: float | None
    latency_ms_p99: float | None


class VmRow(BaseModel):
    node_id: str
    host_name: str
    vm_type: str
    runs: int = Field(description="the caller's tenants' attempts on the node in the range")
    busy_seconds: float
    gpu_util_avg: float | None
    cpu_util_avg: float | None
    ram_max: float | None
    vm_cost: Money = Field(description="the caller's attempts' share of the VM's cost")
    dedicated: bool = Field(description="every attempt on the node in the range was the caller's tenants'")
    observed_seconds: float | None = Field(description="dedicated nodes only: time the node was seen alive")
    idle_seconds: float | None
    idle_cost: Money | None


class TopicHealthRow(BaseModel):
    topic: str
    consumed: int
    valid: int
    dlq: int
    duplicates: int
    late: int


class DlqRow(BaseModel):
    topic: str
    reason: str
    records: int
    last_at: str


class TaskRow(BaseModel):
    task_id: str
    attempt: int
    status: str
    tenant_id: str
    department_id: str
    project_id: str
    user_id: str
    base_model: str
    model_version: str
    checkpoint_id: str
    node_id: str
    host_name: str
    vm_type: str
    queued_at: str | None
    started_at: str | None
    finished_at: str
    queue_ms: int | None
    checkpoint_load_ms: int | None
    init_ms: int | None
    inference_ms: int | None
    total_ms: int | None
    error_type: str
    enrichment_status: str
    links: dict[str, str] | None = Field(None, description="`task`: the task's attempts and raw events")


class TaskDetail(BaseModel):
    task_id: str
    attempts: list[dict[str, object]] = Field(description="every attempt's fact (task_facts), people shown per role")
    events: list[dict[str, object]] | None = Field(description="the task's events in the raw lake, in time order; null when the lake could not be read")
    events_note: str


class AccessRow(BaseModel):
    ts: str
    topic: str
    event_name: str
    tenant_id: str
    department_id: str
    project_id: str
    user_id: str
    subject: str
    action: str
    resource: str
    decision: str
    policy_id: str
    host_name: str


class ApiAccessRow(BaseModel):
    seq: int
    record: dict[str, object]


class MinuteRow(BaseModel):
    minute: str
    model: str
    model_version: str
    requests: int
    errors: int
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    tokens_in: int
    tokens_out: int


class ErrorRow(BaseModel):
    source: str = Field(description="request (LLM requests) or task (task attempts)")
    error_type: str
    count: int
    share: float = Field(description="of that source's errors in the range")


class Retention(BaseModel):
    cohort_date: str
    tenant_id: str
    cohort_users: int = Field(description="users whose first activity (LLM request) was on cohort_date")
    retained: int = Field(description="of them, active on the next day")
    rate: float | None


class WhoAmI(BaseModel):
    principal: str
    role: str
    auth: str
    tenants: list[str]
    metrics: list[str]
    max_range_days: int
    identity: bool


class ErasureRequest(BaseModel):
    tenant: str
    user: str = Field(description="the user id, or its pseudonym")
    reason: str = Field("", max_length=500)


class Erasure(BaseModel):
    tenant_id: str
    pseudonym: str
    requested_by: str
    requested_at: str
    already_erased: bool


class QuotaLimitRequest(BaseModel):
    tenant: str
    scope: str = Field(description="tenant, department, project or user")
    id: str = Field("", description="the department, project or user id; empty for the tenant")
    metric: str = Field(description="credits, gpu_seconds, cpu_seconds, tokens or cost")
    period: str = Field(description="day or month (UTC calendar)")
    soft: str | None = Field(None, description="warn above this (exact decimal text, up to 6 decimals)")
    hard: str | None = Field(None, description="deny above this; soft and hard both null removes the limit")
    reason: str = Field("", max_length=500, description="why, kept in the change history")


class QuotaLimit(BaseModel):
    tenant_id: str
    scope: str
    scope_id: str
    metric: str
    period: str
    soft_limit: Money | None
    hard_limit: Money | None
    updated_at: str
    updated_by: str


class QuotaLimitChange(BaseModel):
    seq: int
    changed_at: str
    changed_by: str
    reason: str
    tenant_id: str
    scope: str
    scope_id: str
    metric: str
    period: str
    old_soft: Money | None
    old_hard: Money | None
    new_soft: Money | None
    new_hard: Money | None
    deleted: bool
