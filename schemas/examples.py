"""Hand-made valid examples of every family and event name, in wire form (JSON-ready dicts).

Used by the tests, the benchmark and as documentation; `example(family, **overrides)` makes variants.
"""

from __future__ import annotations

import copy
from typing import Any

# One shared context, as a producer on one node would send it.
_CTX: dict[str, Any] = {
    "tenant_id": "7b0c1f3e-2a44-4d51-9a0e-5d1f6c2b8e90",
    "node_id": "3f9a2c71-8d4e-4b6a-a1c2-0e5f7d9b1a23",
    "vm_type": "NV6",
    "host_name": "gpu-node-07.cluster.local",
    "user_id": "u_123",
    "project_id": "p_42",
    "department_id": "d_research",
}


def _ev(event_id: str, event_name: str, ts: str, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "event_name": event_name, "ts": ts, **_CTX, **fields}


_LOAD = {"base_model": "xumi-base-7b", "checkpoint_id": "ckpt_style_v3", "checkpoint_version": "3.1.0",
         "storage_type": "nfs"}
_TASK = {"task_id": "t_0001", "attempt": 1, "model": "xumi-base-7b", "model_version": "2026.02",
         "checkpoint_id": "ckpt_style_v3", "checkpoint_version": "3.1.0", "input_bytes": 48_213}
_CREDIT = {"units": 4.0, "seconds": 60.0, "credits": 2.4, "task_id": "t_0001"}
_LLM = {"session_id": "s_456", "request_id": "r_789", "model_id": "gpt-oss-1", "model_version": "2026-02-21",
        "prompt_version": "pv_12", "experiment": {"name": "reranker_v2", "variant": "B"}, "latency_ms": 812,
        "tokens_in": 421, "tokens_out": 233, "region": "eu-central", "client": {"app": "web", "os": "macos"}}

_SYS = {"cpu_percent": 37.5, "cpu_count": 24, "ram_used_bytes": 41_000_000_000, "ram_total_bytes": 68_719_476_736}
_GPU = {"index": 0, "name": "NVIDIA A100-SXM4-80GB", "utilization_percent": 88.0,
        "memory_used_bytes": 61_203_283_968, "memory_total_bytes": 85_899_345_920}

EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "xumi_load": [
        _ev("0b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d01", "xumi.weights.load.start", "2026-02-21T12:00:00.000Z",
            task_id="t_0001", bytes=14_000_000_000, **_LOAD),
        _ev("0b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d02", "xumi.weights.load.finish", "2026-02-21T12:00:41.250Z",
            task_id="t_0001", bytes=14_000_000_000, duration_ms=41_250, cache_hit=False, **_LOAD),
        _ev("0b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d03", "xumi.checkpoint.load.start", "2026-02-21T12:00:41.300Z",
            bytes=350_000_000, **_LOAD),
        _ev("0b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d04", "xumi.checkpoint.load.finish", 1771675242100,
            bytes=350_000_000, duration_ms=800, cache_hit=True, **_LOAD),
    ],
    "xumi_task": [
        _ev("1b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d01", "xumi.task.queued", "2026-02-21T11:59:58.000Z", **_TASK),
        _ev("1b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d02", "xumi.task.started", "2026-02-21T13:00:00.000+01:00", **_TASK),
        _ev("1b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d03", "xumi.task.initialized", "2026-02-21T12:00:42.000Z", **_TASK),
        _ev("1b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d04", "xumi.task.finished", "2026-02-21T12:01:30.123Z",
            **_TASK, output_bytes=1_024_000),
        _ev("1b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d05", "xumi.task.failed", "2026-02-21T12:01:30.123Z",
            **{**_TASK, "attempt": 2, "checkpoint_id": None, "checkpoint_version": None},
            error_type="cuda_oom", error_message="CUDA out of memory while allocating 2.00 GiB"),
    ],
    "wkf_task": [
        _ev("2b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d01", "wkf.task.started", "2026-02-21T11:59:57.000Z",
            event_type="TaskStarted", task_id="t_0001", k8s_node="aks-gpu-12345678-vmss000003"),
        _ev("2b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d02", "wkf.task.completed", "2026-02-21T12:01:31.000Z",
            event_type="TaskCompleted", task_id="t_0001"),
        _ev("2b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d03", "wkf.task.failed", "2026-02-21T12:01:31.000Z",
            event_type="TaskFailed", task_id="t_0002", k8s_node="aks-gpu-12345678-vmss000004"),
    ],
    "pbac_access": [
        _ev("3b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d01", "pbac.access.checked", "2026-02-21T12:00:00.001Z",
            subject="u_123", resource="projects/p_42/models/xumi-base-7b", action="models:invoke",
            decision="allow", policy_id="pol_models_rw", reason="member of project p_42"),
        _ev("3b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d02", "pbac.access.checked", "2026-02-21T12:00:00.002Z",
            subject="svc_exporter", resource="projects/p_7/datasets/ds_1", action="read", decision="deny"),
    ],
    "pbac_politics": [
        _ev("4b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d01", "pbac.policy.created", "2026-02-21T09:00:00.000Z",
            policy_id="pol_models_rw", policy_version=1, changed_by="u_admin", change_summary="initial policy"),
        _ev("4b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d02", "pbac.policy.updated", "2026-02-21T10:00:00.000Z",
            policy_id="pol_models_rw", policy_version=2, changed_by="u_admin",
            change_summary="added models:invoke for group ml"),
        _ev("4b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d03", "pbac.policy.deleted", "2026-02-21T11:00:00.000Z",
            policy_id="pol_legacy", policy_version=7, changed_by="u_admin", change_summary=""),
    ],
    "pbac_service": [
        _ev("5b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d01", "pbac.service.loaded", "2026-02-21T08:00:00.000Z",
            service="pbac-engine-0", action="load", status="ok", message="loaded 42 policies"),
        _ev("5b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d02", "pbac.service.reloaded", "2026-02-21T10:00:00.500Z",
            service="pbac-engine-0", action="reload", status="warning", message="1 policy skipped"),
        _ev("5b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d03", "pbac.service.updated", "2026-02-21T10:05:00.000Z",
            service="pbac-engine-1", action="update", status="error"),
    ],
    "asset_access": [
        _ev("6b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d01", "asset.access.checked", "2026-02-21T12:00:05.000Z",
            asset_id="ds_1", asset_type="dataset", action="read", decision="allow"),
        _ev("6b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d02", "asset.access.checked", "2026-02-21T12:00:06.000Z",
            asset_id="ckpt_style_v3", asset_type="checkpoint", action="delete", decision="deny"),
    ],
    "asset_transfer": [
        _ev("7b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d01", "asset.transfer.completed", "2026-02-21T12:00:10.000Z",
            asset_id="ds_1", bytes=5_000_000, direction="download", duration_ms=1_200, storage_type="s3"),
        _ev("7b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d02", "asset.transfer.failed", "2026-02-21T12:00:11.000Z",
            asset_id="img_9", bytes=0, direction="upload", duration_ms=30_000, storage_type="s3",
            error_type="timeout", error_message="upload timed out after 30 s"),
    ],
    "wkf_cpu": [
        _ev("8b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d01", "wkf.cpu.charged", "2026-02-21T12:01:00.000Z",
            resource="cpu", **_CREDIT),
    ],
    "wkf_gpu": [
        _ev("8b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d02", "wkf.gpu.charged", "2026-02-21T12:01:00.000Z",
            resource="gpu", **{**_CREDIT, "units": 1.0, "credits": 12.5}, gpu_type="a100_80gb"),
    ],
    "kuber_cpu": [
        _ev("8b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d03", "kuber.cpu.charged", "2026-02-21T12:01:00.000Z",
            resource="cpu", units=0.5, seconds=3600, credits=0, labels={"namespace": "ml-serving"}),
    ],
    "kuber_gpu": [
        _ev("8b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d04", "kuber.gpu.charged", "2026-02-21T12:01:00.000Z",
            resource="gpu", units=2, seconds=60.5, credits=30.25, gpu_type="h100"),
    ],
    "llm_request": [
        _ev("9b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d01", "llm.request.completed", "2026-02-21T12:34:56.789Z",
            **_LLM, status="ok", error_type=None),
        _ev("9b7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d02", "llm.request.completed", "2026-02-21T12:34:57.001Z",
            **{**_LLM, "experiment": None, "tokens_out": 0, "latency_ms": 120_000}, status="timeout",
            error_type="upstream_timeout", checkpoint_id="ckpt_chat_v1"),
    ],
    "sdk_metric": [  # seed 004's three calls, as Telemetry(system="xumi", component="inference") sends them
        _ev("ab7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d01", "xumi.inference.metric", "2026-02-21T12:00:45.125Z",
            metric="inference_latency", value=0.125, status="completed",
            context={**_SYS, "gpus": [_GPU, {**_GPU, "index": 1, "utilization_percent": None}]}),
        _ev("ab7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d02", "xumi.inference.metric", "2026-02-21T12:00:45.130Z",
            metrics={"tokens_per_sec": 45.2, "gpu_util": 88}, status="completed", context={**_SYS, "gpus": []}),
        _ev("ab7f4a52-1c1e-4f0e-9d5a-6a1e2b3c4d03", "xumi.inference.model_load_start", "2026-02-21T12:00:00.000Z",
            status="started", context=None, labels={"stage": "warmup"}),
    ],
}


def example(family: str, index: int = 0, **overrides: Any) -> dict[str, Any]:
    """A deep copy of one example with fields overridden; pass a field as `...` (Ellipsis) to drop it."""
    data = copy.deepcopy(EXAMPLES[family][index])
    for key, value in overrides.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return data
