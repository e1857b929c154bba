"""The streaming job: Kafka -> validate / route (one Python hop) -> DLQ, dedup, raw Parquet lake, audit rows,
and usage deltas per event-time window, all written exactly-once (Kafka transactions, checkpointed files).

ClickHouse rows leave through internal Kafka topics (telemetry/topics.py LOADER_TOPICS) that the loader inserts
exactly once; PyFlink offers a Python sink no checkpoint hook, so this is the only exactly-once path.
Submit with `flink run -py jobs/telemetry_job.py -pyfs <repo>` or run locally with `python -m jobs.telemetry_job`.
"""

from __future__ import annotations

import argparse
import os
import sys

from pyflink.common import Configuration, Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import Schema, StreamTableEnvironment

from jobs.runtime import base_configuration, local_run, local_s3
from jobs.tables import Sinks, lake_ddl, single, summed
from pipeline import routing, rows
from pipeline.chtime import SQL_PATTERN, datetime_sql
from pipeline.enrichment.queries import load_config
from pipeline.lifecycle import LifecycleConfig
from pipeline.rows import USAGE_SUMS
from telemetry import __version__, topics
from telemetry import settings as cfg
from telemetry.checkpoints import NoCheckpointError, latest_checkpoint
from udfs.enrichment import PrometheusEnrichment, add_enrichment
from udfs.ledger import DELTA_TAG, FactLedger, fact_key
from udfs.lifecycle import FACT_ROW_TYPE, JOIN_DLQ_TAG, LifecycleJoin
from udfs.python_env import expose_site_packages
from udfs.route import DLQ_TAG, TASK_TAG, WIDE_ROW_TYPE, Route, task_key

