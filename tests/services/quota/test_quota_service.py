"""`python -m services.quota` end to end on real parts: usage records on the test stack's Kafka (as the job writes
them), limits in its PostgreSQL, cold users from the dev ClickHouse engine's usage_1d; the Python client; exceeded
events on the catalogue's topic and the Prometheus counter; restart; faults (ClickHouse and Kafka away)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
import requests
from confluent_kafka import Consumer, TopicPartition

from services.quota.client import QuotaError
from telemetry import topics
from telemetry.settings import REPO_ROOT
from tests.services.quota.conftest import QuotaStack, start_quota, today
from tests.support.polling import eventually

D = Decimal


def used(stack: QuotaStack, tenant: str, user: str, metric: str, period: str = "day") -> Decimal | None:
    value = stack.client().state(tenant, "user", user)["metrics"][metric]["used"][period]
    return None if value is None else D(value)


def test_help_and_bad_settings_exit_with_a_clear_message(quota_stack):
    env = {**quota_stack.env, "PYTHONPATH": str(REPO_ROOT)}
    shown = subprocess.run([sys.executable, "-m", "services.quota", "--help"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0 and topics.USAGE_TOPIC in shown.stdout and "quota_client" in shown.stdout
    for name, value in (("QUOTA_FAIL_POLICY", "sometimes"), ("QUOTA_PORT", "http"), ("QUOTA_STALE_AFTER_S", "0")):
        bad = subprocess.run([sys.executable, "-m", "services.quota"], env={**env, name: value}, capture_output=True,
                             text=True, timeout=60)
        assert bad.returncode == 2 and name in bad.stderr, (name, bad.stderr)


def test_usage_crossing_a_hard_limit_turns_the_next_check_into_a_deny_and_emits_events(quota_stack):
    tenant = quota_stack.tenants[0]
    quota_stack.set_limit(tenant, "user", "hot", "credits", "day", "5", "10")
    client = quota_stack.client()
    # the limit is seen within QUOTA_REFRESH_S, and the limited user loaded ahead of any check
    eventually(lambda: client.check(tenant, "credits", "1", user="hot").raw["limits"], "the limit loaded", 30)
    events = Consumer({"bootstrap.servers": quota_stack.kafka, "group.id": f"t-{uuid.uuid4().hex}",
                       "auto.offset.reset": "latest", "enable.auto.commit": False})
    parts = events.list_topics(topics.QUOTA_EXCEEDED_TOPIC, timeout=10).topics[topics.QUOTA_EXCEEDED_TOPIC].partitions
    events.assign([TopicPartition(topics.QUOTA_EXCEEDED_TOPIC, p, events.get_watermark_offsets(
        TopicPartition(topics.QUOTA_EXCEEDED_TOPIC, p), timeout=10)[1]) for p in parts])
    day = today()
    quota_stack.produce(tenant, "d1", "hot", day, wkf_credits=D("4"), kuber_credits=D("3.5"))
    eventually(lambda: client.check(tenant, "credits", "1", user="hot").used == D(4), "the first update seen", 30)
    decision = client.check(tenant, "credits", "1", user="hot")
    assert (decision.allow, decision.level, decision.limit, decision.remaining) == (True, "ok", D(10), D(6))
    assert client.check(tenant, "credits", "2", user="hot").level == "soft"
    quota_stack.produce(tenant, "d1", "hot", day, wkf_credits=D("10.25"), kuber_credits=D("3.5"))
    denied = eventually(lambda: (d := client.check(tenant, "credits", "0.01", user="hot")) and not d.allow and d,
                        "a deny after the crossing", 30)
    assert (denied.level, denied.used, denied.remaining, denied.source, denied.degraded) == (
        "hard", D("10.25"), D(0), "memory", False)
    assert denied.period == "day" and denied.raw["period_start"] == day

    seen: list[dict] = []

    def both_levels() -> bool:
        for message in events.consume(100, timeout=0.5):
            record = json.loads(message.value())
            if record["tenant_id"] == tenant:
                seen.append(record)
        return {r["level"] for r in seen} == {"soft", "hard"}

    eventually(both_levels, "a soft and a hard exceeded event", 30)
    events.close()
    assert {r["event_name"] for r in seen} == {"quota.limit.exceeded.soft", "quota.limit.exceeded.hard"}
    assert all(r["scope"] == "user" and r["scope_id"] == "hot" and r["metric"] == "credits" for r in seen)
    metrics = requests.get(quota_stack.url + "/metrics", timeout=10).text
    assert 'telemetry_quota_exceeded_total{metric="credits",scope="user",period="day",level="hard"} 1' in metrics


def ch_usage(stack: QuotaStack, tenant: str, user: str) -> tuple[Decimal, Decimal]:
    """(today, month) of the user's credits as ClickHouse's usage_1d has them."""
    rows = stack.ch().query(f"""
        SELECT sumIf(greatest(w, k), day = today()), sum(greatest(w, k)) FROM (
            SELECT toDate(window_start) AS day, sum(wkf_credits) AS w, sum(kuber_credits) AS k
            FROM {stack.ch_database}.usage_1d
            WHERE tenant_id = %(t)s AND user_id = %(u)s AND toStartOfMonth(window_start) = toStartOfMonth(now())
            GROUP BY day)""", parameters={"t": tenant, "u": user}).result_rows
    return D(rows[0][0]), D(rows[0][1])


def write_usage_10s(stack: QuotaStack, tenant: str, user: str, rows: list[tuple[datetime, str, str, int]]) -> None:
    client = stack.ch()
    data = [[when, tenant, "d1", "p1", user, "m", wkf, kuber, tokens] for when, wkf, kuber, tokens in rows]
    client.insert(f"{stack.ch_database}.usage_10s", data,
                  column_names=["window_start", "tenant_id", "department_id", "project_id", "user_id", "model",
                                "wkf_credits", "kuber_credits", "tokens_in"])


def test_a_cold_users_answer_equals_the_clickhouse_aggregate_and_the_stream_takes_over_its_day(quota_stack):
    tenant = quota_stack.tenants[0]
    now = datetime.now(timezone.utc).replace(microsecond=0)
    first = now.replace(day=1, hour=0, minute=0, second=0)
    write_usage_10s(quota_stack, tenant, "cold", [(first, "7.125", "2", 10), (now.replace(second=0), "1.5", "4", 5),
                                                  (now.replace(second=10), "0.25", "0", 0)])
    ch_today, ch_month = ch_usage(quota_stack, tenant, "cold")
    assert ch_month > 0
    decision = quota_stack.client().check(tenant, "credits", "1", user="cold", period="month")
    assert decision.source == "clickhouse"
    state = quota_stack.client().state(tenant, "user", "cold")
    assert state["source"] == "memory"  # kept in memory after the first load
    assert (D(state["metrics"]["credits"]["used"]["day"]), D(state["metrics"]["credits"]["used"]["month"])) == (
        ch_today, ch_month)
    # the stream's record of today is the day's whole total: it replaces ClickHouse's day, never adds to it
    quota_stack.produce(tenant, "d1", "cold", today(), wkf_credits=D("6"), kuber_credits=D("1"))
    eventually(lambda: used(quota_stack, tenant, "cold", "credits") == D(6), "the stream's day", 30)
    assert used(quota_stack, tenant, "cold", "credits", "month") == ch_month - ch_today + D(6)


def test_a_correction_moves_the_used_amount(quota_stack):
    tenant = quota_stack.tenants[0]
    quota_stack.produce(tenant, "d1", "corr", today(), tokens_in=100, tokens_out=20)
    eventually(lambda: used(quota_stack, tenant, "corr", "tokens") == 120, "the first total", 30)
    # a late event inside the allowed lateness: the job sends the day's corrected total under the same key
    quota_stack.produce(tenant, "d1", "corr", today(), tokens_in=130, tokens_out=20)
    eventually(lambda: used(quota_stack, tenant, "corr", "tokens") == 150, "the corrected total", 30)


def test_after_a_restart_the_answers_equal_those_before_it(quota_stack):
    tenant = quota_stack.tenants[0]
    users = ("hot", "cold", "corr", "quiet")
    before = {u: quota_stack.client().state(tenant, "user", u)["metrics"] for u in users}
    decision = quota_stack.client().check(tenant, "credits", "0.01", user="hot")
    quota_stack.process.stop()
    quota_stack.process = start_quota(quota_stack.env, quota_stack.work / "quota.log")
    after = {u: quota_stack.client().state(tenant, "user", u)["metrics"] for u in users}
    assert after == before
    again = quota_stack.client().check(tenant, "credits", "0.01", user="hot")
    assert (again.allow, again.used, again.limit) == (decision.allow, decision.used, decision.limit)


def test_callers_are_authenticated_and_see_only_their_tenants(quota_stack):
    tenant, other = quota_stack.tenants
    body = {"tenant": tenant, "scope": "user", "id": "hot", "metric": "credits", "amount": "1"}
    assert requests.post(quota_stack.url + "/v1/check", json=body, timeout=10).status_code == 401
    bad = requests.post(quota_stack.url + "/v1/check", json=body, timeout=10,
                        headers={"Authorization": "Bearer tlm_0123456789abcdef_" + "x" * 43})
    assert bad.status_code == 401
    with pytest.raises(QuotaError) as refused:
        quota_stack.client(tenant=1).check(tenant, "credits", "1", user="hot")
    assert (refused.value.status, refused.value.code) == (403, "tenant-not-permitted")
    with pytest.raises(QuotaError) as role:
        quota_stack.client("pipeline_td").check(tenant, "credits", "1", user="hot")
    assert (role.value.status, role.value.code) == (403, "metric-not-permitted")
    assert quota_stack.client("financial_director").state(tenant, "tenant")["scope"] == "tenant"


@pytest.mark.parametrize("change, parameter, status", [
    ({"id": "nobody"}, None, 404), ({"metric": "bananas"}, "metric", 400), ({"amount": "-1"}, "amount", 400),
    ({"amount": "1e31"}, "amount", 400), ({"amount": "NaN"}, "amount", 400), ({"amount": "1e-13"}, "amount", 400),
    ({"amount": "ten"}, "amount", 400), ({"period": "week"}, "period", 400), ({"scope": "galaxy"}, "scope", 400),
    ({"id": "a b"}, "id", 400), ({"extra": 1}, "extra", 400), ({"tenant": "zzz"}, "tenant", 403),
])
def test_bad_input_is_a_clear_4xx(quota_stack, change, parameter, status):
    body = {"tenant": quota_stack.tenants[0], "scope": "user", "id": "hot", "metric": "credits", "amount": "1", **change}
    response = requests.post(quota_stack.url + "/v1/check", json=body, timeout=10,
                             headers={"Authorization": f"Bearer {quota_stack.tokens[('quota_client', 0)]}"})
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["detail"] and problem.get("parameter") == parameter


def test_clickhouse_away_gives_cold_users_the_policys_answer_marked_degraded(quota_stack):
    env = {**quota_stack.env, "CLICKHOUSE_URL": "http://127.0.0.1:9", "QUOTA_FAIL_POLICY": "open,credits=closed"}
    process = start_quota(env, quota_stack.work / "quota-no-clickhouse.log", "--no-wait")
    try:
        client = quota_stack.client(tenant=1)
        client.url = process.url
        tenant = quota_stack.tenants[1]
        credits = client.check(tenant, "credits", "1", user="quiet")
        tokens = client.check(tenant, "tokens", "1", user="quiet")
        assert (credits.allow, credits.source, credits.degraded) == (False, "fallback", True)
        assert (tokens.allow, tokens.source, tokens.degraded) == (True, "fallback", True)
        assert "ClickHouse" in credits.reason and "fail-closed" in credits.reason
    finally:
        process.stop()


def test_kafka_away_answers_follow_the_policy_and_are_marked_stale(quota_stack):
    env = {**quota_stack.env, "KAFKA_DIRECT_URL": "127.0.0.1:9", "QUOTA_FAIL_POLICY": "closed"}
    process = start_quota(env, quota_stack.work / "quota-no-kafka.log", ready=False)
    try:
        health = requests.get(process.url + "/health", timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "rebuilding"
        client = quota_stack.client()
        client.url = process.url
        answer = client.check(quota_stack.tenants[0], "tokens", "1", user="hot")
        assert (answer.allow, answer.source, answer.degraded, answer.stale, answer.data_age_s) == (
            False, "fallback", True, True, None)
    finally:
        process.stop()
