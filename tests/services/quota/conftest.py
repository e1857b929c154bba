"""One quota service per test module on the test stack's real Kafka and PostgreSQL and the session's dev ClickHouse
engine: migrated databases of its own, a directory of two tenants, tokens per role, usage in ClickHouse, and
`python -m services.quota` on a free port. Tenant ids are fresh each session, so other tests' usage records on the
shared topic never meet these."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import clickhouse_connect
import psycopg
import pytest
import requests
from confluent_kafka import Producer

from pipeline import routing
from services.api import directory, tokens
from services.quota.client import QuotaClient
from telemetry import topics
from tests.support.fixtures_api import ApiProcess, api_environment, fresh_postgres_database, migrated_stores, serving
from tests.support.polling import eventually


def today() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


def usage_value(tenant: str, department: str, user: str, day: str, **columns: Any) -> dict[str, Any]:
    """A telemetry.usage.v1 value as the job writes it: every usage sum, money as plain decimal numbers."""
    value: dict[str, Any] = {"tenant_id": tenant, "department_id": department, "user_id": user, "day": day, "events": 1}
    value.update({m: 0 for m in routing.INT_METRICS})
    value.update({m: 0.0 for m in routing.FLOAT_METRICS})
    value.update({m: Decimal(0) for m in routing.MONEY_METRICS})
    value.update(columns)
    return value


def _dumps(value: dict[str, Any]) -> str:
    parts = []
    for k, v in value.items():
        parts.append(json.dumps(k) + ":" + (format(v, "f") if isinstance(v, Decimal) else json.dumps(v)))
    return "{" + ",".join(parts) + "}"


def start_quota(env: dict[str, str], log: Path, *args: str, ready: bool = True) -> ApiProcess:
    """`python -m services.quota --port 0 ARGS`; waits for its address, and (ready) until it has rebuilt."""
    process = ApiProcess(*serving("services.quota", env, log, *args), log)

    def health() -> bool:
        try:
            response = requests.get(process.url + "/health", timeout=10)
        except requests.RequestException:
            return False
        return response.status_code == 200 or not ready

    eventually(health, "the quota service rebuilt from the usage topic", timeout=60)
    return process


@dataclass
class QuotaStack:
    env: dict[str, str]
    tenants: list[str]
    kafka: str
    ch_url: str
    ch_database: str
    postgres: Any
    work: Path
    process: ApiProcess | None = None
    tokens: dict[tuple[str, int], str] = field(default_factory=dict)
    producer: Producer | None = None

    @property
    def url(self) -> str:
        assert self.process is not None
        return self.process.url

    def client(self, role: str = "quota_client", tenant: int = 0) -> QuotaClient:
        return QuotaClient(self.url, self.tokens[(role, tenant)], timeout_s=30)

    def pg(self) -> psycopg.Connection:
        return psycopg.connect(self.postgres.postgres_conninfo(), autocommit=True)

    def set_limit(self, tenant: str, scope: str, scope_id: str, metric: str, period: str, soft: str | None,
                  hard: str | None) -> None:
        with self.pg() as conn:
            conn.execute("SELECT * FROM set_quota_limit(%s, %s, %s, %s, %s, %s, %s, 'test', 'test')",
                         (tenant, scope, scope_id, metric, period, soft, hard))

    def produce(self, tenant: str, department: str, user: str, day: str, **columns: Any) -> None:
        assert self.producer is not None
        key = json.dumps({"tenant_id": tenant, "department_id": department, "user_id": user, "day": day})
        self.producer.produce(topics.USAGE_TOPIC, _dumps(usage_value(tenant, department, user, day, **columns)).encode(),
                              key.encode())
        self.producer.flush(10)

    def ch(self) -> Any:
        return clickhouse_connect.get_client(dsn=self.ch_url)


@pytest.fixture(scope="package")
def quota_stack(stack_env: dict[str, str], postgres_stack: Any, kafka_url: str, clickhouse_dev: Any,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[QuotaStack]:
    work = tmp_path_factory.mktemp("quota")
    name = f"quota_{uuid.uuid4().hex[:10]}"
    postgres_url = fresh_postgres_database(postgres_stack, name)
    env = api_environment(stack_env, clickhouse_dev, name, postgres_url, KAFKA_DIRECT_URL=kafka_url,
                          QUOTA_REFRESH_S="1", QUOTA_STALE_AFTER_S="10", QUOTA_PROJECT_CACHE_S="0")
    config = migrated_stores(env)
    suffix = uuid.uuid4().hex[:8]
    tenants = [f"qa-{suffix}", f"qb-{suffix}"]
    with psycopg.connect(config.postgres_conninfo(), autocommit=True) as conn:
        directory.load(conn, {
            "tenants": [{"tenant_id": t} for t in tenants],
            "departments": [{"tenant_id": t, "department_id": d} for t in tenants for d in ("d1", "d2")],
            "projects": [{"tenant_id": t, "project_id": "p1", "department_id": "d1"} for t in tenants],
            "users": [{"tenant_id": t, "user_id": u, "department_id": "d1"} for t in tenants
                      for u in ("hot", "cold", "corr", "quiet")],
        })
    stack = QuotaStack(env, tenants, kafka_url, clickhouse_dev.writer, name, config, work)
    with psycopg.connect(config.postgres_conninfo(), autocommit=True) as conn:
        for role in ("quota_client", "financial_director", "pipeline_td"):
            for index, tenant in enumerate(tenants):
                principal = f"{role}-{index}-{suffix}"
                tokens.grant(conn, principal, role, [tenant], "test")
                stack.tokens[(role, index)] = tokens.issue(conn, principal, 1, "test", "test")
    stack.producer = Producer({"bootstrap.servers": kafka_url, "enable.idempotence": True})
    stack.process = start_quota(env, work / "quota.log")
    try:
        yield stack
    finally:
        if stack.process is not None:
            stack.process.stop()
        stack.producer.flush(10)
        stack.producer = None  # closed now, while the broker still runs
