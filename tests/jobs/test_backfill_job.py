"""Backfill from the lake: after the session's streaming run (tests/support/fixtures_job.py), a backfill of its range
rebuilds every usage aggregate (10 s, 1 m, 1 h, 1 d) identical to what the streaming run left, repairs rows
damaged inside the range, leaves rows outside it alone, is idempotent, and its dry run changes nothing.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any, Iterator

import pytest

from pipeline import routing
from tests.support.job_runs import REPO_ROOT, loaded_clickhouse, local_jars

pytestmark = pytest.mark.stack

RANGE = ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")  # holds the whole simulated run (fixtures_job.SIM_START)
TABLES = ("usage_10s", "usage_1m", "usage_1h", "usage_1d")
SUMS = (*routing.INT_METRICS, *routing.FLOAT_METRICS, "tasks", "task_failures", "task_retries", "task_queue_ms_sum",
        "task_load_ms_sum", "task_init_ms_sum", "task_inference_ms_sum", "task_duration_ms_sum", "cpu_seconds",
        "gpu_seconds", "late_events")


@pytest.fixture(scope="module")
def loaded(job_run: dict[str, Any], clickhouse_server: str, stack_env: dict[str, str]) -> Iterator[tuple[Any, str]]:
    """The streaming run's output in a database of this module's own: the backfill rewrites it."""
    with loaded_clickhouse(stack_env, clickhouse_server) as pair:
        yield pair


def aggregates(client: Any, database: str, table: str) -> dict[tuple, tuple]:
    """A usage table summed per window and key: what every reader of it sees."""
    keys = ", ".join(("window_start", *routing.DIMS))
    values = ", ".join([f"round(sum({m}), 6)" for m in SUMS]
                       + ["toString(sumMap(latency_hist))", "toString(sumMap(errors_by_type))"])
    rows = client.query(f"SELECT {keys}, {values} FROM {database}.{table} GROUP BY {keys}").result_rows
    width = 1 + len(routing.DIMS)
    return {tuple(r[:width]): tuple(r[width:]) for r in rows}


def snapshot(client: Any, database: str) -> dict[str, dict[tuple, tuple]]:
    return {table: aggregates(client, database, table) for table in TABLES}


def differences(after: dict[str, dict[tuple, tuple]], before: dict[str, dict[tuple, tuple]]) -> list[str]:
    """Readable differences of two snapshots: keys on one side only, and the values that changed, by name."""
    names = (*SUMS, "latency_hist", "errors_by_type")
    out = []
    for table in TABLES:
        new, old = after[table], before[table]
        out += [f"{table}: only after {k}" for k in sorted(set(new) - set(old), key=str)[:3]]
        out += [f"{table}: only before {k}" for k in sorted(set(old) - set(new), key=str)[:3]]
        for key in sorted(set(new) & set(old), key=str):
            changed = {n: (o, v) for n, v, o in zip(names, new[key], old[key]) if v != o}
            if changed and len(out) < 20:
                out.append(f"{table} {key}: {changed} (before, after)")
    return out


def backfill(stack_env: dict[str, str], clickhouse_server: str, database: str, lake: str,
             *args: str) -> subprocess.CompletedProcess[str]:
    env = {**stack_env, "CLICKHOUSE_URL": clickhouse_server, "CLICKHOUSE_DATABASE": database}
    return subprocess.run([sys.executable, "-m", "jobs.backfill_job", "--lake-uri", lake, "--jars", local_jars(),
                           *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_backfill_repairs_the_range_and_leaves_every_aggregate_as_the_streaming_run_made_it(
        job_run, loaded, stack_env, clickhouse_server):
    client, database = loaded
    before = snapshot(client, database)
    assert all(before[t] for t in TABLES), "the streaming run left no usage rows to compare"
    # Damage inside the range: one user's rows gone from usage_10s, a stray row in a rollup.
    victim = next(iter(before["usage_10s"]))[4]
    client.command(f"ALTER TABLE {database}.usage_10s DELETE WHERE user_id = '{victim}'",
                   settings={"mutations_sync": 2})
    client.command(f"INSERT INTO {database}.usage_1h (window_start, user_id, requests) "
                   "VALUES ('2026-01-01 03:00:00', 'stray', 7)")
    assert snapshot(client, database) != before

    run = backfill(stack_env, clickhouse_server, database, job_run["lake"], "--from", RANGE[0], "--to", RANGE[1])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "usage_10s: partitions 202601 replaced" in run.stdout
    assert differences(snapshot(client, database), before) == [], run.stdout

    again = backfill(stack_env, clickhouse_server, database, job_run["lake"], "--from", RANGE[0], "--to", RANGE[1])
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert differences(snapshot(client, database), before) == []


def test_backfill_of_one_hour_leaves_the_rest_of_the_partition_alone(job_run, loaded, stack_env, clickhouse_server):
    client, database = loaded
    # A row outside the hour: a backfill that rebuilt more than its range would drop it.
    client.command(f"INSERT INTO {database}.usage_10s (window_start, user_id, requests) "
                   "VALUES ('2026-01-01 05:00:00', 'outside', 3)")
    before = snapshot(client, database)
    run = backfill(stack_env, clickhouse_server, database, job_run["lake"],
                   "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T01:00:00Z")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    after = snapshot(client, database)
    assert differences(after, before) == []
    assert any(key[4] == "outside" for key in after["usage_1h"])


def test_dry_run_lists_lake_and_clickhouse_partitions_and_changes_nothing(job_run, loaded, stack_env,
                                                                          clickhouse_server):
    client, database = loaded
    before = snapshot(client, database)
    run = backfill(stack_env, clickhouse_server, database, job_run["lake"], "--from", RANGE[0], "--to", RANGE[1],
                   "--topics", "xumi_task,pbac_access", "--dry-run")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "lake topic=xumi_task/date=2026-01-01/hour=00" in run.stdout
    assert "topic=wkf_cpu" not in run.stdout
    assert f"{database}.usage_1d partition 202601" in run.stdout and "would be replaced" in run.stdout
    assert snapshot(client, database) == before


@pytest.mark.parametrize("args, message", [
    (("--from", "2026-01-01T00:00:05Z", "--to", "2026-01-02"), "inside a 10 s window"),
    (("--from", "2026-01-02", "--to", "2026-01-01"), "must be after --from"),
    (("--from", "yesterday", "--to", "2026-01-01"), "is not an ISO 8601 time"),
    (("--from", "2026-01-01", "--to", "2026-01-02", "--topics", "xumi_task"), "use --topics all"),
    (("--from", "2026-01-01", "--to", "2026-01-02", "--topics", "nope"), "unknown ['nope']"),
])
def test_bad_arguments_are_clear_errors(args, message, stack_env, clickhouse_server):
    run = backfill(stack_env, clickhouse_server, "unused", "/nonexistent", *args)
    assert run.returncode == 2 and message in run.stderr, run.stderr


def test_an_s3_lake_without_credentials_is_a_clear_error(stack_env, clickhouse_server, tmp_path):
    # no S3_ACCESS_KEY / S3_SECRET_KEY in stack_env, and a state directory without generated MinIO keys
    run = backfill({**stack_env, "TELEMETRY_STATE_DIR": str(tmp_path)}, clickhouse_server, "unused",
                   "s3://telemetry-lake/nowhere", "--from", RANGE[0], "--to", RANGE[1], "--dry-run")
    assert run.returncode == 2 and "an s3:// lake needs S3 credentials" in run.stderr, run.stderr[-2000:]