def parse_args(argv: list[str]) -> argparse.Namespace:
    s = cfg.load()
    p = argparse.ArgumentParser(prog="telemetry_job", description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default=s.kafka_direct_url, help="Kafka bootstrap servers (KAFKA_DIRECT_URL)")
    p.add_argument("--group-id", default="telemetry-job", help="Kafka consumer group (default telemetry-job)")
    p.add_argument("--startup-mode", default="group-offsets",
                   choices=["earliest-offset", "latest-offset", "group-offsets", "timestamp"],
                   help="where to start without a checkpoint; group-offsets falls back to earliest")
    p.add_argument("--startup-timestamp-ms", type=int, default=0,
                   help="with --startup-mode timestamp: the first records with a Kafka timestamp at or after this")
    p.add_argument("--topics", default=",".join(topics.SOURCE_TOPICS), help="comma-separated source topics")
    p.add_argument("--lake-uri", default=s.effective_lake_uri, help="raw lake root: a path or s3://bucket/prefix")
    p.add_argument("--checkpoint-interval-ms", type=int, default=2000,
                   help="checkpoint interval; Kafka transactions and lake files commit on each (default 2000)")
    p.add_argument("--checkpoint-dir", default=(s.state_dir / "flink" / "job-checkpoints").as_uri(),
                   help="checkpoint storage URI (file:// or s3://); default under the state dir")
    p.add_argument("--out-of-orderness-ms", type=int, default=5000, help="watermark delay behind the newest ts")
    p.add_argument("--idle-timeout-ms", type=int, default=30_000,
                   help="a source partition without records for this long stops holding the watermark back "
                        "(default 30000). With services.heartbeat running beside the job no partition is ever "
                        "quiet, and this is only a safety net for when heartbeats stop. Too short and a partition "
                        "the consumer has not reached yet while it catches up on a backlog counts as idle, so its "
                        "events arrive late; too long and, without heartbeats, a topic that falls quiet delays "
                        "windows by up to this much")
    p.add_argument("--max-clock-skew-ms", type=int, default=300_000,
                   help="a record whose ts or Kafka timestamp lies further ahead of the job's clock than this goes to "
                        "the DLQ (reason future_timestamp) instead of waiting unseen for its time (default 5 min)")
    p.add_argument("--allowed-lateness-ms", type=int, default=600_000,
                   help="after a window closes by watermark, how long late events still correct it (default 10 min)")
    p.add_argument("--slice-ms", type=int, default=1000,
                   help="window deltas are emitted per slice of record time this long, when the watermark passes "
                        "it (default 1000; must divide 10000)")
    p.add_argument("--state-backend", choices=["hashmap", "rocksdb"], default="rocksdb",
                   help="hashmap: state on the JVM heap, every checkpoint a full copy of it; rocksdb: state on local "
                        "disk, checkpoints incremental: only what changed (default rocksdb)")
    p.add_argument("--dedup-ttl-ms", type=int, default=600_000, help="how long an event_id is remembered (default 10 min)")
    p.add_argument("--bounded", action="store_true",
                   help="stop at the offsets that are latest at start (tests, catch-up runs); default: run forever. "
                        "Restored from a checkpoint, a bounded run never ends (FLINK-31006): restart unbounded")
    p.add_argument("--prometheus-url", default=s.prometheus_url,
                   help="Prometheus for task enrichment (PROMETHEUS_URL); empty turns enrichment off")
    p.add_argument("--enrichment-timeout-s", type=float, default=30.0,
                   help="after this a task fact is written with enrichment_status unavailable")
    p.add_argument("--orphan-timeout-ms", type=int, default=30 * 60_000,
                   help="event time without an end after which a task attempt is written as orphaned")
    p.add_argument("--restore-from", default="",
                   help="start from this checkpoint or savepoint path; 'latest': the newest completed checkpoint "
                        "under --checkpoint-dir (a local run restarted after a crash)")
    p.add_argument("--rest-port", type=int, default=0,
                   help="local runs: the mini-cluster's REST API and web UI on 127.0.0.1:PORT, e.g. to stop the "
                        "job with a savepoint (default 0: any free port)")
    p.add_argument("--flamegraph", action="store_true",
                   help="local runs: turn on the Flink UI's flame graphs (CPU profiles per operator)")
    p.add_argument("--no-restart", action="store_true", help="fail at the first error instead of restarting (tests)")
    p.add_argument("--parallelism", type=int, default=0,
                   help="job parallelism; default: the cluster's parallelism.default (1 for a local run)")
    p.add_argument("--deployment", default=s.deployment or "",
                   help="names this deployment of the job (letters, digits, . _ -); the Kafka sinks' transactional ids "
                        "start with it, so two deployments on one Kafka cluster never fence each other's "
                        "transactions. Keep it across restarts and upgrades of one deployment. Default: "
                        "TELEMETRY_DEPLOYMENT, else the consumer group (--group-id)")
    p.add_argument("--job-version", default=__version__)
    p.add_argument("--jars", default="", help="extra jar URLs (file://...;...) for a local run outside the session cluster")
    return p.parse_args(argv)


def deployment_name(args: argparse.Namespace) -> str:
    name = args.deployment or args.group_id
    if not cfg.DEPLOYMENT_NAME.fullmatch(name):
        raise cfg.SettingsError(f"--deployment {name!r} (or the consumer group it defaults to): use 1-200 letters, "
                                "digits, '.', '_' or '-'")
    return name


