"""The Prometheus reporter's filter (dev/stack/flink.py REPORTER_EXCLUDES) run through Flink's own filter code:
every Flink series a dashboard or alert reads is still exported, and the bulky series it is there for are not."""

from __future__ import annotations

import re

import pytest
from pyflink.java_gateway import get_gateway

from telemetry.settings import REPO_ROOT
from dev.stack.flink import REPORTER_EXCLUDES

# Logical scopes (and the job's own metric groups) as the reporter turns them into name prefixes, longest first so
# flink_taskmanager_job_task_operator_dlq_reason_x splits into its group's scope and the name x.
SCOPES = (
    "taskmanager.job.task.operator.dlq_reason",
    "taskmanager.job.task.operator.enrichment",
    "taskmanager.job.task.operator",
    "taskmanager.job.task",
    "taskmanager.job",
    "jobmanager.job",
)
USERS = [*sorted((REPO_ROOT / "monitoring" / "grafana" / "dashboards").glob("*.json")),
         REPO_ROOT / "monitoring" / "prometheus" / "alerts.yml"]


@pytest.fixture(scope="module")
def exported():
    """(logical scope, name) -> whether Flink's filter, configured as the reporter is, lets the metric through."""
    jvm = get_gateway().jvm
    conf = jvm.org.apache.flink.configuration.Configuration()
    # the reporter's own options (metrics.reporter.prom.*), as Flink hands them to the filter
    conf.setString("filter.excludes", ";".join(REPORTER_EXCLUDES))
    flink_filter = jvm.org.apache.flink.runtime.metrics.filter.DefaultReporterFilters.metricsFromConfiguration(conf)
    counter = jvm.org.apache.flink.metrics.SimpleCounter()
    meter = jvm.org.apache.flink.metrics.MeterView(counter)

    def passes(scope: str, name: str) -> bool:
        metric = meter if name.endswith("PerSecond") else counter
        return bool(flink_filter.filter(metric, name, scope))

    return passes


def split(series: str) -> tuple[str, str]:
    for scope in SCOPES:
        prefix = "flink_" + scope.replace(".", "_") + "_"
        if series.startswith(prefix):
            return scope, series.removeprefix(prefix) or "any"  # a regex prefix (dlq_reason_) names the group
    raise AssertionError(f"{series}: no known scope; add it to SCOPES")


def test_every_flink_series_the_dashboards_and_alerts_read_is_exported(exported):
    used = {name for path in USERS for name in re.findall(r"flink_[A-Za-z0-9_]+", path.read_text())}
    assert len(used) >= 10, used
    dropped = sorted(name for name in used if not exported(*split(name)))
    assert not dropped, f"REPORTER_EXCLUDES drops series that monitoring/ reads: {dropped}"


@pytest.mark.parametrize(("scope", "name"), [
    ("taskmanager.job.task.operator.KafkaSourceReader.topic.partition", "currentOffset"),
    ("taskmanager.job.task.operator.KafkaProducer", "record-send-rate"),
    ("taskmanager.job.task.operator.split.watermark", "currentWatermark"),
    ("taskmanager.job.task.operator", "numRecordsInPerSecond"),
    ("taskmanager.job.task.operator", "numBytesOut"),
])
def test_the_bulky_series_are_left_out(exported, scope: str, name: str):
    assert not exported(scope, name)
