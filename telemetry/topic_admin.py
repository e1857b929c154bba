"""Bring a Kafka cluster's topics in line with the catalogue (telemetry/topics.py): create the missing ones with their
partition count and settings, grow those with fewer partitions, and set catalogue settings an existing topic lacks.

The local stack, docker-compose's kafka-topics service and the Kubernetes setup Job all run this:
`python -m telemetry.topic_admin [--replication-factor N]`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                   NewTopic, ResourceType)

from telemetry import settings as cfg
from telemetry.topics import CATALOGUE, Topic

TIMEOUT_S = 30
_quiet = logging.getLogger("telemetry.topic_admin.librdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def admin_client(bootstrap: str, **config: Any) -> AdminClient:
    """An AdminClient that keeps librdkafka's per-connection log lines to itself (a broker that is not up yet is
    reported once, by the caller's error)."""
    return AdminClient({"bootstrap.servers": bootstrap, **config}, logger=_quiet)


def _wait(futures: dict) -> None:
    for future in futures.values():
        future.result(timeout=TIMEOUT_S)


def _differing_settings(admin: AdminClient, topics: list[Topic]) -> dict[str, dict[str, str]]:
    """topic -> the catalogue settings whose current value on the cluster is another one."""
    if not topics:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, t.name) for t in topics]
    current = {r.name: f.result(timeout=TIMEOUT_S) for r, f in admin.describe_configs(resources).items()}
    out = {}
    for t in topics:
        wrong = {k: v for k, v in t.config.items() if k not in current[t.name] or current[t.name][k].value != v}
        if wrong:
            out[t.name] = wrong
    return out


def provision(admin: AdminClient, replication_factor: int = 1) -> str:
    """Apply the catalogue to the cluster behind admin; returns one line saying what changed."""
    existing = {name: len(meta.partitions) for name, meta in admin.list_topics(timeout=TIMEOUT_S).topics.items()}
    missing = [t for t in CATALOGUE if t.name not in existing]
    short = [t for t in CATALOGUE if t.name in existing and existing[t.name] < t.partitions]
    larger = [t for t in CATALOGUE if t.name in existing and existing[t.name] > t.partitions]
    if missing:
        _wait(admin.create_topics([NewTopic(t.name, num_partitions=t.partitions, replication_factor=replication_factor,
                                            config=dict(t.config)) for t in missing]))
    if short:
        _wait(admin.create_partitions([NewPartitions(t.name, t.partitions) for t in short]))
    # A topic created before its catalogue entry had settings (or changed by hand) gets them now.
    drifted = _differing_settings(admin, [t for t in CATALOGUE if t.config and t.name in existing])
    if drifted:
        _wait(admin.incremental_alter_configs([
            ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in wrong.items()])
            for name, wrong in drifted.items()]))
    parts = [f"{len(CATALOGUE) - len(missing)} of {len(CATALOGUE)} catalogue topics already present"]
    if missing:
        parts.append(f"created {', '.join(t.name for t in missing)}")
    if short:
        # growing moves keys to other partitions: per-key order holds only from here on
        parts.append("grew " + ", ".join(f"{t.name} {existing[t.name]} -> {t.partitions}" for t in short) + " partitions")
    if drifted:
        parts.append("set " + ", ".join(f"{name} {k}={v}" for name, wrong in drifted.items() for k, v in wrong.items()))
    if larger:
        parts.append(
            "WARNING: more partitions than the catalogue (Kafka cannot shrink; delete the topic to reset): "
            + ", ".join(f"{t.name} has {existing[t.name]}, catalogue {t.partitions}" for t in larger)
        )
    return "topics: " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m telemetry.topic_admin", description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default: KAFKA_DIRECT_URL)")
    p.add_argument("--replication-factor", type=int, default=1,
                   help="replicas of each topic created (default 1, a single broker; 3 on a production cluster)")
    a = p.parse_args(argv)
    if a.replication_factor < 1:
        p.error(f"--replication-factor {a.replication_factor}: must be at least 1")
    try:
        bootstrap = a.bootstrap or cfg.load().kafka_direct_url
    except cfg.SettingsError as exc:
        print(f"topic_admin: {exc}", file=sys.stderr)
        return 2
    try:
        print(provision(admin_client(bootstrap), a.replication_factor), flush=True)
    except (KafkaException, TimeoutError) as exc:
        print(f"topic_admin: Kafka at {bootstrap}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