def build(env: StreamExecutionEnvironment, t_env: StreamTableEnvironment, args: argparse.Namespace) -> None:
    out_of_order_s = args.out_of_orderness_ms / 1000
    t_env.execute_sql(f"""CREATE TEMPORARY TABLE kafka_in (
        payload BYTES,
        topic STRING METADATA FROM 'topic' VIRTUAL,
        `partition` INT METADATA FROM 'partition' VIRTUAL,
        `offset` BIGINT METADATA FROM 'offset' VIRTUAL,
        kafka_ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
        headers MAP<STRING, BYTES> METADATA FROM 'headers' VIRTUAL,
        WATERMARK FOR kafka_ts AS kafka_ts - INTERVAL '{out_of_order_s}' SECOND
    ) WITH (
        'connector' = 'kafka', 'topic' = '{args.topics.replace(",", ";")}',
        'properties.bootstrap.servers' = '{args.bootstrap}', 'properties.group.id' = '{args.group_id}',
        'properties.isolation.level' = 'read_committed',
        'scan.startup.mode' = '{args.startup_mode}', 'properties.auto.offset.reset' = 'earliest',
        {f"'scan.startup.timestamp-millis' = '{args.startup_timestamp_ms}'," if args.startup_mode == "timestamp" else ""}
        {"'scan.bounded.mode' = 'latest-offset'," if args.bounded else ""}
        'format' = 'raw')""")
    # kafka_ts stays in the row so to_data_stream stamps each element with it (Route reads ctx.timestamp()).
    # Heartbeats (services/heartbeat/__main__.py) have moved their partition's watermark in the source; here they leave.
    raw = t_env.to_data_stream(t_env.sql_query(
        "SELECT topic, `partition`, `offset`, payload, kafka_ts FROM kafka_in "
        f"WHERE headers['{topics.HEARTBEAT_HEADER}'] IS NULL"))
    routed = (raw.process(Route(args.job_version, args.allowed_lateness_ms, args.slice_ms, args.max_clock_skew_ms),
                          output_type=WIDE_ROW_TYPE)
              .name("validate and route").uid("validate-route"))

    valid = t_env.from_data_stream(
        routed,
        Schema.new_builder()
        .column_by_metadata("rowtime", "TIMESTAMP_LTZ(3)")
        .column_by_expression("pt", "PROCTIME()")
        .watermark("rowtime", "SOURCE_WATERMARK()")
        .build())
    t_env.create_temporary_view("valid", valid)
    # nth: which delivery of its event_id a record is (remembered for --dedup-ttl-ms): 1 is the event, the rest
    # are duplicates, counted in the ingest counters and otherwise ignored.
    t_env.create_temporary_view("deliveries", t_env.sql_query(
        "SELECT *, COUNT(*) OVER (PARTITION BY event_id ORDER BY pt "
        "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS nth FROM `valid`"))
    t_env.create_temporary_view("unique_events", t_env.sql_query("SELECT * FROM deliveries WHERE nth = 1"))
    dlq = routed.get_side_output(DLQ_TAG)
    t_env.create_temporary_view("dlq_rows", t_env.from_data_stream(dlq))

    sinks = Sinks(t_env, args.bootstrap, args.deployment)
    add_usage(sinks, args)
    add_ingest_counters(sinks, args)
    add_user_usage(sinks, args)
    join_dlq = add_lifecycle(sinks, routed.get_side_output(TASK_TAG), args)
    # Events the lifecycle join failed on were counted valid on the way in: DLQ records, not ingest counts.
    t_env.create_temporary_view("join_dlq_rows", t_env.from_data_stream(join_dlq))
    sinks.records("dlq_sink", topics.DLQ_TOPIC, "SELECT record FROM dlq_rows UNION ALL SELECT record FROM join_dlq_rows")

    sinks.rows("late_sink", rows.LATE, f"""
        SELECT event_id, topic, tenant_id, {datetime_sql("ts_ms")}, window_start_ms / 1000,
               DATE_FORMAT(COALESCE(CURRENT_WATERMARK(rowtime), rowtime), '{SQL_PATTERN}'), event_json
        FROM unique_events WHERE lane = {routing.LATE}""")

    audit_topics = ", ".join(f"'{t}'" for t in sorted(routing.AUDIT_TOPICS))
    sinks.rows("audit_sink", rows.AUDIT, f"""
        SELECT event_id, {datetime_sql("ts_ms")}, topic, event_name, tenant_id, department_id, project_id, user_id,
               node_id, host_name, subject, action, resource, decision, policy_id, event_json
        FROM unique_events WHERE topic IN ({audit_topics})""")

    # Every valid event, late ones too: the lake is what a backfill replays.
    t_env.execute_sql(lake_ddl("lake", args.lake_uri))
    sinks.statements.add_insert_sql("""INSERT INTO lake
        SELECT event_id, event_name, CAST(TO_TIMESTAMP_LTZ(ts_ms, 3) AS TIMESTAMP(3)), tenant_id, department_id,
               project_id, user_id, node_id, host_name, vm_type, event_json, topic,
               DATE_FORMAT(TO_TIMESTAMP_LTZ(ts_ms, 3), 'yyyy-MM-dd'), DATE_FORMAT(TO_TIMESTAMP_LTZ(ts_ms, 3), 'HH')
        FROM unique_events""")
    sinks.statements.attach_as_datastream()


