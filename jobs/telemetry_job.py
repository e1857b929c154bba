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

import pyflink
from pyflink.common import Configuration, Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import Schema, StreamTableEnvironment

from pipeline import routing

from telemetry import __version__, topics
from telemetry import settings as cfg
from telemetry.checkpoints import NoCheckpointError, latest_checkpoint
from pipeline.enrichment.queries import load_config
from pipeline.lifecycle import LifecycleConfig
from udfs.enrichment import PrometheusEnrichment, add_enrichment
from udfs.ledger import DELTA_TAG, FactLedger, fact_key
from udfs.lifecycle import FACT_ROW_TYPE, JOIN_DLQ_TAG, LifecycleJoin
from udfs.python_env import expose_site_packages
from udfs.route import DLQ_TAG, TASK_TAG, WIDE_ROW_TYPE, Route

USAGE_SUMS = (*routing.INT_METRICS, *routing.FLOAT_METRICS, *routing.MONEY_METRICS)
# Credits and unit-seconds leave as exact decimals (ClickHouse's Decimal(38, 6), written as plain JSON numbers).
MONEY = "DECIMAL(38, 6)"
SUM_TYPES = {**{m: "BIGINT" for m in routing.INT_METRICS}, **{m: "DOUBLE" for m in routing.FLOAT_METRICS},
             **{m: MONEY for m in routing.MONEY_METRICS}}
SUM_COLUMNS = ", ".join(f"{m} {SUM_TYPES[m]}" for m in USAGE_SUMS)


def summed(m: str, when: str = "") -> str:
    """SQL: the sum of a usage metric over a group (of its rows matching `when`, for money). Money is summed as
    DECIMAL(38, 0) micro-units (a BIGINT sum could overflow: one record may carry 10^18 of them) and scaled to
    MONEY once per group."""
    if m in routing.MONEY_METRICS:
        value = f"CASE WHEN {when} THEN {m} END" if when else m
        return f"CAST(COALESCE(SUM(CAST({value} AS DECIMAL(38, 0))), 0) * 0.000001 AS {MONEY})"
    return f"SUM({m})"


def single(m: str) -> str:
    """SQL: one event's usage metric as the sink column holds it."""
    return f"CAST(COALESCE({m}, 0) * 0.000001 AS {MONEY})" if m in routing.MONEY_METRICS else m


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


def kafka_sink_ddl(name: str, topic: str, bootstrap: str, columns: str, deployment: str, fmt: str = "json") -> str:
    # Transactions commit on checkpoint; transaction.timeout.ms stays below the broker's 15 min maximum.
    return f"""CREATE TEMPORARY TABLE {name} ({columns}) WITH (
        'connector' = 'kafka', 'topic' = '{topic}', 'properties.bootstrap.servers' = '{bootstrap}',
        'format' = '{fmt}', {"'json.encode.decimal-as-plain-number' = 'true'," if fmt == "json" else ""}
        'sink.delivery-guarantee' = 'exactly-once',
        'sink.transactional-id-prefix' = '{transactional_id_prefix(deployment, name)}',
        'properties.transaction.timeout.ms' = '600000')"""


def transactional_id_prefix(deployment: str, sink: str) -> str:
    """Kafka transactional ids are cluster-wide: a producer that starts with another's id fences it. So each
    deployment's sinks get ids of their own, stable across its restarts (a restored sink aborts what its own
    prefix left open)."""
    return f"{deployment}.{sink}"


def deployment_name(a: argparse.Namespace) -> str:
    name = a.deployment or a.group_id
    if not cfg.DEPLOYMENT_NAME.fullmatch(name):
        raise cfg.SettingsError(f"--deployment {name!r} (or the consumer group it defaults to): use 1-200 letters, "
                                "digits, '.', '_' or '-'")
    return name


class Sinks:
    """The job's exactly-once Kafka sinks, each a table and one INSERT in the job's statement set. Each table
    has its own transactional id prefix, so one table takes one INSERT: union the rows of several sources."""

    def __init__(self, t_env: StreamTableEnvironment, bootstrap: str, deployment: str) -> None:
        self.t_env = t_env
        self.bootstrap = bootstrap
        self.deployment = deployment
        self.statements = t_env.create_statement_set()

    def add(self, name: str, topic: str, select: str, columns: str = "record STRING", fmt: str = "raw") -> None:
        self.t_env.execute_sql(kafka_sink_ddl(name, topic, self.bootstrap, columns, self.deployment, fmt))
        self.statements.add_insert_sql(f"INSERT INTO {name} {select}")


