"""Backfill: recompute the usage aggregates of a [from, to) range from the raw Parquet lake, in a Flink batch job
running the streaming job's own rules (pipeline.routing), and replace the affected ClickHouse partitions.

Run locally with `python -m jobs.backfill_job --from 2026-01-01 --to 2026-01-02`, or submit it like the
streaming job (k8s/flink-operator/backfill-job.yaml). `--dry-run` lists what would be read and replaced.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from typing import Any

from pyarrow import fs
from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment
from pyflink.table.udf import udtf

from jobs.runtime import base_configuration, local_run, local_s3
from jobs.tables import lake_ddl, summed
from pipeline import backfill, routing
from pipeline.backfill import BackfillError, Range
from pipeline.rows import USAGE_SUMS
from telemetry import __version__, clickhouse, topics
from telemetry import settings as cfg
from udfs.python_env import expose_site_packages

_INDEX = {name: i for i, name in enumerate(routing.ROW_NAMES)}
_KINDS = dict(routing.ROW_FIELDS)
REJECTED = -1  # an event in the lake today's rules reject: counted and reported, never summed


def parse_args(argv: list[str]) -> argparse.Namespace:
    s = cfg.load()
    p = argparse.ArgumentParser(prog="backfill_job", description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="start", required=True, help="first instant, ISO 8601 (UTC unless an offset is given)")
    p.add_argument("--to", dest="end", required=True, help="end instant, excluded; both on a 10 s boundary")
    p.add_argument("--topics", default="all",
                   help="comma-separated source topics, or `all` (the default). Usage rows sum every topic, so "
                        "anything but all only works with --dry-run")
    p.add_argument("--lake-uri", default=s.effective_lake_uri, help="raw lake root: a path or s3://bucket/prefix")
    p.add_argument("--clickhouse-url", default=s.clickhouse_url, help="ClickHouse HTTP URL (CLICKHOUSE_URL)")
    p.add_argument("--database", default=s.clickhouse_database, help="ClickHouse database (CLICKHOUSE_DATABASE)")
    p.add_argument("--dry-run", action="store_true", help="list the lake partitions and ClickHouse partitions only")
    p.add_argument("--parallelism", type=int, default=0,
                   help="parallelism of the batch job; default: the cluster's parallelism.default (1 for a local run)")
    p.add_argument("--jars", default="", help="extra jar URLs (file://...;...) for a local run outside a cluster")
    return p.parse_args(argv)


def selected_topics(spec: str) -> list[str]:
    if spec == "all":
        return list(topics.SOURCE_TOPICS)
    chosen = [t.strip() for t in spec.split(",") if t.strip()]
    unknown = sorted(set(chosen) - set(topics.SOURCE_TOPICS))
    if unknown or not chosen:
        raise BackfillError(f"--topics {spec!r}: unknown {unknown or 'empty list'}; "
                            f"choose from {', '.join(topics.SOURCE_TOPICS)} or `all`")
    return chosen


def lake_hours(uri: str, chosen: list[str], span: Range) -> list[str]:
    """The lake's topic=/date=/hour= partitions that overlap the range."""
    if uri.startswith("s3://"):
        s = cfg.load()
        access_key, secret_key = s.s3_credentials()
        endpoint = s.s3_endpoint.split("://", 1)
        filesystem: fs.FileSystem = fs.S3FileSystem(access_key=access_key, secret_key=secret_key, scheme=endpoint[0],
                                                    endpoint_override=endpoint[1], region="us-east-1")
        root = uri.removeprefix("s3://").rstrip("/")
    else:
        filesystem, root = fs.LocalFileSystem(), uri.removeprefix("file://").rstrip("/")
    first_hour = span.start_ms - span.start_ms % 3_600_000
    found = []
    for topic in chosen:
        selector = fs.FileSelector(f"{root}/topic={topic}", recursive=True, allow_not_found=True)
        hours = {os.path.dirname(info.path) for info in filesystem.get_file_info(selector)
                 if info.type == fs.FileType.File and "/hour=" in info.path}
        for path in sorted(hours):
            date, hour = path.split("/date=")[1].split("/hour=")
            start = backfill.parse_instant("lake partition", f"{date}T{hour}:00:00Z")
            if first_hour <= start < span.end_ms:
                found.append(path.removeprefix(root + "/"))
    return found


