"""Shared fixtures: real local services started as subprocesses for the test session."""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import sys
from typing import Iterator

import pytest

from telemetry.settings import REPO_ROOT
from udfs.python_env import expose_site_packages

# Flink mini-clusters started by tests run thread-mode Python inside the JVM: it must see this venv.
expose_site_packages()

# The real local stack (Kafka, Flink, MinIO, ...) for tests marked `stack`, and the session's one job run on it
# (shared by the job and Grafana tests); registered here, once, so pytest rewrites their asserts.
pytest_plugins = ["tests.fixtures_stack", "tests.fixtures_job"]


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a dev ClickHouse server (chdb behind ClickHouse's HTTP interface) on a free loopback port,
    with its data in a fresh directory; shared by the whole session, so tests use their own databases."""
    workdir = tmp_path_factory.mktemp("clickhouse")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    with open(workdir / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "telemetry.clickhouse_dev", "--path", str(workdir / "data"), "--port", "0"],
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
    try:
        yield match.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
