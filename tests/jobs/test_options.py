"""The streaming job's options that decide how it meets other deployments and producers' clocks, checked without
starting a JVM: each deployment's Kafka sinks get transactional ids of their own (two instances sharing one
prefix fenced each other's transactions), and a bad value is refused before anything runs."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from jobs.tables import kafka_sink_ddl
from jobs.telemetry_job import deployment_name, parse_args
from telemetry.settings import REPO_ROOT
from telemetry import topics


def prefixes(*argv: str, env: dict[str, str] | None = None, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    a = parse_args(list(argv))
    ddl = kafka_sink_ddl("usage_sink", topics.clickhouse_topic("usage_10s"), "k:9092", "record STRING", deployment_name(a), "raw")
    return re.search(r"'sink.transactional-id-prefix' = '([^']+)'", ddl).group(1)


def test_two_deployments_never_share_transactional_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELEMETRY_DEPLOYMENT", raising=False)
    default = prefixes(monkeypatch=monkeypatch)
    assert default == "telemetry-job.usage_sink"  # the consumer group names the deployment by default
    other_group = prefixes("--group-id", "staging-job", monkeypatch=monkeypatch)
    named = prefixes("--deployment", "prod.telemetry-job", monkeypatch=monkeypatch)
    from_env = prefixes(env={"TELEMETRY_DEPLOYMENT": "eu.telemetry-job"}, monkeypatch=monkeypatch)
    assert len({default, other_group, named, from_env}) == 4
    assert (named, from_env) == ("prod.telemetry-job.usage_sink", "eu.telemetry-job.usage_sink")


@pytest.mark.parametrize("argv, message", [
    (["--deployment", "prod telemetry"], "--deployment 'prod telemetry'"),
    (["--deployment", "x" * 201], "use 1-200 letters"),
    (["--max-clock-skew-ms", "-1"], "--max-clock-skew-ms -1: must be 0 or more"),
])
def test_a_bad_value_is_refused_before_the_job_starts(argv: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "jobs.telemetry_job", *argv], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr, done.stderr
