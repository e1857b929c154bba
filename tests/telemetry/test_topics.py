"""The topic catalogue covers every topic the seeds and the issue name, each once, with a family where it carries events."""

import pytest

from telemetry import topics

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