def add_usage(sinks: Sinks, args: argparse.Namespace) -> None:
    """usage_10s deltas. Per slice of record time, what the slice's on-time events add to each event-time window
    and key; slices fire by watermark, so a bounded run's end (the final watermark) fires them all, and each delta
    is written once: ClickHouse sums them exactly. A correction (its slice had fired) is one delta of its own; a
    late event adds only to late_events."""
    dims = ", ".join(routing.DIMS)
    key_and_sums = ("window_start", *routing.DIMS, *USAGE_SUMS, "latency_hist", "errors_by_type")
    sums = ",\n        ".join(f"{summed(m)} AS {m}" for m in USAGE_SUMS)
    sinks.rows("usage_sink", rows.USAGE, f"""
        SELECT window_start_ms / 1000, {dims},
        {sums},
        COLLECT(CAST(latency_bucket AS STRING)) FILTER (WHERE latency_bucket IS NOT NULL),
        COLLECT(error_type) FILTER (WHERE error_type IS NOT NULL)
        FROM TABLE(TUMBLE(TABLE unique_events, DESCRIPTOR(rowtime), INTERVAL '{args.slice_ms / 1000}' SECOND))
        WHERE lane = {routing.ON_TIME}
        GROUP BY window_start, window_end, window_start_ms, {dims}""",
               *key_and_sums, latency_hist="MULTISET<STRING>", errors_by_type="MULTISET<STRING>")
    sinks.rows("correction_sink", rows.USAGE, f"""
        SELECT window_start_ms / 1000, {dims}, {", ".join(single(m) for m in USAGE_SUMS)},
        CASE WHEN latency_bucket IS NULL THEN CAST(NULL AS MAP<STRING, BIGINT>)
             ELSE MAP[CAST(latency_bucket AS STRING), CAST(1 AS BIGINT)] END,
        CASE WHEN error_type IS NULL THEN CAST(NULL AS MAP<STRING, BIGINT>) ELSE MAP[error_type, CAST(1 AS BIGINT)] END
        FROM unique_events WHERE lane = {routing.CORRECTION}""", *key_and_sums)
    sinks.rows("late_usage_sink", rows.USAGE, f"""
        SELECT window_start_ms / 1000, {dims}, CAST(1 AS BIGINT) FROM unique_events WHERE lane = {routing.LATE}""",
               "window_start", *routing.DIMS, "late_events")


def add_ingest_counters(sinks: Sinks, args: argparse.Namespace) -> None:
    """ingest_stats_10s deltas per event-time window and source topic: consumed = valid + dlq + duplicates, and
    late counts the valid events past the allowed lateness. On-time deliveries are counted per slice; corrections,
    late events and rejected records (windowed by their Kafka timestamp) one row each."""
    sinks.rows("ingest_sink", rows.INGEST, f"""
        SELECT window_start_ms / 1000, topic, COUNT(*), SUM(IF(nth = 1, 1, 0)), 0, SUM(IF(nth > 1, 1, 0)), 0
        FROM TABLE(TUMBLE(TABLE deliveries, DESCRIPTOR(rowtime), INTERVAL '{args.slice_ms / 1000}' SECOND))
        WHERE lane = {routing.ON_TIME}
        GROUP BY window_start, window_end, window_start_ms, topic
        UNION ALL
        SELECT window_start_ms / 1000, topic, 1, IF(nth = 1, 1, 0), 0, IF(nth > 1, 1, 0),
               IF(nth = 1 AND lane = {routing.LATE}, 1, 0)
        FROM deliveries WHERE lane <> {routing.ON_TIME}
        UNION ALL
        SELECT window_start_ms / 1000, topic, 1, 0, 1, 0, 0 FROM dlq_rows""")


