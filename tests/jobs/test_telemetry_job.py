"""The streaming job on a real Kafka broker and a Flink mini-cluster, with the raw lake on MinIO and Prometheus
holding known history for every simulated node: a simulator run in, then every output checked against the
ground truth: DLQ by reason, ingest counters, the lake read back from S3, audit rows, usage window deltas summed,
running usage per user, task facts enriched within 1% of the series. The run has tasks only the Workflow service
reported, starts delivered after their attempt's end and credits near the contract's maximum (department totals
about 1e14, exact everywhere)."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from typing import Any

import pyarrow.dataset as pads
import pytest

from pipeline import routing
from pipeline.lifecycle import latest
from telemetry.prices import load, read_catalogue
from telemetry.settings import REPO_ROOT
from tests.support.fixtures_prometheus import assert_close, expected
from tests.support.job_runs import decoded, epoch_ms, usage_rows
from tests.support.truth_compare import GROUP_TOPICS, ended_attempts, ingest_totals, metric, summed
from tests.support.truth_compare import expected as expected_rows
from telemetry import topics

pytestmark = pytest.mark.stack
# job_run (the session's one job run) and clickhouse_loaded (its rows in ClickHouse) come from tests/support/fixtures_job.py.


def test_dlq_holds_every_rejected_record_with_its_reason(job_run):
    records = [decoded(v) for v in job_run["outputs"]["telemetry.dlq.v1"]]
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
    for value in job_run["outputs"][topics.clickhouse_topic("usage_10s")]:
        row = decoded(value)
        row["window_start_ms"] = row.pop("window_start") * 1000
        deltas.append(row)
    assert deltas
    assert summed(job_run["truth"], group, deltas) == expected_rows(job_run["truth"], group)


def test_one_task_fact_per_ended_attempt(job_run):
    revisions = [json.loads(v) for v in job_run["outputs"][topics.clickhouse_topic("task_facts")]]
    facts = latest(revisions)
    tasks = job_run["truth"]["tasks"]
    statuses = Counter(f["status"] for f in facts)
    # The bounded run's final watermark passes every orphan deadline, so the truth's orphans are reported too.
    assert (statuses["finished"], statuses["failed"], statuses["orphaned"]) == (
        tasks["finished"], tasks["failed"], tasks["orphaned"])
    assert len({(f["task_id"], f["attempt"], f["version"]) for f in revisions}) == len(revisions)  # none twice
    # the Workflow-only tasks are facts of their own (no model, no XUMI node); whether a late start revises its
    # fact depends on how the source interleaves partitions while reading this backlog (test_job_lifecycle makes
    # it happen), and the truth holds either way
    workflow_only = [f for f in facts if f["node_id"] == "" and f["base_model"] == ""]
    assert len(workflow_only) == tasks["workflow_only"] > 0 and tasks["late_starts"] > 0
    assert not any(f["late"] for f in facts)  # nothing arrived past the allowed lateness


def test_task_facts_carry_the_nodes_series_within_one_percent(job_run):
    facts = latest(json.loads(v) for v in job_run["outputs"][topics.clickhouse_topic("task_facts")])
    timed = [f for f in facts if f["started_at"] and f["finished_at"]]
    assert timed
    assert {f["enrichment_status"] for f in timed} == {"ok"}
    for fact in timed:
        node = job_run["nodes"][fact["host_name"]]
        start, end = (epoch_ms(fact[k]) for k in ("started_at", "finished_at"))
        assert_close(fact, expected(node, start, end))


def test_ingest_counters_account_for_every_consumed_record(job_run):
    totals: dict[str, Counter] = {}
    for value in job_run["outputs"][topics.clickhouse_topic("ingest_stats_10s")]:
        row = decoded(value)
        totals.setdefault(row.pop("topic"), Counter()).update({k: v for k, v in row.items() if k != "window_start"})
    for topic, truth in job_run["truth"]["topics"].items():
        counts = totals.get(topic, Counter())
        assert counts["consumed"] == truth["produced"] == counts["valid"] + counts["dlq"] + counts["duplicates"], topic
        assert (counts["valid"], counts["duplicates"], counts["dlq"], counts["late"]) == (
            truth["valid"], truth["duplicates"], sum(truth["malformed"].values()), 0), topic


def newest_user_usage(job_run: dict[str, Any]) -> dict[tuple, dict[str, Any]]:
    """The quota topic as its compaction keeps it: the newest value of each (tenant, department, user, day)."""
    newest: dict[tuple, dict[str, Any]] = {}
    for key, value in job_run["outputs"]["telemetry.usage.v1"]:
        k = decoded(key)
        newest[(k["tenant_id"], k["department_id"], k["user_id"], k["day"])] = decoded(value)
    return newest


def test_user_usage_updates_end_at_the_truth_per_user(job_run):
    newest = newest_user_usage(job_run)
    assert newest
    per_user: dict[tuple, Counter] = {}
    for (tenant, department, user, _day), row in newest.items():
        per_user.setdefault((tenant, department, user), Counter()).update(
            {m: row[m] for m in (*routing.INT_METRICS, *routing.FLOAT_METRICS, *routing.MONEY_METRICS)})
    spec = job_run["truth"]["per_user"]
    names = [m for m in spec["metrics"] if not m.startswith(("err_", "task"))]
    want = {tuple(r[:3]): {m: v for m, v in zip(spec["metrics"], r[3:]) if m in names} for r in spec["rows"]}
    got = {k: {m: metric(v, m) for m in names} for k, v in per_user.items()}
    assert {k: v for k, v in got.items() if any(v.values())} == {k: v for k, v in want.items() if any(v.values())}


def test_audit_rows_are_the_audit_topics_valid_events(job_run):
    rows = [decoded(v) for v in job_run["outputs"][topics.clickhouse_topic("audit_log")]]
    truth = job_run["truth"]["topics"]
    assert Counter(r["topic"] for r in rows) == Counter({t: truth[t]["valid"] for t in routing.AUDIT_TOPICS})


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


def test_huge_credits_agree_to_the_micro_credit_in_every_table_view_and_topic(job_run, clickhouse_loaded):
    """Credits near the contract's 1e12 per record, department totals about 1e14: usage_10s, usage_1m / 1h / 1d,
    cost_usage_1h, the quota topic and the ground truth agree exactly, and so do the costs priced from the credit
    events' unit-seconds, to the cent (Float64 drifted by cents here, and cannot hold cents past 9e13)."""
    client, database = clickhouse_loaded
    truth = job_run["truth"]
    load(client, database, read_catalogue(REPO_ROOT / "sql" / "clickhouse" / "prices" / "example.yaml"), say=lambda _: None)
    spec = truth["per_user"]
    money = ("wkf_credits", "kuber_credits")
    want: dict[tuple, dict[str, Decimal]] = {}
    for row in spec["rows"]:
        sums = want.setdefault(tuple(row[:2]), dict.fromkeys(money, Decimal(0)))
        for m in money:
            sums[m] += row[3 + spec["metrics"].index(m)]
    assert max(v["wkf_credits"] for v in want.values()) > Decimal("1e13")  # totals around 1e14
    by_department = "GROUP BY tenant_id, department_id HAVING sum(wkf_credits) + sum(kuber_credits) > 0"
    for source in ("usage_10s", "usage_1m", "usage_1h", "usage_1d", "cost_usage_1h"):
        got = client.query(f"SELECT tenant_id, department_id, sum(wkf_credits), sum(kuber_credits) "
                           f"FROM {database}.{source} {by_department}").result_rows
        assert {tuple(r[:2]): dict(zip(money, r[2:])) for r in got} == want, source
    credits = client.query(f"SELECT tenant_id, department_id, sum(credits) FROM {database}.usage_1d "
                           f"{by_department}").result_rows
    assert {tuple(r[:2]): r[2] for r in credits} == {k: v["wkf_credits"] + v["kuber_credits"] for k, v in want.items()}
    quota: dict[tuple, dict[str, Decimal]] = {}
    for (tenant, department, _user, _day), row in newest_user_usage(job_run).items():
        sums = quota.setdefault((tenant, department), dict.fromkeys(money, Decimal(0)))
        for m in money:
            sums[m] += row[m]
    assert {k: v for k, v in quota.items() if any(v.values())} == want

    # GPU / CPU cost of the allocation (the larger of the two reports per artifact and hour) at the example prices
    prices = {(p.kind, p.item): p.unit_price for p in read_catalogue(REPO_ROOT / "sql" / "clickhouse" / "prices" / "example.yaml").prices}
    allocated: dict[tuple, dict[str, Decimal]] = {}
    credits_group = truth["windows"]["credits"]
    width = len(credits_group["key"])
    for row in credits_group["rows"]:
        hour = row[0] - row[0] % 3_600_000
        values = dict(zip(credits_group["metrics"], row[width:]))
        sums = allocated.setdefault((hour, *row[1:width]), dict.fromkeys(("wkf_gpu_s", "kuber_gpu_s", "wkf_cpu_s",
                                                                          "kuber_cpu_s"), Decimal(0)))
        for m in sums:
            sums[m] += values[m]
    cost: dict[tuple, Decimal] = {}
    for (hour, tenant, department, *_), s in allocated.items():
        gpu = max(s["wkf_gpu_s"], s["kuber_gpu_s"]) * prices[("gpu_hour", "*")] / 3600
        cpu = max(s["wkf_cpu_s"], s["kuber_cpu_s"]) * prices[("cpu_hour", "*")] / 3600
        cost[(tenant, department)] = cost.get((tenant, department), Decimal(0)) + gpu + cpu
    got = client.query(f"SELECT tenant_id, department_id, sum(gpu_cost + cpu_cost) FROM {database}.cost_usage_1h "
                       "GROUP BY tenant_id, department_id HAVING sum(gpu_cost + cpu_cost) > 0").result_rows
    cent = Decimal("0.01")
    assert {tuple(r[:2]): r[2].quantize(cent) for r in got} == {k: v.quantize(cent) for k, v in cost.items() if v}