def usage_rows(args: argparse.Namespace, chosen: list[str], span: Range, late: frozenset[str]) -> tuple[list[dict], int]:
    """The range's usage_10s rows from the lake's events, one per window and key, and the rejected count."""
    local = local_run()
    if local:
        local_s3(args.lake_uri)
    conf = base_configuration(args.jars)
    if args.parallelism or local:
        conf.set_string("parallelism.default", str(args.parallelism or 1))
    t_env = TableEnvironment.create(EnvironmentSettings.new_instance().in_batch_mode().with_configuration(conf).build())

    # The wide row's columns usage needs, typed as routing.ROW_FIELDS types them, and the lane.
    picked = ("window_start_ms", *routing.DIMS, *USAGE_SUMS, "error_type", "latency_bucket")
    picks = [_INDEX[name] for name in picked]
    types = {"str": DataTypes.STRING(), "int": DataTypes.BIGINT(), "float": DataTypes.DOUBLE(),
             "micros": DataTypes.BIGINT()}

    @udtf(result_types=[types[_KINDS[name].rstrip("?")] for name in picked] + [DataTypes.BIGINT()])
    def route_lake(topic: str, event_id: str, payload: str):
        # The streaming job's own rule on the canonical JSON the lake keeps.
        row = routing.route(topic, payload.encode())
        if isinstance(row, routing.Rejected):
            yield (0, *([""] * len(routing.DIMS)), *([0] * len(routing.INT_METRICS)),
                   *([0.0] * len(routing.FLOAT_METRICS)), *([None] * len(routing.MONEY_METRICS)), None, None, REJECTED)
            return
        yield (*(row[i] for i in picks), routing.LATE if event_id in late else routing.ON_TIME)

    t_env.create_temporary_function("route_lake", route_lake)
    t_env.execute_sql(lake_ddl("lake", args.lake_uri))
    on_time = f"lane = {routing.ON_TIME}"
    sums = ", ".join(f"{summed(m, on_time)} AS {m}" if m in routing.MONEY_METRICS else
                     f"SUM(IF({on_time}, {m}, {'0.0' if m in routing.FLOAT_METRICS else '0'})) AS {m}"
                     for m in USAGE_SUMS)
    dims = ", ".join(routing.DIMS)
    keys = ", ".join(f"r.{d}" for d in routing.DIMS)  # the lake has some of these columns too
    topic_list = ", ".join(f"'{t}'" for t in chosen)
    first_day, last_day = (backfill.iso(ms)[:10] for ms in (span.start_ms, span.end_ms - 1))
    query = f"""
        SELECT window_start_ms, {keys}, {sums},
               COLLECT(CAST(latency_bucket AS STRING)) FILTER (WHERE {on_time} AND latency_bucket IS NOT NULL),
               COLLECT(error_type) FILTER (WHERE {on_time} AND error_type IS NOT NULL),
               SUM(IF(lane = {routing.LATE}, 1, 0)), SUM(IF(lane = {REJECTED}, 1, 0))
        FROM lake, LATERAL TABLE(route_lake(topic, event_id, payload))
            AS r(window_start_ms, {dims}, {", ".join(USAGE_SUMS)}, error_type, latency_bucket, lane)
        WHERE topic IN ({topic_list}) AND `date` BETWEEN '{first_day}' AND '{last_day}'
          AND ts >= TIMESTAMP '{backfill.iso(span.start_ms)[:19].replace("T", " ")}'
          AND ts < TIMESTAMP '{backfill.iso(span.end_ms)[:19].replace("T", " ")}'
        GROUP BY window_start_ms, {keys}"""
    rows: list[dict[str, Any]] = []
    rejected = 0
    with t_env.sql_query(query).execute().collect() as results:
        for r in results:
            values = list(r)
            *head, hist, errors, late_events, bad = values
            rejected += bad
            if head[0] == 0:
                continue  # rejected events, grouped at window 0 with empty keys: counted, not written
            row = dict(zip(("window_start_ms", *routing.DIMS, *USAGE_SUMS), head))
            row["window_start"] = row.pop("window_start_ms") // 1000
            row["latency_hist"] = _counts(hist)
            row["errors_by_type"] = _counts(errors)
            row["late_events"] = late_events
            rows.append(row)
    return rows, rejected


def _counts(multiset: Any) -> dict[str, int]:
    """A Flink MULTISET as PyFlink hands it back (a dict of counts, or a list) -> {value: count}."""
    if not multiset:
        return {}
    return {str(k): int(v) for k, v in (multiset.items() if isinstance(multiset, dict) else Counter(multiset).items())}


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        span = backfill.parse_range(args.start, args.end)
        chosen = selected_topics(args.topics)
        if args.topics != "all" and not args.dry_run:
            raise BackfillError(f"--topics {args.topics!r}: usage rows sum the events of every topic, so rebuilding "
                                "them from some topics would drop the others' share; use --topics all (or --dry-run)")
    except (BackfillError, cfg.SettingsError) as exc:
        print(f"backfill_job: {exc}", file=sys.stderr)
        return 2
    expose_site_packages()
    s = cfg.load()
    client = clickhouse.connect(s, url=args.clickhouse_url)
    try:
        hours = lake_hours(args.lake_uri, chosen, span)  # the first use of the S3 keys, which the Flink job needs too
    except cfg.SettingsError as exc:
        print(f"backfill_job: an s3:// lake needs S3 credentials: {exc}", file=sys.stderr)
        return 2
    print(f"backfill_job {__version__}: {span}, {len(chosen)} topics, {len(hours)} lake partitions under "
          f"{args.lake_uri}", flush=True)
    for state in backfill.describe(client, args.database, span):
        print(f"  {args.database}.{state.table} partition {state.partition}: {state.rows} rows, "
              f"{state.in_range} in range -> {'would be ' if args.dry_run else ''}replaced", flush=True)
    if args.dry_run:
        for path in hours:
            print(f"  lake {path}")
        return 0
    late = frozenset(backfill.late_event_ids(client, args.database, span))
    print(f"backfill_job: {len(late)} late events stay out of usage, as in the streaming run; reading the lake "
          "with Flink (batch)", flush=True)
    rows, rejected = usage_rows(args, chosen, span, late)
    if rejected:
        print(f"backfill_job: WARNING {rejected} lake events fail today's validation and are left out", flush=True)
    tasks = backfill.task_deltas(client, args.database, span)
    print(f"backfill_job: {len(rows)} event rows and {len(tasks)} ended task attempts in "
          f"{time.monotonic() - started:.1f} s", flush=True)
    backfill.replace_usage(client, args.database, span, [*rows, *tasks])
    print(f"backfill_job: done in {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