def add_user_usage(sinks: Sinks, args: argparse.Namespace) -> None:
    """Running usage per user and UTC day of event time on telemetry.usage.v1 (compacted, keyed), for the quota
    service: each update carries the day's totals so far, so the newest record of a key is its usage. Late events
    stay out, as in usage_10s. Upserts are idempotent, so at-least-once delivery is exact here. Money is a plain
    decimal number (up to six decimals): read it as a decimal, not a double."""
    sinks.t_env.execute_sql(f"""CREATE TEMPORARY TABLE user_usage (
        tenant_id STRING, department_id STRING, user_id STRING, `day` STRING, events BIGINT,
        {rows.USAGE.sql(*USAGE_SUMS)},
        PRIMARY KEY (tenant_id, department_id, user_id, `day`) NOT ENFORCED
    ) WITH (
        'connector' = 'upsert-kafka', 'topic' = '{topics.USAGE_TOPIC}', 'properties.bootstrap.servers' = '{args.bootstrap}',
        'key.format' = 'json', 'value.format' = 'json', 'value.json.encode.decimal-as-plain-number' = 'true')""")
    # Summed per slice first, as usage_10s is (a slice holds far fewer users than events), corrections one by one;
    # then the running sum per key emits one update per slice and user instead of one per event. Money stays in
    # micro-units (DECIMAL(38, 0)) until the day's total.
    def micros(m: str) -> str:
        return f"CAST({m} AS DECIMAL(38, 0))" if m in routing.MONEY_METRICS else m
    sums = ", ".join(f"SUM({micros(m)}) AS {m}" for m in USAGE_SUMS)
    metrics = ", ".join(micros(m) for m in USAGE_SUMS)
    day = "DATE_FORMAT(TO_TIMESTAMP_LTZ(window_start_ms, 3), 'yyyy-MM-dd')"
    sinks.t_env.create_temporary_view("user_slices", sinks.t_env.sql_query(f"""
        SELECT tenant_id, department_id, user_id, {day} AS `day`, COUNT(*) AS events, {sums}
        FROM TABLE(TUMBLE(TABLE unique_events, DESCRIPTOR(rowtime), INTERVAL '{args.slice_ms / 1000}' SECOND))
        WHERE lane = {routing.ON_TIME}
        GROUP BY window_start, window_end, tenant_id, department_id, user_id, {day}
        UNION ALL
        SELECT tenant_id, department_id, user_id, {day}, CAST(1 AS BIGINT), {metrics}
        FROM unique_events WHERE lane = {routing.CORRECTION}"""))
    # The global state TTL (--dedup-ttl-ms) would forget a quiet user's day: this aggregate keeps keys two days.
    sinks.statements.add_insert_sql(f"""INSERT INTO user_usage
        SELECT /*+ STATE_TTL('user_slices' = '2 d') */ tenant_id, department_id, user_id, `day`,
               SUM(events), {", ".join(summed(m) for m in USAGE_SUMS)}
        FROM user_slices GROUP BY tenant_id, department_id, user_id, `day`""")


