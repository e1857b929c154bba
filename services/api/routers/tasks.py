"""Task drill-down: the attempts of a range, and one task's facts with its events from the lake."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Path, Request

from services.api import drill, lake, params
from services.api.app import JsonBody, Scope, page, requires, single
from services.api.permissions import Metric
from services.api.routers.common import (FROM_QUERY, LIMIT_QUERY, OFFSET_QUERY, TO_QUERY, id_filters, in_range,
                                         show_people, tenant_where, user_filter)
from services.api.routers.models import Page, Single, TaskDetail, TaskRow

router = APIRouter(prefix="/v1", tags=["tasks"])

_FACT_COLUMNS = """task_id, attempt, status, tenant_id, department_id, project_id, user_id, base_model, model_version,
    checkpoint_id, node_id, host_name, vm_type, queued_at, started_at, finished_at, queue_ms, checkpoint_load_ms,
    init_ms, inference_ms, total_ms, error_type, enrichment_status"""


@router.get("/tasks", response_model=Page[TaskRow], summary="Task attempts that ended in the range")
async def tasks(request: Request, scope: Scope = Depends(requires(Metric.TASKS)), from_: str | None = FROM_QUERY,
          to: str | None = TO_QUERY, status: str | None = None, model: str | None = None, checkpoint: str | None = None,
          project: str | None = None, user: str | None = None, node: str | None = None,
          limit: int | None = LIMIT_QUERY, offset: int | None = OFFSET_QUERY) -> JsonBody:
    """Attempts (task_facts) ended in [from, to), newest first; filter by status (finished | failed | orphaned),
    model, checkpoint, project, user (pseudonym, or user id for roles with identity) or node."""
    rng = params.time_range(from_, to, scope.caller.policy.max_range)
    limit, offset = params.page(limit, offset, scope.state.settings.api_max_rows)
    where = in_range(tenant_where(scope), "finished_at", rng)
    id_filters(where, (("status", status, "status"), ("model", model, "base_model"),
                                ("checkpoint", checkpoint, "checkpoint_id"), ("project", project, "project_id"),
                                ("node", node, "node_id")))
    await user_filter(where, scope, user)
    rows = await scope.ch.query(f"""
        SELECT {_FACT_COLUMNS} FROM {{db}}.task_facts FINAL {where.sql()}
        ORDER BY finished_at DESC, task_id, attempt
        LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}""", {**where.params, "limit": limit + 1, "offset": offset})
    show_people(rows, scope, hosts=("host_name",))
    for row in rows:
        row["links"] = drill.task(row)
    return page(request, rows, limit, offset, {**rng.json(), "tenants": scope.tenants})


@router.get("/tasks/{task_id}", response_model=Single[TaskDetail], summary="One task: its attempts and its events")
async def task(request: Request, task_id: str = Path(..., description="the task id"),
         scope: Scope = Depends(requires(Metric.TASKS))) -> JsonBody:
    """Every attempt's fact, and the task's lifecycle events from the raw lake (XUMI task and load events and the
    Workflow service's) over the hours the attempts span. A task of another tenant is not found, as one that
    does not exist."""
    params.identifier("task_id", task_id)
    where = tenant_where(scope).add("task_id = {task_id:String}", task_id=task_id)
    attempts: list[dict[str, Any]] = await scope.ch.query(
        f"SELECT {_FACT_COLUMNS} FROM {{db}}.task_facts FINAL {where.sql()} ORDER BY attempt", where.params)
    if not attempts:
        raise params.not_found(f"no task {task_id[:64]!r} among the caller's tenants")
    times = [t.replace(tzinfo=timezone.utc) for a in attempts for t in (a["queued_at"], a["started_at"], a["finished_at"])
             if t is not None]
    tenants = sorted({a["tenant_id"] for a in attempts})
    try:
        events: list[dict[str, Any]] | None = await anyio.to_thread.run_sync(
            lake.task_events, scope.state.settings, task_id, tenants, min(times) - timedelta(minutes=5), max(times))
        note = f"events of topics {', '.join(sorted(lake.TASK_TOPICS))} in the lake ({scope.state.settings.effective_lake_uri})"
    except Exception as exc:  # noqa: BLE001 - the facts stand on their own; say why the events are missing
        events, note = None, f"the lake could not be read: {type(exc).__name__}: {str(exc)[:200]}"
    show_people(attempts, scope, hosts=("host_name",))
    if events:
        for event in events:
            event["host_name"] = scope.privacy.host(event.get("host_name") or "")
            payload = event["payload"]
            for key in ("user_id",):
                if key in payload:
                    payload[key] = scope.privacy.user(event["tenant_id"], str(payload[key]))
            if "host_name" in payload:
                payload["host_name"] = scope.privacy.host(str(payload["host_name"]))
    detail = {"task_id": task_id, "attempts": attempts, "events": events, "events_note": note}
    return single(request, detail, len(attempts) + len(events or []), {"tenants": scope.tenants})
