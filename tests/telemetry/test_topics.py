"""The topic catalogue covers every topic the seeds and the issue name, each once, with a family where it carries events."""

import pytest

from telemetry import topics
from telemetry.settings import REPO_ROOT

SEED_TOPICS = {"xumi_load", "xumi_task", "pbac_access", "pbac_politics", "pbac_service", "asset_access",
               "asset_transfer", "wkf_cpu", "wkf_gpu", "kuber_cpu", "kuber_gpu"}


def test_catalogue_has_seed_and_platform_topics():
    names = [t.name for t in topics.CATALOGUE]
    assert len(names) == len(set(names))
    assert SEED_TOPICS <= set(names)
    assert {"wkf_task", "telemetry.events.v1", "telemetry.dlq.v1", "telemetry.usage.v1"} <= set(names)


def test_source_topics_name_a_family_and_others_do_not():
    for t in topics.CATALOGUE:
        assert (t.family is not None) == (t.role is topics.Role.SOURCE), t
        assert (t.table is not None) == (t.role in (topics.Role.CLICKHOUSE, topics.Role.DLQ)), t
        assert t.partitions >= 1


def test_unknown_topic_error_lists_known_ones():
    with pytest.raises(KeyError, match="xumi_load"):
        topics.topic("nope")


def test_code_names_clickhouse_topics_only_through_the_catalogue():
    """The catalogue is the one place a ClickHouse topic's name is written: code and tests ask it by table."""
    names = [t.name for t in topics.CATALOGUE if t.role is topics.Role.CLICKHOUSE]
    spelled = []
    for folder in ("jobs", "udfs", "pipeline", "services", "dev", "telemetry", "tests", "benchmarks"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            if path == REPO_ROOT / "telemetry" / "topics.py":
                continue
            text = path.read_text()
            spelled += [f"{path.relative_to(REPO_ROOT)}: {n}" for n in names if n in text]
    assert names and not spelled
