"""Faults: ClickHouse away -> 503 naming it, and the request still in the access log; PostgreSQL away -> 503, the
request refused; the access log unwritable -> the answer withheld (503), never sent unaudited. Real servers: a
PostgreSQL of its own that the test stops and starts again, and an API pointed at a ClickHouse port nobody serves."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg
import pytest
import requests

from services.api import tokens
from telemetry import settings
from tests.support.fixtures_api import Api, ApiProcess, migrated_stores, start_api
from tests.support.fixtures_stack import StackCli, bring_up, free_offset, make_stack_environ


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_clickhouse_away_is_503_naming_it_and_the_request_is_still_audited(api: Api, tmp_path: Path) -> None:
    env = {**api.env, "CLICKHOUSE_URL": f"http://127.0.0.1:{closed_port()}"}
    process = start_api(env, tmp_path / "api.log", "--no-wait")
    try:
        token = api.tokens[("admin", 0)]
        for path in ("/v1/usage", "/v1/tasks", "/v1/access"):
            response = requests.get(process.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            assert response.status_code == 503, response.text
            problem = response.json()
            assert problem["code"] == "clickhouse-unavailable" and "did not answer" in problem["detail"]
            assert response.headers["retry-after"] == "5" and "data" not in problem
            record = api.last_records()[0]
            assert (record["endpoint"], record["status"], record["principal"]) == (path, 503, "admin-0")
        health = requests.get(process.url + "/health", timeout=30)
        assert health.status_code == 503 and health.json()["clickhouse"] is False and health.json()["postgresql"]
        # PostgreSQL still answers, so what needs no ClickHouse works
        assert requests.get(process.url + "/v1/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=30).ok
    finally:
        process.stop()


@dataclass
class OwnPostgres:
    env: dict[str, str]  # the API's environment, POSTGRES_URL and state directory of this server
    stack: dict[str, str]  # the stack environment that runs it
    token: str


@pytest.fixture
def own_postgres(api: Api, stack_cli: StackCli, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnPostgres]:
    """A PostgreSQL server of this test's own (the stack's, in another state directory), migrated, with a token."""
    stack = make_stack_environ(tmp_path_factory.mktemp("pg-fault"), free_offset())
    bring_up(stack, "postgres")
    env = {**api.env, "TELEMETRY_STATE_DIR": stack["TELEMETRY_STATE_DIR"], "POSTGRES_URL": stack["POSTGRES_URL"]}
    config = migrated_stores(env)
    with psycopg.connect(config.postgres_conninfo(), autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (tenant_id) VALUES (%s)", (api.tenant(0),))
        tokens.grant(conn, "fault-admin", "admin", [api.tenant(0)], "test")
        token = tokens.issue(conn, "fault-admin", 1, "", "test")
    try:
        yield OwnPostgres(env, stack, token)
    finally:
        stack_cli(stack, "down", "postgres")


def test_postgresql_away_refuses_requests_and_they_work_again_when_it_returns(own_postgres: OwnPostgres,
                                                                             stack_cli: StackCli, tmp_path: Path) -> None:
    process: ApiProcess = start_api(own_postgres.env, tmp_path / "api.log")
    headers = {"Authorization": f"Bearer {own_postgres.token}"}
    try:
        assert requests.get(process.url + "/v1/usage", headers=headers, timeout=30).status_code == 200
        assert stack_cli(own_postgres.stack, "down", "postgres").returncode == 0
        for path in ("/v1/usage", "/v1/whoami"):
            response = requests.get(process.url + path, headers=headers, timeout=30)
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "postgresql-unavailable" and "data" not in response.json()
        assert requests.get(process.url + "/health", timeout=30).json()["postgresql"] is False
        bring_up(own_postgres.stack, "postgres")
        assert requests.get(process.url + "/v1/usage", headers=headers, timeout=30).status_code == 200
    finally:
        process.stop()


def test_an_access_log_that_cannot_be_written_withholds_the_answer(own_postgres: OwnPostgres, tmp_path: Path) -> None:
    config = settings.load(own_postgres.env)
    process = start_api(own_postgres.env, tmp_path / "api.log")
    headers = {"Authorization": f"Bearer {own_postgres.token}"}
    try:
        with psycopg.connect(config.postgres_conninfo(), autocommit=True) as conn:
            conn.execute(f'REVOKE EXECUTE ON FUNCTION append_access_logs(text[]) FROM "{config.postgres_api_user}"')
            with ThreadPoolExecutor(12) as pool:  # concurrent requests: batches of records, each one failing
                refused = list(pool.map(lambda _: requests.get(process.url + "/v1/usage", headers=headers, timeout=30),
                                        range(12)))
            for response in refused:
                assert response.status_code == 503 and response.json()["code"] == "audit-unavailable", response.text
                assert "withheld" in response.json()["detail"] and "data" not in response.json()
                assert "x-request-id" not in response.headers
            assert conn.execute("SELECT count(*) FROM access_log").fetchone()[0] == 0
            conn.execute(f'GRANT EXECUTE ON FUNCTION append_access_logs(text[]) TO "{config.postgres_api_user}"')
        ok = requests.get(process.url + "/v1/usage", headers=headers, timeout=30)
        assert ok.status_code == 200 and "data" in ok.json()
        metrics = requests.get(process.url + "/metrics", timeout=30).text
        assert "telemetry_api_audit_failures_total 12" in metrics
    finally:
        process.stop()
