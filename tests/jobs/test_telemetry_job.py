"""The streaming job on a real Kafka broker and a Flink mini-cluster, with the raw lake on MinIO and Prometheus
holding known history for every simulated node: a simulator run in, then every output checked against the
ground truth: DLQ by reason, ingest counters, the lake read back from S3, audit rows, usage window deltas summed,
running usage per user, task facts enriched within 1% of the series."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow.dataset as pads
import pytest

from pipeline import routing
from tests.support.fixtures_prometheus import assert_close, expected
from tests.support.job_runs import epoch_ms, usage_rows
from tests.support.truth_compare import GROUP_TOPICS, ended_attempts, ingest_totals, metric, summed
from tests.support.truth_compare import expected as expected_rows

pytestmark = pytest.mark.stack
# job_run (the session's one job run) and clickhouse_loaded (its rows in ClickHouse) come from tests/support/fixtures_job.py.


def test_dlq_holds_every_rejected_record_with_its_reason(job_run):
    records = [json.loads(v) for v in job_run["outputs"]["telemetry.dlq.v1"]]
    assert Counter(r["reason"] for r in records) == Counter(job_run["truth"]["dlq"])
    assert all(r["topic"] and r["job_version"] and r["payload_encoding"] in ("utf-8", "base64") for r in records)


def test_lake_on_s3_holds_each_valid_event_once_per_topic(job_run):
    table = pads.dataset(job_run["lake"].removeprefix("s3://"), filesystem=job_run["s3"], format="parquet",
                         partitioning="hive").to_table()
    per_topic = Counter(table.column("topic").to_pylist())
    assert dict(per_topic) == {t: v["valid"] for t, v in job_run["truth"]["topics"].items() if v["valid"]}
    assert len(set(table.column("event_id").to_pylist())) == table.num_rows


@pytest.mark.parametrize("group", [*sorted(GROUP_TOPICS), "tasks"])
def test_usage_deltas_sum_to_the_truth(job_run, group):
    deltas = []
    for value in job_run["outputs"]["telemetry.ch.usage.v1"]:
        row = json.loads(value)
        row["window_start_ms"] = row.pop("window_start") * 1000
        deltas.append(row)
    assert deltas
    assert summed(job_run["truth"], group, deltas) == expected_rows(job_run["truth"], group)


def test_one_task_fact_per_ended_attempt(job_run):
    facts = [json.loads(v) for v in job_run["outputs"]["telemetry.ch.tasks.v1"]]
    tasks = job_run["truth"]["tasks"]
    statuses = Counter(f["status"] for f in facts)
    # The bounded run's final watermark passes every orphan deadline, so the truth's orphans are reported too.
    assert (statuses["finished"], statuses["failed"], statuses["orphaned"]) == (
        tasks["finished"], tasks["failed"], tasks["orphaned"])
    assert len({(f["task_id"], f["attempt"]) for f in facts}) == len(facts)


def test_task_facts_carry_the_nodes_series_within_one_percent(job_run):
    facts = [json.loads(v) for v in job_run["outputs"]["telemetry.ch.tasks.v1"]]
    timed = [f for f in facts if f["started_at"] and f["finished_at"]]
    assert timed
    assert {f["enrichment_status"] for f in timed} == {"ok"}
    for fact in timed:
        node = job_run["nodes"][fact["host_name"]]
        start, end = (epoch_ms(fact[k]) for k in ("started_at", "finished_at"))
        assert_close(fact, expected(node, start, end))


def test_ingest_counters_account_for_every_consumed_record(job_run):
    totals: dict[str, Counter] = {}
    for value in job_run["outputs"]["telemetry.ch.ingest.v1"]:
        row = json.loads(value)
        totals.setdefault(row.pop("topic"), Counter()).update({k: v for k, v in row.items() if k != "window_start"})
    for topic, truth in job_run["truth"]["topics"].items():
        counts = totals.get(topic, Counter())
        assert counts["consumed"] == truth["produced"] == counts["valid"] + counts["dlq"] + counts["duplicates"], topic
        assert (counts["valid"], counts["duplicates"], counts["dlq"], counts["late"]) == (
            truth["valid"], truth["duplicates"], sum(truth["malformed"].values()), 0), topic


def test_user_usage_updates_end_at_the_truth_per_user(job_run):
    latest: dict[tuple, dict[str, Any]] = {}
    for key, value in job_run["outputs"]["telemetry.usage.v1"]:
        k = json.loads(key)
        latest[(k["tenant_id"], k["department_id"], k["user_id"], k["day"])] = json.loads(value)
    assert latest
    per_user: dict[tuple, Counter] = {}
    for (tenant, department, user, _day), row in latest.items():
        per_user.setdefault((tenant, department, user), Counter()).update(
            {m: row[m] for m in (*routing.INT_METRICS, *routing.FLOAT_METRICS)})
    spec = job_run["truth"]["per_user"]
    names = [m for m in spec["metrics"] if not m.startswith(("err_", "task"))]
    want = {tuple(r[:3]): {m: v for m, v in zip(spec["metrics"], r[3:]) if m in names} for r in spec["rows"]}
    got = {k: {m: metric(v, m) for m in names} for k, v in per_user.items()}
    assert {k: v for k, v in got.items() if any(v.values())} == {k: v for k, v in want.items() if any(v.values())}


def test_audit_rows_are_the_audit_topics_valid_events(job_run):
    rows = [json.loads(v) for v in job_run["outputs"]["telemetry.ch.audit.v1"]]
    topics = job_run["truth"]["topics"]
    assert Counter(r["topic"] for r in rows) == Counter({t: topics[t]["valid"] for t in routing.AUDIT_TOPICS})


@pytest.mark.parametrize("group", [*sorted(GROUP_TOPICS), "tasks"])
def test_clickhouse_usage_equals_the_truth(job_run, clickhouse_loaded, group):
    rows = usage_rows(*clickhouse_loaded)
    assert summed(job_run["truth"], group, rows) == expected_rows(job_run["truth"], group)


def test_clickhouse_dlq_audit_and_task_facts(job_run, clickhouse_loaded):
    client, database = clickhouse_loaded
    truth = job_run["truth"]
    dlq = dict(client.query(f"SELECT reason, count() FROM {database}.dlq_events FINAL GROUP BY reason").result_rows)
    assert dlq == truth["dlq"]
    audit = client.query(f"SELECT count() FROM {database}.audit_log").result_rows[0][0]
    assert audit == sum(truth["topics"][t]["valid"] for t in routing.AUDIT_TOPICS)
    facts = dict(client.query(f"SELECT status, count() FROM {database}.task_facts FINAL GROUP BY status").result_rows)
    assert facts == ended_attempts(truth)
    ingest = client.query(f"SELECT topic, sum(consumed), sum(valid), sum(dlq), sum(duplicates) "
                          f"FROM {database}.ingest_stats_10s GROUP BY topic").result_rows
    assert {r[0]: tuple(r[1:]) for r in ingest} == ingest_totals(truth)
