"""Deterministic facts for the serving layer's tests and benchmark, written straight into ClickHouse (usage_10s and
its rollups, task_facts, audit_log, ingest_stats_10s, dlq_events, the example price catalogue) with the matching
PostgreSQL directory: a few tenants whose users, projects, nodes and task ids all differ, so a leak across tenants
shows. Shaped like the simulator's output (dev/simulator), at a size chosen by the caller.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from pipeline import sketch
from telemetry import prices
from telemetry.settings import REPO_ROOT

MODELS = (("xumi-base-7b", "2026.01"), ("xumi-code-34b", "2026.01"), ("xumi-vision-2b", "2026.02"))
CHECKPOINTS = ("", "ckpt-support", "ckpt-legal")
VM_TYPES = ("NC24ads_A100_v4", "NV6", "x4GPUlarge")
AUDIT_TOPICS = ("pbac_access", "asset_access", "asset_transfer")


@dataclass
class Tenant:
    tenant_id: str
    code: str
    departments: list[str] = field(default_factory=list)
    projects: dict[str, str] = field(default_factory=dict)  # project -> department
    users: dict[str, str] = field(default_factory=dict)  # user -> department
    nodes: list[tuple[str, str, str]] = field(default_factory=list)  # (node_id, host_name, vm_type), its own


@dataclass
class Dataset:
    tenants: list[Tenant]
    shared_nodes: list[tuple[str, str, str]]
    start: datetime
    end: datetime
    task_ids: dict[str, list[str]] = field(default_factory=dict)  # tenant -> its task ids
    totals: dict[str, dict[str, Any]] = field(default_factory=dict)  # tenant -> {"requests": n, "credits": Decimal}

    def directory(self) -> dict[str, list[dict[str, str]]]:
        """The PostgreSQL directory of these tenants (services.api.directory.load's document)."""
        return {
            "tenants": [{"tenant_id": t.tenant_id, "name": t.code.title()} for t in self.tenants],
            "departments": [{"tenant_id": t.tenant_id, "department_id": d, "name": d} for t in self.tenants
                            for d in t.departments],
            "projects": [{"tenant_id": t.tenant_id, "project_id": p, "department_id": d, "name": p}
                         for t in self.tenants for p, d in t.projects.items()],
            "users": [{"tenant_id": t.tenant_id, "user_id": u, "department_id": d, "display_name": u.title(),
                       "email": f"{u}@{t.code}.example"} for t in self.tenants for u, d in t.users.items()],
        }


def build(tenants: int = 2, users: int = 4, hours: int = 6, end: datetime | None = None, seed: int = 7) -> Dataset:
    rng = random.Random(seed)
    end = (end or datetime.now(timezone.utc)).replace(minute=0, second=0, microsecond=0)
    out = []
    for i in range(tenants):
        code = f"t{i}{rng.choice('abcdefgh')}"
        t = Tenant(str(uuid.UUID(int=rng.getrandbits(128), version=4)), code)
        t.departments = [f"{code}-research", f"{code}-finance"]
        t.projects = {f"{code}-chat": t.departments[0], f"{code}-reports": t.departments[1]}
        t.users = {f"{code}-user{j}": t.departments[j % 2] for j in range(users)}
        t.nodes = [(str(uuid.UUID(int=rng.getrandbits(128), version=4)), f"aks-{code}-vmss00000{k}", VM_TYPES[k % 3])
                   for k in range(2)]
        # a workstation named after its user: a host name that names a person (API_PERSONAL_HOSTS)
        t.nodes.append((str(uuid.UUID(int=rng.getrandbits(128), version=4)), f"{code}-user0-workstation", "NV6"))
        out.append(t)
    shared = [(str(uuid.UUID(int=rng.getrandbits(128), version=4)), "aks-shared-vmss000000", "NC24ads_A100_v4")]
    return Dataset(out, shared, end - timedelta(hours=hours), end)


def _ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def write(client: Client, database: str, data: Dataset, seed: int = 7) -> None:
    """Insert the dataset's rows, and load the example price catalogue (a no-op when it is loaded)."""
    rng = random.Random(seed)
    usage, facts, audit, ingest, dlq = [], [], [], [], []
    n_task = 0
    for t in data.tenants:
        t_totals = {"requests": 0, "credits": Decimal(0)}
        data.task_ids[t.tenant_id] = []
        projects = list(t.projects)
        hour = data.start
        while hour < data.end:
            for u_index, (user, department) in enumerate(t.users.items()):
                project = projects[u_index % len(projects)]
                for slot in range(0, 3600, 600):
                    model, version = MODELS[(u_index + slot // 600) % len(MODELS)]
                    checkpoint = CHECKPOINTS[(u_index + slot // 600) % len(CHECKPOINTS)]
                    requests = rng.randint(1, 40)
                    errors = rng.randint(0, requests // 8)
                    latencies = [rng.uniform(50, 3000) for _ in range(requests)]
                    hist: dict[str, int] = {}
                    for value in latencies:
                        key = str(sketch.bucket(value))
                        hist[key] = hist.get(key, 0) + 1
                    credits = Decimal(rng.randint(1, 5_000_000)).scaleb(-6)
                    gpu_s = Decimal(rng.randint(0, 3600_000_000)).scaleb(-6)
                    t_totals["requests"] += requests
                    t_totals["credits"] += credits
                    usage.append({
                        "window_start": _ts(hour + timedelta(seconds=slot))[:19], "tenant_id": t.tenant_id,
                        "department_id": department, "project_id": project, "user_id": user, "model": model,
                        "model_version": version, "checkpoint_id": checkpoint, "checkpoint_version": "1" if checkpoint else "",
                        "requests": requests, "errors": errors, "errors_by_type": {"timeout": errors} if errors else {},
                        "tokens_in": requests * rng.randint(50, 500), "tokens_out": requests * rng.randint(20, 900),
                        "latency_ms_sum": round(sum(latencies), 3), "latency_hist": hist,
                        "wkf_gpu_seconds": str(gpu_s), "kuber_gpu_seconds": str(gpu_s), "wkf_credits": str(credits),
                        "credits": str(credits), "audit_events": 2, "transfers": 1, "transfer_bytes": 1000 * requests,
                    })
                for attempt in range(2):
                    n_task += 1
                    task_id = f"{t.code}-task-{n_task:06d}"
                    data.task_ids[t.tenant_id].append(task_id)
                    node = (t.nodes + data.shared_nodes)[n_task % (len(t.nodes) + len(data.shared_nodes))]
                    queued = hour + timedelta(seconds=rng.randint(0, 3000))
                    started = queued + timedelta(milliseconds=rng.randint(100, 5000))
                    finished = started + timedelta(milliseconds=rng.randint(5_000, 300_000))
                    failed = rng.random() < 0.2
                    model, version = MODELS[n_task % len(MODELS)]
                    facts.append({
                        "task_id": task_id, "attempt": 1, "status": "failed" if failed else "finished",
                        "tenant_id": t.tenant_id, "department_id": department, "project_id": project, "user_id": user,
                        "base_model": model, "model_version": version, "checkpoint_id": CHECKPOINTS[n_task % 3],
                        "checkpoint_version": "1", "node_id": node[0], "host_name": node[1], "vm_type": node[2],
                        "queued_at": _ts(queued), "started_at": _ts(started), "finished_at": _ts(finished),
                        "queue_ms": int((started - queued).total_seconds() * 1000), "checkpoint_load_ms": rng.randint(100, 9000),
                        "init_ms": rng.randint(50, 900), "inference_ms": rng.randint(1000, 200000),
                        "total_ms": int((finished - queued).total_seconds() * 1000), "input_bytes": 1000, "output_bytes": 2000,
                        "error_type": "oom" if failed else "", "error_message": "out of memory" if failed else "",
                        "enrichment_status": "ok", "gpu_util_avg": rng.uniform(10, 99), "cpu_util_avg": rng.uniform(5, 80),
                        "ram_max": rng.uniform(1e9, 6e10), "cpu_seconds": 12.5, "gpu_seconds": 60.25,
                        "job_version": "test", "version": 1,
                    })
                for k, topic in enumerate(AUDIT_TOPICS):
                    host = f"{user}-laptop" if u_index == 0 else t.nodes[0][1]  # a laptop names its user
                    audit.append({
                        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                        "ts": _ts(hour + timedelta(seconds=rng.randint(0, 3599), milliseconds=k)), "topic": topic,
                        "event_name": {"pbac_access": "pbac.access.decided", "asset_access": "asset.access.checked",
                                       "asset_transfer": "asset.transfer.completed"}[topic],
                        "tenant_id": t.tenant_id, "department_id": department, "project_id": project, "user_id": user,
                        "node_id": t.nodes[0][0], "host_name": host, "subject": user,
                        "action": "upload" if topic == "asset_transfer" else "read",
                        "resource": f"{t.code}-dataset-{u_index}", "decision": "deny" if k == 1 and u_index == 1 else "allow",
                        "policy_id": "", "details": json.dumps({"n": k}),
                    })
            hour += timedelta(hours=1)
        data.totals[t.tenant_id] = t_totals
    hour = data.start
    while hour < data.end:
        for topic in ("telemetry.events.v1", "xumi_task", "pbac_access"):
            ingest.append({"window_start": _ts(hour)[:19], "topic": topic, "consumed": 110, "valid": 100, "dlq": 7,
                           "duplicates": 3, "late": 1})
            dlq.append({"ts": _ts(hour + timedelta(minutes=5)), "reason": "schema_violation", "message": "bad field",
                        "topic": topic, "kafka_partition": 0, "kafka_offset": int(hour.timestamp()),
                        "payload": "{}", "payload_encoding": "utf-8", "job_version": "test",
                        "rejected_at": _ts(hour + timedelta(minutes=5))})
        hour += timedelta(hours=1)
    for table, rows in (("usage_10s", usage), ("task_facts", facts), ("audit_log", audit),
                        ("ingest_stats_10s", ingest), ("dlq_events", dlq)):
        for start in range(0, len(rows), 20_000):
            body = "\n".join(json.dumps(r) for r in rows[start:start + 20_000]).encode()
            client.raw_insert(f"{database}.{table}", insert_block=body, fmt="JSONEachRow")
    prices.load(client, database, prices.read_catalogue(REPO_ROOT / "sql" / "clickhouse" / "prices" / "example.yaml"),
                say=lambda _: None)