def add_lifecycle(sinks: Sinks, task_events: DataStream, args: argparse.Namespace) -> DataStream:
    """Task events -> lifecycle join keyed by task_id -> Prometheus enrichment (the one process-mode operator)
    -> the ledger keyed by attempt -> task_facts rows (every revision), and the usage deltas that keep usage_10s
    equal to each attempt's counted revision. Returns the DLQ rows of events the join failed on."""
    t_env = sinks.t_env
    rules = LifecycleConfig(orphan_timeout_ms=args.orphan_timeout_ms, allowed_lateness_ms=args.allowed_lateness_ms,
                            job_version=args.job_version)
    joined = (task_events.key_by(task_key, key_type=Types.STRING())
              .process(LifecycleJoin(rules), output_type=FACT_ROW_TYPE)
              .name("lifecycle join").uid("lifecycle-join"))
    facts = joined
    if args.prometheus_url:
        config = load_config(os.environ, prometheus_url=args.prometheus_url)
        facts = add_enrichment(facts, PrometheusEnrichment(config), timeout_s=args.enrichment_timeout_s)
        facts = facts.name("prometheus enrichment").uid("prometheus-enrichment")
    ledger = (facts.key_by(fact_key, key_type=Types.STRING())
            .process(FactLedger(args.allowed_lateness_ms), output_type=Types.STRING())
            .name("task usage ledger").uid("task-usage-ledger"))
    one_string = Schema.new_builder().column("f0", "STRING").build()
    t_env.create_temporary_view("task_fact_rows", t_env.from_data_stream(ledger, one_string))
    t_env.create_temporary_view("task_deltas", t_env.from_data_stream(ledger.get_side_output(DELTA_TAG), one_string))
    sinks.records("tasks_sink", topics.clickhouse_topic(rows.TASKS.table), "SELECT f0 FROM task_fact_rows")
    sinks.records("task_usage_sink", topics.clickhouse_topic(rows.USAGE.table), "SELECT f0 FROM task_deltas")
    return joined.get_side_output(JOIN_DLQ_TAG)


def configure(args: argparse.Namespace, local: bool) -> Configuration:
    """The streaming job's Flink settings: checkpoints, state, restarts, and for a local run its REST endpoint."""
    conf = base_configuration(args.jars)
    if local:
        conf.set_string("rest.address", "127.0.0.1")
        conf.set_string("rest.bind-address", "127.0.0.1")
        conf.set_string("rest.port", str(args.rest_port))
        conf.set_string("rest.flamegraph.enabled", str(args.flamegraph).lower())
    if args.restore_from:
        restore = str(latest_checkpoint(args.checkpoint_dir)) if args.restore_from == "latest" else args.restore_from
        print(f"telemetry_job: restoring from {restore}", flush=True)
        conf.set_string("execution.state-recovery.path", restore)
    conf.set_string("table.exec.source.idle-timeout", f"{args.idle_timeout_ms} ms")
    conf.set_string("table.exec.state.ttl", f"{args.dedup_ttl_ms} ms")
    conf.set_string("execution.checkpointing.interval", f"{args.checkpoint_interval_ms} ms")
    conf.set_string("execution.checkpointing.mode", "EXACTLY_ONCE")
    conf.set_string("execution.checkpointing.storage", "filesystem")
    conf.set_string("state.backend.type", args.state_backend)
    if args.state_backend == "rocksdb":
        conf.set_string("execution.checkpointing.incremental", "true")
    conf.set_string("execution.checkpointing.dir", args.checkpoint_dir)
    # Kept when the job is cancelled or dies, so it can be restarted from its latest one (--restore-from).
    conf.set_string("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION")
    if args.no_restart:
        conf.set_string("restart-strategy.type", "none")
    return conf


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        args.deployment = deployment_name(args)
        if args.max_clock_skew_ms < 0:
            raise cfg.SettingsError(f"--max-clock-skew-ms {args.max_clock_skew_ms}: must be 0 or more")
    except cfg.SettingsError as exc:
        print(f"telemetry_job: {exc}", file=sys.stderr)
        return 2
    expose_site_packages()
    # Before anything touches the JVM: the first Java object starts it, with the environment of that moment.
    local = local_run()
    try:
        if local:
            local_s3(args.lake_uri, args.checkpoint_dir)
        conf = configure(args, local)
    except cfg.SettingsError as exc:
        print(f"telemetry_job: an s3:// lake or checkpoint directory needs S3 credentials: {exc}", file=sys.stderr)
        return 2
    except (NoCheckpointError, ValueError) as exc:
        print(f"telemetry_job: --restore-from latest: {exc}", file=sys.stderr)
        return 2
    if local and args.rest_port:
        print(f"telemetry_job: Flink UI of this local run: http://127.0.0.1:{args.rest_port}", flush=True)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    if args.parallelism or local:
        env.set_parallelism(args.parallelism or 1)
    t_env = StreamTableEnvironment.create(env)
    build(env, t_env, args)
    env.execute("telemetry")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
