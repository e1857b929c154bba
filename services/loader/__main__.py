"""`python -m services.loader`: load the rows the job commits to Kafka into ClickHouse, exactly once."""

from __future__ import annotations

import argparse
import re
import socket
import sys

from clickhouse_connect.driver.exceptions import ClickHouseError
from confluent_kafka import KafkaException

from telemetry import settings
from services.loader.runner import Loader, LoaderConfig, LoaderError, install_signal_handlers
from telemetry.topics import DLQ_TOPIC, LOADER_TOPICS

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_topics(specs: list[str] | None) -> dict[str, str]:
    """TOPIC (one of LOADER_TOPICS) or TOPIC=TABLE items -> {topic: table}; all of LOADER_TOPICS by default."""
    if not specs:
        return dict(LOADER_TOPICS)
    out: dict[str, str] = {}
    for spec in specs:
        topic, _, table = spec.partition("=")
        if not table:
            if topic not in LOADER_TOPICS:
                raise settings.SettingsError(f"--topics {topic}: not a loader topic ({', '.join(LOADER_TOPICS)}); "
                                             "name the table as TOPIC=TABLE to load another topic")
            table = LOADER_TOPICS[topic]
        if not _IDENTIFIER.fullmatch(table):
            raise settings.SettingsError(f"--topics {spec}: table {table!r} must be a plain identifier")
        out[topic] = table
    return out


def build_parser(defaults: settings.Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.loader",
        description=(
            "Insert the JSONEachRow records the Flink job commits to Kafka into ClickHouse, each exactly once. "
            "Reads read_committed (only committed transactions), batches per partition by size and time, records "
            "each batch's offset range in <database>.loader_progress before inserting it with "
            "insert_deduplication_token=topic:partition:first:last, and on start resumes from loader_progress "
            "(an interrupted batch is read and inserted again; ClickHouse drops it if it had gone in). "
            "Rows ClickHouse rejects go to the DLQ topic with reason clickhouse_rejected (more than "
            "100 in a batch, or any in the DLQ topic itself, stop that partition), or with --on-reject stop "
            "stop their partition. Prints rows/s per table every few seconds; SIGTERM finishes the batches in "
            "hand and exits. Environment: KAFKA_DIRECT_URL, CLICKHOUSE_URL, CLICKHOUSE_DATABASE, CLICKHOUSE_USER, "
            "CLICKHOUSE_PASSWORD and the LOADER_* variables (see the README). Exit status: 0 done, 1 a partition "
            "stopped or the loader failed, 2 bad configuration."
        ),
    )
    topics = ", ".join(f"{t} -> {table}" for t, table in LOADER_TOPICS.items())
    parser.add_argument("--once", action="store_true", help="exit once every partition is loaded up to its end (tests, the demo, backfills)")
    parser.add_argument("--topics", nargs="+", metavar="TOPIC[=TABLE]",
                        help=f"topics to load (default: all of {topics}); TOPIC=TABLE loads any topic into a table")
    parser.add_argument("--dlq-topic", default=DLQ_TOPIC, help=f"where rejected rows go (default: {DLQ_TOPIC})")
    parser.add_argument("--database", default=defaults.clickhouse_database, help=f"ClickHouse database (default: CLICKHOUSE_DATABASE or {defaults.clickhouse_database})")
    parser.add_argument("--group-id", default=defaults.loader_group_id, help=f"Kafka consumer group (default: LOADER_GROUP_ID or {defaults.loader_group_id})")
    parser.add_argument("--instance-id", default=defaults.loader_instance_id or socket.gethostname(),
                        help="static consumer group member id; a restart with the same id gets its partitions back at once, "
                        "two loaders running at once need different ids (default: LOADER_INSTANCE_ID or the host name)")
    parser.add_argument("--batch-rows", type=int, default=defaults.loader_batch_rows, help=f"most rows per insert (default: LOADER_BATCH_ROWS or {defaults.loader_batch_rows})")
    parser.add_argument("--batch-ms", type=int, default=defaults.loader_batch_ms, help=f"longest a batch waits for more rows, ms (default: LOADER_BATCH_MS or {defaults.loader_batch_ms})")
    parser.add_argument("--metrics-port", type=int, default=defaults.loader_metrics_port,
                        help=f"Prometheus /metrics port, 0 for any free port (default: LOADER_METRICS_PORT or {defaults.loader_metrics_port})")
    parser.add_argument("--metrics-host", default=defaults.loader_metrics_host,
                        help=f"address /metrics binds to (default: LOADER_METRICS_HOST or {defaults.loader_metrics_host})")
    parser.add_argument("--on-reject", choices=("dlq", "stop"), default=defaults.loader_on_reject,
                        help=f"what a row ClickHouse rejects does (default: LOADER_ON_REJECT or {defaults.loader_on_reject})")
    parser.add_argument("--progress-interval", type=float, default=5.0, metavar="SECONDS", help="seconds between progress lines (default: 5)")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        config = settings.load()
    except settings.SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    args = build_parser(config).parse_args(argv)
    try:
        topics = parse_topics(args.topics)
        if not 1 <= args.batch_rows <= 1_000_000 or args.batch_ms < 1 or not 0 <= args.metrics_port <= 65535:
            raise settings.SettingsError("--batch-rows must be 1-1000000, --batch-ms at least 1, --metrics-port 0-65535")
        if not _IDENTIFIER.fullmatch(args.database):
            raise settings.SettingsError(f"--database {args.database!r} must be a plain identifier")
    except settings.SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    user, password = config.clickhouse_login()
    cfg = LoaderConfig(
        bootstrap_servers=config.kafka_direct_url,
        clickhouse_url=config.clickhouse_url,
        clickhouse_user=user,
        clickhouse_password=password,
        database=args.database,
        group_id=args.group_id,
        instance_id=args.instance_id,
        topics=topics,
        dlq_topic=args.dlq_topic,
        batch_rows=args.batch_rows,
        batch_ms=args.batch_ms,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        on_reject=args.on_reject,
        once=args.once,
        progress_interval_s=args.progress_interval,
    )
    try:
        loader = Loader(cfg)
        install_signal_handlers(loader)
        return loader.run()
    except (LoaderError, ClickHouseError, KafkaException, OSError) as exc:
        print(f"loader: error: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