def ch_time(epoch_ms: str) -> str:
    """SQL: epoch ms as ClickHouse's DateTime64(3) text (what routing.ch_datetime makes in Python)."""
    return f"DATE_FORMAT(TO_TIMESTAMP_LTZ({epoch_ms}, 3), 'yyyy-MM-dd HH:mm:ss.SSS')"


def build(env: StreamExecutionEnvironment, t_env: StreamTableEnvironment, a: argparse.Namespace) -> None:
    out_of_order_s = a.out_of_orderness_ms / 1000
    t_env.execute_sql(f"""CREATE TEMPORARY TABLE kafka_in (
        payload BYTES,
        topic STRING METADATA FROM 'topic' VIRTUAL,
        `partition` INT METADATA FROM 'partition' VIRTUAL,
        `offset` BIGINT METADATA FROM 'offset' VIRTUAL,
        kafka_ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
        headers MAP<STRING, BYTES> METADATA FROM 'headers' VIRTUAL,
        WATERMARK FOR kafka_ts AS kafka_ts - INTERVAL '{out_of_order_s}' SECOND
    ) WITH (
        'connector' = 'kafka', 'topic' = '{a.topics.replace(",", ";")}',
        'properties.bootstrap.servers' = '{a.bootstrap}', 'properties.group.id' = '{a.group_id}',
        'properties.isolation.level' = 'read_committed',
        'scan.startup.mode' = '{a.startup_mode}', 'properties.auto.offset.reset' = 'earliest',
        {f"'scan.startup.timestamp-millis' = '{a.startup_timestamp_ms}'," if a.startup_mode == "timestamp" else ""}
        {"'scan.bounded.mode' = 'latest-offset'," if a.bounded else ""}
        'format' = 'raw')""")
    # kafka_ts stays in the row so to_data_stream stamps each element with it (Route reads ctx.timestamp()).
    # Heartbeats (services/heartbeat/__main__.py) have moved their partition's watermark in the source; here they leave.
    raw = t_env.to_data_stream(t_env.sql_query(
        "SELECT topic, `partition`, `offset`, payload, kafka_ts FROM kafka_in "
        f"WHERE headers['{topics.HEARTBEAT_HEADER}'] IS NULL"))
    routed = (raw.process(Route(a.job_version, a.allowed_lateness_ms, a.slice_ms, a.max_clock_skew_ms),
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

    sinks = Sinks(t_env, a.bootstrap, a.deployment)
    add_usage(sinks, a)
    add_ingest_counters(sinks, a)
    add_user_usage(sinks, a)
    join_dlq = add_lifecycle(sinks, routed.get_side_output(TASK_TAG), a)
    # Events the lifecycle join failed on were counted valid on the way in: DLQ records, not ingest counts.
    t_env.create_temporary_view("join_dlq_rows", t_env.from_data_stream(join_dlq))
    sinks.add("dlq_sink", topics.DLQ_TOPIC, "SELECT record FROM dlq_rows UNION ALL SELECT record FROM join_dlq_rows")

    sinks.add("late_sink", "telemetry.ch.late.v1", f"""
        SELECT event_id, topic, tenant_id, {ch_time("ts_ms")}, window_start_ms / 1000,
               DATE_FORMAT(COALESCE(CURRENT_WATERMARK(rowtime), rowtime), 'yyyy-MM-dd HH:mm:ss.SSS'), event_json
        FROM unique_events WHERE lane = {routing.LATE}""",
              "event_id STRING, topic STRING, tenant_id STRING, ts STRING, window_start BIGINT, arrived_at STRING, "
              "payload STRING", fmt="json")

    audit_topics = ", ".join(f"'{t}'" for t in sorted(routing.AUDIT_TOPICS))
    sinks.add("audit_sink", "telemetry.ch.audit.v1", f"""
        SELECT event_id, {ch_time("ts_ms")}, topic, event_name, tenant_id, department_id, project_id, user_id,
               node_id, host_name, subject, action, resource, decision, policy_id, event_json
        FROM unique_events WHERE topic IN ({audit_topics})""",
              "event_id STRING, ts STRING, topic STRING, event_name STRING, tenant_id STRING, department_id STRING, "
              "project_id STRING, user_id STRING, node_id STRING, host_name STRING, subject STRING, action STRING, "
              "resource STRING, decision STRING, policy_id STRING, details STRING", fmt="json")

    # Every valid event, late ones too: the lake is what a backfill replays.
    t_env.execute_sql(lake_ddl("lake", a.lake_uri))
    sinks.statements.add_insert_sql("""INSERT INTO lake
        SELECT event_id, event_name, CAST(TO_TIMESTAMP_LTZ(ts_ms, 3) AS TIMESTAMP(3)), tenant_id, department_id,
               project_id, user_id, node_id, host_name, vm_type, event_json, topic,
               DATE_FORMAT(TO_TIMESTAMP_LTZ(ts_ms, 3), 'yyyy-MM-dd'), DATE_FORMAT(TO_TIMESTAMP_LTZ(ts_ms, 3), 'HH')
        FROM unique_events""")
    sinks.statements.attach_as_datastream()


def lake_ddl(name: str, uri: str) -> str:
    """The raw lake as a table: one stable schema for every topic, partitioned topic= / date= / hour=; the
    streaming job writes it, the backfill job reads it."""
    return f"""CREATE TEMPORARY TABLE {name} (
        event_id STRING, event_name STRING, ts TIMESTAMP(3), tenant_id STRING, department_id STRING,
        project_id STRING, user_id STRING, node_id STRING, host_name STRING, vm_type STRING, payload STRING,
        topic STRING, `date` STRING, `hour` STRING
    ) PARTITIONED BY (topic, `date`, `hour`) WITH (
        'connector' = 'filesystem', 'path' = '{uri}', 'format' = 'parquet',
        'sink.partition-commit.policy.kind' = 'success-file')"""


def add_usage(sinks: Sinks, a: argparse.Namespace) -> None:
    """usage_10s deltas. Per slice of record time, what the slice's on-time events add to each event-time window
    and key; slices fire by watermark, so a bounded run's end (the final watermark) fires them all, and each delta
    is written once: ClickHouse sums them exactly. A correction (its slice had fired) is one delta of its own; a
    late event adds only to late_events."""
    dims = ", ".join(routing.DIMS)
    dim_cols = ", ".join(f"{d} STRING" for d in routing.DIMS)
    usage_cols = f"window_start BIGINT, {dim_cols}, {SUM_COLUMNS}, "
    sums = ",\n        ".join(f"{summed(m)} AS {m}" for m in USAGE_SUMS)
    sinks.add("usage_sink", "telemetry.ch.usage.v1", f"""
        SELECT window_start_ms / 1000, {dims},
        {sums},
        COLLECT(CAST(latency_bucket AS STRING)) FILTER (WHERE latency_bucket IS NOT NULL),
        COLLECT(error_type) FILTER (WHERE error_type IS NOT NULL)
        FROM TABLE(TUMBLE(TABLE unique_events, DESCRIPTOR(rowtime), INTERVAL '{a.slice_ms / 1000}' SECOND))
        WHERE lane = {routing.ON_TIME}
        GROUP BY window_start, window_end, window_start_ms, {dims}""",
              usage_cols + "latency_hist MULTISET<STRING>, errors_by_type MULTISET<STRING>", fmt="json")
    sinks.add("correction_sink", "telemetry.ch.usage.v1", f"""
        SELECT window_start_ms / 1000, {dims}, {", ".join(single(m) for m in USAGE_SUMS)},
        CASE WHEN latency_bucket IS NULL THEN CAST(NULL AS MAP<STRING, BIGINT>)
             ELSE MAP[CAST(latency_bucket AS STRING), CAST(1 AS BIGINT)] END,
        CASE WHEN error_type IS NULL THEN CAST(NULL AS MAP<STRING, BIGINT>) ELSE MAP[error_type, CAST(1 AS BIGINT)] END
        FROM unique_events WHERE lane = {routing.CORRECTION}""",
              usage_cols + "latency_hist MAP<STRING, BIGINT>, errors_by_type MAP<STRING, BIGINT>", fmt="json")
    sinks.add("late_usage_sink", "telemetry.ch.usage.v1", f"""
        SELECT window_start_ms / 1000, {dims}, CAST(1 AS BIGINT) FROM unique_events WHERE lane = {routing.LATE}""",
              f"window_start BIGINT, {dim_cols}, late_events BIGINT", fmt="json")


def add_ingest_counters(sinks: Sinks, a: argparse.Namespace) -> None:
    """ingest_stats_10s deltas per event-time window and source topic: consumed = valid + dlq + duplicates, and
    late counts the valid events past the allowed lateness. On-time deliveries are counted per slice; corrections,
    late events and rejected records (windowed by their Kafka timestamp) one row each."""
    sinks.add("ingest_sink", "telemetry.ch.ingest.v1", f"""
        SELECT window_start_ms / 1000, topic, COUNT(*), SUM(IF(nth = 1, 1, 0)), 0, SUM(IF(nth > 1, 1, 0)), 0
        FROM TABLE(TUMBLE(TABLE deliveries, DESCRIPTOR(rowtime), INTERVAL '{a.slice_ms / 1000}' SECOND))
        WHERE lane = {routing.ON_TIME}
        GROUP BY window_start, window_end, window_start_ms, topic
        UNION ALL
        SELECT window_start_ms / 1000, topic, 1, IF(nth = 1, 1, 0), 0, IF(nth > 1, 1, 0),
               IF(nth = 1 AND lane = {routing.LATE}, 1, 0)
        FROM deliveries WHERE lane <> {routing.ON_TIME}
        UNION ALL
        SELECT window_start_ms / 1000, topic, 1, 0, 1, 0, 0 FROM dlq_rows""",
              "window_start BIGINT, topic STRING, consumed BIGINT, `valid` BIGINT, dlq BIGINT, duplicates BIGINT, "
              "late BIGINT", fmt="json")


def add_user_usage(sinks: Sinks, a: argparse.Namespace) -> None:
    """Running usage per user and UTC day of event time on telemetry.usage.v1 (compacted, keyed), for the quota
    service: each update carries the day's totals so far, so the newest record of a key is its usage. Late events
    stay out, as in usage_10s. Upserts are idempotent, so at-least-once delivery is exact here. Money is a plain
    decimal number (up to six decimals): read it as a decimal, not a double."""
    sinks.t_env.execute_sql(f"""CREATE TEMPORARY TABLE user_usage (
        tenant_id STRING, department_id STRING, user_id STRING, `day` STRING, events BIGINT, {SUM_COLUMNS},
        PRIMARY KEY (tenant_id, department_id, user_id, `day`) NOT ENFORCED
    ) WITH (
        'connector' = 'upsert-kafka', 'topic' = '{topics.USAGE_TOPIC}', 'properties.bootstrap.servers' = '{a.bootstrap}',
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
        FROM TABLE(TUMBLE(TABLE unique_events, DESCRIPTOR(rowtime), INTERVAL '{a.slice_ms / 1000}' SECOND))
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


def add_lifecycle(sinks: Sinks, task_events: DataStream, a: argparse.Namespace) -> DataStream:
    """Task events -> lifecycle join keyed by task_id -> Prometheus enrichment (the one process-mode operator)
    -> the ledger keyed by attempt -> task_facts rows (every revision), and the usage deltas that keep usage_10s
    equal to each attempt's counted revision. Returns the DLQ rows of events the join failed on."""
    t_env = sinks.t_env
    rules = LifecycleConfig(orphan_timeout_ms=a.orphan_timeout_ms, allowed_lateness_ms=a.allowed_lateness_ms,
                            job_version=a.job_version)
    joined = (task_events.key_by(lambda r: r[0], key_type=Types.STRING())
              .process(LifecycleJoin(rules), output_type=FACT_ROW_TYPE)
              .name("lifecycle join").uid("lifecycle-join"))
    facts = joined
    if a.prometheus_url:
        config = load_config(os.environ, prometheus_url=a.prometheus_url)
        facts = add_enrichment(facts, PrometheusEnrichment(config), timeout_s=a.enrichment_timeout_s)
        facts = facts.name("prometheus enrichment").uid("prometheus-enrichment")
    rows = (facts.key_by(fact_key, key_type=Types.STRING())
            .process(FactLedger(a.allowed_lateness_ms), output_type=Types.STRING())
            .name("task usage ledger").uid("task-usage-ledger"))
    one_string = Schema.new_builder().column("f0", "STRING").build()
    t_env.create_temporary_view("task_fact_rows", t_env.from_data_stream(rows, one_string))
    t_env.create_temporary_view("task_deltas", t_env.from_data_stream(rows.get_side_output(DELTA_TAG), one_string))
    sinks.add("tasks_sink", "telemetry.ch.tasks.v1", "SELECT f0 FROM task_fact_rows")
    sinks.add("task_usage_sink", "telemetry.ch.usage.v1", "SELECT f0 FROM task_deltas")
    return joined.get_side_output(JOIN_DLQ_TAG)


def local_s3(*uris: str) -> None:
    """A local run (a mini-cluster in this process) with an s3:// lake or checkpoint directory among uris: the S3
    plugin from lib/plugins, with the endpoint and keys from the settings. A cluster sets both up itself
    (config.yaml, plugins/), so a job submitted to one leaves them alone."""
    if not any(uri.startswith("s3://") for uri in uris):
        return
    s = cfg.load()
    access_key, secret_key = s.s3_credentials()
    # PyFlink points FLINK_PLUGINS_DIR at the wheel's own plugins/ unless FLINK_HOME is set: set both before the
    # JVM starts. A mini-cluster does not load file system plugins itself: initialise them here, in its JVM.
    os.environ.setdefault("FLINK_HOME", os.path.dirname(os.path.abspath(pyflink.__file__)))
    os.environ["FLINK_PLUGINS_DIR"] = str(cfg.REPO_ROOT / "lib" / "plugins")
    jvm = get_gateway().jvm
    conf = jvm.org.apache.flink.configuration.Configuration()
    for key, value in (("s3.endpoint", s.s3_endpoint), ("s3.path.style.access", "true"),
                       ("s3.access-key", access_key), ("s3.secret-key", secret_key)):
        conf.setString(key, value)
    plugins = jvm.org.apache.flink.core.plugin.PluginUtils.createPluginManagerFromRootFolder(conf)
    jvm.org.apache.flink.core.fs.FileSystem.initialize(conf, plugins)


def local_run() -> bool:
    """True when this process will start its own mini-cluster: `flink run` hands it its client's gateway instead."""
    return "PYFLINK_GATEWAY_PORT" not in os.environ


def main(argv: list[str] | None = None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        a.deployment = deployment_name(a)
        if a.max_clock_skew_ms < 0:
            raise cfg.SettingsError(f"--max-clock-skew-ms {a.max_clock_skew_ms}: must be 0 or more")
    except cfg.SettingsError as exc:
        print(f"telemetry_job: {exc}", file=sys.stderr)
        return 2
    expose_site_packages()
    # Before anything touches the JVM: the first Java object starts it, with the environment of that moment.
    local = local_run()
    if local:
        try:
            local_s3(a.lake_uri, a.checkpoint_dir)
        except cfg.SettingsError as exc:
            print(f"telemetry_job: an s3:// lake or checkpoint directory needs S3 credentials: {exc}", file=sys.stderr)
            return 2
    conf = Configuration()
    if local:
        conf.set_string("rest.address", "127.0.0.1")
        conf.set_string("rest.bind-address", "127.0.0.1")
        conf.set_string("rest.port", str(a.rest_port))
        conf.set_string("rest.flamegraph.enabled", str(a.flamegraph).lower())
        if a.rest_port:
            print(f"telemetry_job: Flink UI of this local run: http://127.0.0.1:{a.rest_port}", flush=True)
    if a.restore_from:
        try:
            restore = str(latest_checkpoint(a.checkpoint_dir)) if a.restore_from == "latest" else a.restore_from
        except (NoCheckpointError, ValueError) as exc:
            print(f"telemetry_job: --restore-from latest: {exc}", file=sys.stderr)
            return 2
        print(f"telemetry_job: restoring from {restore}", flush=True)
        conf.set_string("execution.state-recovery.path", restore)
    conf.set_string("python.execution-mode", "thread")
    # Without it Python operators run on whatever `python` is on PATH, which lacks pyflink / pemja outside a venv.
    conf.set_string("python.executable", sys.executable)
    conf.set_string("table.local-time-zone", "UTC")
    conf.set_string("table.exec.source.idle-timeout", f"{a.idle_timeout_ms} ms")
    conf.set_string("table.exec.state.ttl", f"{a.dedup_ttl_ms} ms")
    conf.set_string("execution.checkpointing.interval", f"{a.checkpoint_interval_ms} ms")
    conf.set_string("execution.checkpointing.mode", "EXACTLY_ONCE")
    conf.set_string("execution.checkpointing.storage", "filesystem")
    conf.set_string("state.backend.type", a.state_backend)
    if a.state_backend == "rocksdb":
        conf.set_string("execution.checkpointing.incremental", "true")
    conf.set_string("execution.checkpointing.dir", a.checkpoint_dir)
    # Kept when the job is cancelled or dies, so it can be restarted from its latest one (--restore-from).
    conf.set_string("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION")
    if a.no_restart:
        conf.set_string("restart-strategy.type", "none")
    if a.jars:
        conf.set_string("pipeline.jars", a.jars)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    if a.parallelism or local:
        env.set_parallelism(a.parallelism or 1)
    t_env = StreamTableEnvironment.create(env)
    build(env, t_env, a)
    env.execute("telemetry")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
