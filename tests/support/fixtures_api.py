"""One API per test session, shared by the API's tests: the stack's real PostgreSQL (a database of its own), the
session's dev ClickHouse (a migrated database of its own) holding dev/serving_data.py's tenants, a token per role
and tenant, a JWKS the test's own keys sign with (served by a small local HTTP server), a raw lake with a task's
events, and `python -m services.api` on a free port. Registered by tests/conftest.py (`pytest_plugins`).
"""

from __future__ import annotations

import json
import re
import selectors
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import unquote, urlparse

import clickhouse_connect
import jwt
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from dev import serving_data
from services.api import directory, permissions, tokens
from telemetry import settings
from telemetry.migrate import migrate, migrate_postgres
from telemetry.settings import REPO_ROOT, Settings
from tests.support.fixtures_stack import bring_up

if TYPE_CHECKING:
    from tests.conftest import DevClickHouse

ISSUER = "https://idp.test.local/"
AUDIENCE = "telemetry-api"


class Jwks:
    """An OIDC provider's signing side: RSA keys made here, their public halves served as a JWKS over HTTP."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # never published
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        document = json.dumps({"keys": [{**public, "kid": "test-key", "use": "sig", "alg": "RS256"}]}).encode()
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(document)))
                self.end_headers()
                self.wfile.write(document)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, sub: str, *, audience: str = AUDIENCE, issuer: str = ISSUER, expires_in: int = 300,
              key: Any = None, kid: str = "test-key", algorithm: str = "RS256") -> str:
        now = int(time.time())
        return jwt.encode({"sub": sub, "aud": audience, "iss": issuer, "iat": now, "exp": now + expires_in},
                          key or self.key, algorithm=algorithm, headers={"kid": kid})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Api:
    """The running API and what the tests need to call and inspect it."""

    url: str
    env: dict[str, str]
    settings: Settings
    data: serving_data.Dataset
    ch_database: str
    ch_url: str  # writer login
    jwks: Jwks
    lake_task: str
    tokens: dict[tuple[str, int], str] = field(default_factory=dict)  # (role, tenant index) -> token

    def tenant(self, index: int) -> str:
        return self.data.tenants[index].tenant_id

    def get(self, path: str, token: str | None, params: Any = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(self.url + path, headers=headers, params=params, timeout=60)

    def post(self, path: str, token: str, body: Any) -> requests.Response:
        return requests.post(self.url + path, headers={"Authorization": f"Bearer {token}"}, json=body, timeout=60)

    def pg(self) -> psycopg.Connection:
        return psycopg.connect(self.settings.postgres_conninfo(), autocommit=True)

    def ch(self) -> Any:
        return clickhouse_connect.get_client(dsn=self.ch_url)

    def access_log_size(self) -> int:
        with self.pg() as conn:
            return conn.execute("SELECT count(*) FROM access_log").fetchone()[0]

    def last_records(self, n: int = 1) -> list[dict[str, Any]]:
        with self.pg() as conn:
            rows = conn.execute("SELECT record FROM access_log ORDER BY seq DESC LIMIT %s", (n,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def issue(self, principal: str, role: str, tenants: list[str], days: int = 30) -> str:
        with self.pg() as conn:
            tokens.grant(conn, principal, role, tenants, "test")
            return tokens.issue(conn, principal, days, "test", "test")


def login(url: str) -> tuple[str, str, str]:
    """(bare URL, user, password) of a DevClickHouse login URL."""
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.hostname}:{parsed.port}", unquote(parsed.username or ""), unquote(parsed.password or "")


def fresh_postgres_database(config: Settings, name: str) -> str:
    """CREATE DATABASE name on the stack's server; its POSTGRES_URL."""
    with psycopg.connect(config.postgres_conninfo(database="postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlparse(config.postgres_url)
    return f"postgresql://{url.hostname}:{url.port}/{name}"


def api_environment(stack_env: dict[str, str], clickhouse: DevClickHouse, ch_database: str, postgres_url: str,
                    **extra: str) -> dict[str, str]:
    bare, writer, writer_password = login(clickhouse.writer)
    _, reader, reader_password = login(clickhouse.reader)
    return {**stack_env, "CLICKHOUSE_URL": bare, "CLICKHOUSE_USER": writer, "CLICKHOUSE_PASSWORD": writer_password,
            "CLICKHOUSE_READER_USER": reader, "CLICKHOUSE_READER_PASSWORD": reader_password,
            "CLICKHOUSE_DATABASE": ch_database, "POSTGRES_URL": postgres_url, **extra}


def migrated_stores(env: dict[str, str]) -> Settings:
    """Apply both stores' migrations for the environment's databases; its settings."""
    config = settings.load(env)
    client = clickhouse_connect.get_client(dsn=config.clickhouse_url, username=config.clickhouse_user,
                                           password=config.clickhouse_password)
    migrate(client, config.clickhouse_database, 12, say=lambda _: None)
    client.close()
    with psycopg.connect(config.postgres_conninfo()) as conn:
        migrate_postgres(conn, config.postgres_api_user, say=lambda _: None)
    return config


@dataclass
class ApiProcess:
    proc: subprocess.Popen[str]
    url: str
    log: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def serving(module: str, env: dict[str, str], log: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    """`python -m MODULE --port 0 ARGS` (the API, the quota service); waits for the line naming the address it
    serves: the process and that URL."""
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", module, "--port", "0", *args], cwd=REPO_ROOT,
                                env={**env, "PYTHONPATH": str(REPO_ROOT)}, stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = proc.stdout.readline() if sel.select(timeout=60) else ""
    found = re.search(r"serving on (http://[^\s,]+)", line)
    if not found:
        proc.kill()
        proc.wait()
        pytest.fail(f"{module} did not start: {line!r}\n{log.read_text()}")
    return proc, found.group(1)


def start_api(env: dict[str, str], log: Path, *args: str) -> ApiProcess:
    """`python -m services.api --port 0 ARGS`, once it answers."""
    proc, url = serving("services.api", env, log, *args)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # uvicorn accepts once its lifespan ran
        try:
            requests.get(f"{url}/health", timeout=5)
            break
        except requests.RequestException:  # not accepting yet, or its first ClickHouse ping is slow on a busy machine
            time.sleep(0.1)
    return ApiProcess(proc, url, log)


def write_lake(root: Path, tenant: str, task_id: str, at: datetime) -> None:
    """The job's lake layout (topic= / date= / hour=, the job's columns) holding a task's lifecycle events, one of
    another task, and one of another tenant naming the same task id."""
    events = [("xumi_task", "xumi.task.queued", tenant, task_id, 0), ("xumi_task", "xumi.task.finished", tenant, task_id, 90),
              ("xumi_load", "xumi.load.finished", tenant, task_id, 30), ("xumi_task", "xumi.task.queued", tenant, "other-task", 5),
              ("xumi_task", "xumi.task.queued", "another-tenant", task_id, 7)]
    for topic in {e[0] for e in events}:
        rows = [e for e in events if e[0] == topic]
        directory_ = root / f"topic={topic}" / f"date={at:%Y-%m-%d}" / f"hour={at:%H}"
        directory_.mkdir(parents=True, exist_ok=True)
        table = pa.table({
            "event_id": [str(uuid.uuid4()) for _ in rows],
            "event_name": [e[1] for e in rows],
            "ts": pa.array([at + timedelta(seconds=e[4]) for e in rows], pa.timestamp("ms")),
            "tenant_id": [e[2] for e in rows], "department_id": ["d"] * len(rows), "project_id": ["p"] * len(rows),
            "user_id": ["u"] * len(rows), "node_id": ["n"] * len(rows), "host_name": ["h"] * len(rows),
            "vm_type": ["NV6"] * len(rows),
            "payload": [json.dumps({"task_id": e[3], "event_name": e[1], "user_id": "u"}) for e in rows],
        })
        pq.write_table(table, directory_ / "part-0.parquet")
        (directory_ / ".part-in-progress.parquet").write_bytes(b"not parquet")


@pytest.fixture(scope="session")
def jwks() -> Iterator[Jwks]:
    provider = Jwks()
    yield provider
    provider.close()


@pytest.fixture(scope="session")
def postgres_stack(stack_env: dict[str, str]) -> Settings:
    """The test stack's PostgreSQL, started alone (the API tests need no Kafka or Flink)."""
    return bring_up(stack_env, "postgres")


@pytest.fixture(scope="session")
def api(stack_env: dict[str, str], postgres_stack: Settings, clickhouse_dev: DevClickHouse, jwks: Jwks,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    work = tmp_path_factory.mktemp("api")
    name = f"api_{uuid.uuid4().hex[:10]}"
    postgres_url = fresh_postgres_database(postgres_stack, name)
    env = api_environment(stack_env, clickhouse_dev, name, postgres_url, LAKE_URI=str(work / "lake"),
                          API_OIDC_ISSUER=ISSUER, API_OIDC_AUDIENCE=AUDIENCE, API_OIDC_JWKS_URL=jwks.url,
                          API_MAX_ROWS="500")
    config = migrated_stores(env)
    data = serving_data.build(tenants=3, users=4, hours=6)
    writer = clickhouse_connect.get_client(dsn=clickhouse_dev.writer)
    serving_data.write(writer, name, data)
    writer.close()
    with psycopg.connect(config.postgres_conninfo(), autocommit=True) as conn:
        directory.load(conn, data.directory())
        for tenant in data.tenants:  # a limit per tenant, so the quota limit endpoints have rows to show
            conn.execute("SELECT * FROM set_quota_limit(%s, 'tenant', '', 'credits', 'month', 800, 1000, 'fixture', '')",
                         (tenant.tenant_id,))
    task_id = data.task_ids[data.tenants[0].tenant_id][0]
    write_lake(work / "lake", data.tenants[0].tenant_id, task_id, data.start + timedelta(minutes=10))
    server = Api("", env, config, data, name, clickhouse_dev.writer, jwks, task_id)
    for role in permissions.ROLES:
        for index in range(2):
            server.tokens[(role, index)] = server.issue(f"{role}-{index}", role, [server.tenant(index)])
    process = start_api(env, work / "api.log")
    server.url = process.url
    try:
        yield server
    finally:
        process.stop()
