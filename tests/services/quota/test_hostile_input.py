"""Hostile input is normal input: generated usage-topic records never stop the consumer (each is applied or
rejected and counted), generated check requests never crash the service (a 4xx problem or an answer)."""

from __future__ import annotations

import json
import random
import re

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.quota.consumer import BadRecord, parse
from telemetry import topics
from tests.services.quota.conftest import QuotaStack, today
from tests.support.polling import eventually

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                       max_size=5), max_leaves=12)
usage_like = st.fixed_dictionaries({}, optional={
    "tokens_in": json_values, "tokens_out": st.integers(-10, 10**40), "wkf_credits": st.text(max_size=30),
    "kuber_credits": st.floats(allow_nan=True, allow_infinity=True), "wkf_gpu_seconds": st.decimals(allow_nan=True).map(str)})
keys = st.fixed_dictionaries({}, optional={"tenant_id": json_values | st.text(max_size=10), "department_id": st.text(max_size=5),
                                            "user_id": json_values | st.text(max_size=5),
                                            "day": st.sampled_from(["2026-02-30", "2026-13-01", "26-1-1", "2026-02-03",
                                                                    "２０２６-01-01"]) | st.text(max_size=12)})
raw_bytes = st.binary(max_size=64) | st.none()


@settings(max_examples=400, deadline=None)
@given(key=keys.map(json.dumps).map(str.encode) | raw_bytes, value=usage_like.map(json.dumps).map(str.encode) | raw_bytes)
def test_a_generated_record_is_read_or_refused_with_a_reason(key, value):
    try:
        (tenant, _, user, day), columns = parse(key, value)
    except BadRecord as exc:
        assert str(exc)
        return
    assert tenant and user and len(day) == 10
    assert columns is None or all(c >= 0 for c in columns)


def rejected(stack: QuotaStack) -> float:
    text = requests.get(stack.url + "/metrics", timeout=10).text
    found = re.search(r'telemetry_quota_usage_records_total\{result="rejected"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def test_hostile_records_on_the_topic_are_counted_and_the_feed_goes_on(quota_stack):
    tenant = quota_stack.tenants[1]
    rng = random.Random(18)
    good_key = {"tenant_id": tenant, "department_id": "d2", "user_id": "quiet", "day": today()}
    bad = [(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40))), b"{}") for _ in range(10)]
    bad += [(json.dumps(good_key).encode(), json.dumps({"wkf_credits": v}).encode())
            for v in (-1, "NaN", "1e40", [1], {"x": 1}, True)]
    bad += [(json.dumps({**good_key, "day": d}).encode(), b"{}") for d in ("2026-02-30", "yesterday", 20260101)]
    # (a record without a key never gets there: the compacted topic's broker refuses it, INVALID_RECORD)
    bad += [(b"[1,2]", b"{}"), (json.dumps(good_key).encode(), b"\xff\xfe"),
            (json.dumps(good_key).encode(), b"[]")]
    before = rejected(quota_stack)
    assert quota_stack.producer is not None
    delivered: list = []
    for key, value in bad:
        quota_stack.producer.produce(topics.USAGE_TOPIC, value, key,
                                     on_delivery=lambda err, msg: delivered.append((err, msg.partition(), msg.offset())))
    quota_stack.producer.flush(10)
    assert len(delivered) == len(bad) and not [d for d in delivered if d[0]], delivered
    quota_stack.produce(tenant, "d2", "quiet", today(), tokens_in=42)  # after them, a good one
    client = quota_stack.client(tenant=1)
    eventually(lambda: client.state(tenant, "user", "quiet")["metrics"]["tokens"]["used"]["day"] == "42",
               "the good record after the hostile ones", 30)
    # the partitions are read side by side: the good record may come before hostile ones of other partitions
    eventually(lambda: rejected(quota_stack) - before == len(bad), "every hostile record counted", 30)
    assert rejected(quota_stack) - before == len(bad)


bodies = st.fixed_dictionaries({}, optional={
    "tenant": st.text(max_size=12) | json_values, "scope": st.sampled_from(["user", "tenant", "project", "x"]) | json_values,
    "id": st.text(max_size=12) | json_values, "metric": st.sampled_from(["credits", "cost", "tokens", "x"]) | json_values,
    "amount": json_values | st.decimals(allow_nan=True).map(str) | st.sampled_from(["1e999999", "-0", "0.1", "1e-30"]),
    "period": st.sampled_from(["day", "month", "year"]) | json_values})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies | json_values)
def test_generated_check_requests_never_crash_the_service(quota_stack, body):
    # NaN and Infinity as bare JSON words, as a careless client would send them
    response = requests.post(quota_stack.url + "/v1/check", data=json.dumps(body), timeout=30,
                             headers={"Authorization": f"Bearer {quota_stack.tokens[('quota_client', 0)]}",
                                      "Content-Type": "application/json"})
    assert response.status_code in (200, 400, 403, 404), response.text
    answer = response.json()
    if response.status_code == 200:
        assert isinstance(answer["allow"], bool) and answer["source"] in ("memory", "clickhouse", "fallback")
    else:
        assert answer["code"] and answer["detail"]
