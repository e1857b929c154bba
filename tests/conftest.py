"""Shared fixtures: real local services started as subprocesses for the test session."""

from __future__ import annotations

import json
import os
import re
import secrets
import selectors
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import pytest

from dev.chdb_server.users import write_users
from telemetry.settings import REPO_ROOT
from udfs.python_env import expose_site_packages

# Flink mini-clusters started by tests run thread-mode Python inside the JVM: it must see this venv.
expose_site_packages()

# The real local stack (Kafka, Flink, MinIO, ...) for tests marked `stack`, the session's one job run on it (shared
# by the job and Grafana tests) and the session's API; registered here, once, so pytest rewrites their asserts.
pytest_plugins = ["tests.support.fixtures_stack", "tests.support.fixtures_job", "tests.support.fixtures_api"]


@dataclass(frozen=True)
class DevClickHouse:
    """The session's dev ClickHouse server: its bare URL and a client URL (user:password@) per login."""

    url: str
    writer: str
    reader: str


def with_login(url: str, user: str, password: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{rest}"


@contextmanager
def dev_clickhouse(workdir: Path, port: int = 0) -> Iterator[DevClickHouse]:
    """A dev ClickHouse server (chdb behind ClickHouse's HTTP interface) on a loopback port (0: any free one) with
    its data under workdir and two users, a writer and a read-only reader (the same logins each time it starts in
    that directory); stopped when the block ends."""
    users = workdir / "users.yaml"
    logins_file = workdir / "logins.json"
    if not logins_file.exists():
        logins_file.write_text(json.dumps({"default": secrets.token_urlsafe(16), "reader": secrets.token_urlsafe(16)}))
    logins = json.loads(logins_file.read_text())
    write_users(users, {"default": (logins["default"], False), "reader": (logins["reader"], True)})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    with open(workdir / "server.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dev.chdb_server", "--path", str(workdir / "data"), "--port", str(port),
             "--users", str(users)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
        )
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = proc.stdout.readline().decode() if sel.select(timeout=60) else ""
    match = re.search(r"listening on (http://\S+?),", line)
    if not match:
        proc.kill()
        proc.wait()
        pytest.fail(f"dev ClickHouse server did not start: {line!r}\n{(workdir / 'server.log').read_text()}")
    url = match.group(1)
    try:
        yield DevClickHouse(url, with_login(url, "default", logins["default"]), with_login(url, "reader", logins["reader"]))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@pytest.fixture(scope="session")
def clickhouse_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevClickHouse]:
    """The session's dev ClickHouse server, shared by the whole session, so tests use their own databases."""
    with dev_clickhouse(tmp_path_factory.mktemp("clickhouse")) as server:
        yield server


@pytest.fixture(scope="session")
def clickhouse_server(clickhouse_dev: DevClickHouse) -> str:
    """URL (with the writer's login) of the session's dev ClickHouse server."""
    return clickhouse_dev.writer
