"""Operational endpoints without tenant data (no token, not in the access log): health and Prometheus metrics."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

router = APIRouter(tags=["operations"])


@router.get("/health", summary="Liveness and readiness: 200 when ClickHouse and PostgreSQL answer, else 503")
async def health(request: Request) -> JSONResponse:
    state = request.app.state.api
    clickhouse = await anyio.to_thread.run_sync(state.ch.ping)
    try:
        await state.pg.fetch("SELECT 1")
        postgresql = True
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        postgresql = False
    ok = clickhouse and postgresql
    return JSONResponse({"status": "ok" if ok else "unavailable", "clickhouse": clickhouse, "postgresql": postgresql,
                         "access_log": "on" if state.audit else "OFF"}, status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics of the API", response_class=PlainTextResponse)
async def metrics(request: Request) -> PlainTextResponse:
    state = request.app.state.api
    return PlainTextResponse(state.metrics.render(state.ch, state.log), media_type="text/plain; version=0.0.4")
