"""Fixtures for tests that need the real local stack: one stack per session, started with the CLI on ports of
its own and in a temporary state directory, so a developer's running stack (.local, default ports) is untouched.
Registered by tests/conftest.py (`pytest_plugins`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from telemetry import settings
from telemetry.settings import REPO_ROOT, Settings
from dev.stack.control import select
from dev.stack.process import port_free

# Every default port shifted by one offset; the shifted ports stay below Linux's ephemeral range (32768+),
# so no client connection can be holding one of them.
PORT_OFFSETS = range(20000, 23000, 100)
STACK_TIMEOUT = 300  # seconds for one CLI call; `up` waits at most each service's own start timeout


def default_ports() -> list[int]:
    """Every fixed port of the stack at its default settings (derived ports included)."""
    return [port.number for service in select(Settings()) for port in service.ports()]


def free_offset() -> int:
    for offset in PORT_OFFSETS:
        if all(port_free(port + offset) for port in default_ports()):
            return offset
    raise RuntimeError(f"no port offset in {PORT_OFFSETS} leaves all of the stack's ports free")


def make_stack_environ(state_dir: Path, offset: int) -> dict[str, str]:
    """The environment of a stack in state_dir with every port shifted by offset."""
    defaults = Settings()
    # Keys of a real S3 would not open the test MinIO. Once a test ran a mini-cluster in this pytest process,
    # PyFlink has set variables here that wire it to its own gateway and Python loopback server and point at the
    # wheel's Flink directories; a child job inheriting them refused to start, or (PYTHON_LOOPBACK_SERVER_ADDRESS)
    # ran and exited 0 without reading a record.
    environ = {
        key: value for key, value in os.environ.items()
        if key not in ("S3_ACCESS_KEY", "S3_SECRET_KEY", "LAKE_URI") and not _pyflink_leftover(key)
    }
    environ.update(
        {
            "TELEMETRY_STATE_DIR": str(state_dir),
            "KAFKA_DIRECT_URL": _shift(defaults.kafka_direct_url, offset),
            "CLICKHOUSE_URL": _shift(defaults.clickhouse_url, offset),
            "PROMETHEUS_URL": _shift(defaults.prometheus_url, offset),
            "S3_ENDPOINT": _shift(defaults.s3_endpoint, offset),
            "FLINK_REST_URL": _shift(defaults.flink_rest_url, offset),
            "POSTGRES_URL": _shift_url(defaults.postgres_url, offset),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        }
    )
    return environ


def _pyflink_leftover(key: str) -> bool:
    """A variable PyFlink sets in the process that started a mini-cluster (not a setting of ours)."""
    return (key.startswith(("PYFLINK_", "_PYFLINK_", "_PYTHON_")) or key == "PYTHON_LOOPBACK_SERVER_ADDRESS"
            or key in ("FLINK_HOME", "FLINK_LIB_DIR", "FLINK_OPT_DIR", "FLINK_PLUGINS_DIR", "FLINK_CONF_DIR",
                       "FLINK_BIN_DIR"))


def _shift(url: str, offset: int) -> str:
    """http://host:PORT or host:PORT with PORT + offset."""
    base, _, port = url.rpartition(":")
    return f"{base}:{int(port) + offset}"


def _shift_url(url: str, offset: int) -> str:
    """scheme://host:PORT/path with PORT + offset."""
    head, _, path = url.partition("://")[2].partition("/")
    host, _, port = head.rpartition(":")
    return f"{url.partition('://')[0]}://{host}:{int(port) + offset}/{path}"


def run_stack(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m dev.stack ARGS` in the given environment, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "dev.stack", *args],
        env=environ,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=STACK_TIMEOUT,
    )


StackCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def stack_cli() -> StackCli:
    """run_stack(environ, *args): `python -m dev.stack ARGS` in an environment, output captured."""
    return run_stack


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment (os.environ plus the test stack's settings) for subprocesses that use the test stack;
    the stack is stopped at the end of the session."""
    environ = make_stack_environ(tmp_path_factory.mktemp("stack"), free_offset())
    try:
        yield environ
    finally:
        run_stack(environ, "down")


def bring_up(stack_env: dict[str, str], *services: str) -> Settings:
    """`python -m dev.stack up SERVICES` (all when none) in the test stack's environment; fails the test
    with the CLI's output unless every service came up healthy."""
    result = run_stack(stack_env, "up", *services)
    if result.returncode != 0:
        what = ", ".join(services) or "the stack"
        pytest.fail(f"{what} of the test stack did not come up (exit {result.returncode}):\n{result.stdout}\n"
                    f"{result.stderr}")
    return settings.load(stack_env)


@pytest.fixture(scope="session")
def stack(stack_env: dict[str, str]) -> Settings:
    """Settings of a running, healthy test stack (Kafka with the catalogue's topics, ClickHouse dev server,
    PostgreSQL, MinIO with the lake bucket, Prometheus, Flink session cluster)."""
    return bring_up(stack_env)


@pytest.fixture(scope="session")
def kafka_url(stack_env: dict[str, str]) -> str:
    """Bootstrap URL of the test stack's broker, starting only Kafka (`up` creates the catalogue's topics)."""
    return bring_up(stack_env, "kafka").kafka_direct_url


@pytest.fixture(scope="session")
def minio_url(stack_env: dict[str, str]) -> str:
    """S3 endpoint of the test stack's MinIO, with the lake bucket created, starting only MinIO."""
    return bring_up(stack_env, "minio").s3_endpoint
