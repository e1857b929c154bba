"""telemetry/topic_admin.py against the test stack's real broker: catalogue settings on created topics, drift put
right, and the CLI's errors."""

from __future__ import annotations

import subprocess
import sys

from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from telemetry import topic_admin, topics
from telemetry.settings import REPO_ROOT
from tests.support.polling import eventually


def cleanup_policy(admin: AdminClient, topic: str) -> str:
    [future] = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
    return future.result(timeout=30)["cleanup.policy"].value


def test_the_usage_topic_is_compacted_and_drift_is_put_right(kafka_url: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_url})
    assert topics.BY_NAME[topics.USAGE_TOPIC].config == {"cleanup.policy": "compact"}
    assert cleanup_policy(admin, topics.USAGE_TOPIC) == "compact"  # as `stack up` created it
    # changed by hand (or created before the catalogue said compact): the next run sets it back
    [future] = admin.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, topics.USAGE_TOPIC, incremental_configs=[
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SET)])]).values()
    future.result(timeout=30)
    # the controller has it at once, the broker that answers describe_configs a moment later
    eventually(lambda: cleanup_policy(admin, topics.USAGE_TOPIC) == "delete", "the hand-made change")
    report = topic_admin.provision(admin)
    assert f"set {topics.USAGE_TOPIC} cleanup.policy=compact" in report, report
    eventually(lambda: cleanup_policy(admin, topics.USAGE_TOPIC) == "compact", "compaction set back")
    again = topic_admin.provision(admin)
    assert again == f"topics: {len(topics.CATALOGUE)} of {len(topics.CATALOGUE)} catalogue topics already present", again


def test_cli_reports_and_rejects_a_bad_replication_factor(kafka_url: str) -> None:
    run = [sys.executable, "-m", "telemetry.topic_admin", "--bootstrap", kafka_url]
    ok = subprocess.run(run, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert ok.returncode == 0 and "catalogue topics already present" in ok.stdout, ok.stdout + ok.stderr
    bad = subprocess.run([*run, "--replication-factor", "0"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert bad.returncode == 2 and "--replication-factor 0: must be at least 1" in bad.stderr, bad.stderr
