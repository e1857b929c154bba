"""Hostile input is normal input: generated usage-topic records never stop the consumer (each is applied or
rejected and counted), generated check requests (JSON, raw bytes, content types, huge bodies) never crash the
service (a 4xx problem or an answer)."""

from __future__ import annotations

import json
import random
import re
import socket

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.quota.app import MAX_BODY
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


def raw_exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request written as bytes on a fresh connection; (status, headers, body) read by Content-Length."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed before an answer: {data!r}"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, "the connection closed inside the body"
            rest += chunk
        return int(lines[0].split()[1]), headers, rest[:length]


def check_request(token: str, body: bytes, content_type: bytes | None = b"application/json",
                  length: int | None = None) -> bytes:
    head = b"POST /v1/check HTTP/1.1\r\nHost: quota\r\nAuthorization: Bearer " + token.encode() + b"\r\n"
    if content_type is not None:
        head += b"Content-Type: " + content_type + b"\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length) + body


def refused(stack: QuotaStack) -> float:
    text = requests.get(stack.url + "/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(r"telemetry_quota_checks_refused_total\{code=\"[^\"]+\"\} (\S+)", text))


content_types = st.sampled_from([b"application/json", b"application/json; charset=utf-8", b"application/problem+json",
                                 b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data", b"",
                                 b"application/jsonx", b"\xff\xfe"]) | st.none() | st.binary(max_size=20).filter(
    # what a header value may hold (RFC 9110: visible characters, space, tab, obs-text); anything else is refused by
    # uvicorn's HTTP parser with a plain 400 before the service sees the request
    lambda b: all(c == 9 or 32 <= c <= 126 or c >= 128 for c in b))
raw_bodies = st.binary(max_size=300) | bodies.map(json.dumps).map(str.encode) | st.sampled_from([
    b"", b"{", b"\xff\xfe{}", b'{"tenant": "\xff"}', b'{"tenant": "\\ud800"}', b"[" * 5000 + b"]" * 5000,
    b"{" + b'"a":{' * 2000 + b"}" * 2001, b"1" * 5000, b"NaN", b"null", '{"tenant": "é"}'.encode("utf-16")])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=raw_bodies, content_type=content_types)
def test_generated_bytes_and_content_types_get_an_answer_or_a_problem_never_a_crash(quota_stack, body, content_type):
    status, headers, answer = raw_exchange(quota_stack.url, check_request(
        quota_stack.tokens[("quota_client", 0)], body, content_type))
    assert status in (200, 400, 403, 404, 415), answer
    parsed = json.loads(answer)
    if status == 200:
        assert headers["content-type"] == "application/json" and isinstance(parsed["allow"], bool)
    else:
        assert headers["content-type"] == "application/problem+json"
        assert parsed["status"] == status and parsed["code"] and parsed["detail"] and parsed["instance"] == "/v1/check"


def test_huge_bodies_are_refused_with_413_before_they_are_read(quota_stack):
    token = quota_stack.tokens[("quota_client", 0)]
    before = refused(quota_stack)
    # announced: refused from the header, the gigabyte never sent
    status, headers, answer = raw_exchange(quota_stack.url, check_request(token, b"{", length=10**9))
    assert (status, json.loads(answer)["code"], headers.get("connection")) == (413, "body-too-large", "close")
    # chunked, no length: refused once the chunks pass the cap
    chunk = b"x" * 8192
    chunked = (b"POST /v1/check HTTP/1.1\r\nHost: quota\r\nAuthorization: Bearer " + token.encode()
               + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 3 + b"0\r\n\r\n")
    status, _, answer = raw_exchange(quota_stack.url, chunked)
    assert (status, json.loads(answer)["code"]) == (413, "body-too-large")
    just_under = json.dumps({"tenant": quota_stack.tenants[0], "id": "hot", "metric": "credits",
                             "amount": "1"}).encode().ljust(MAX_BODY)
    assert raw_exchange(quota_stack.url, check_request(token, just_under))[0] == 200
    assert raw_exchange(quota_stack.url, check_request(token, just_under + b" "))[0] == 413
    assert refused(quota_stack) - before == 3


@pytest.mark.parametrize("body, content_type, status, code, parameter", [
    (b"\xff\xfe\x00{", b"application/json", 400, "bad-parameter", None),
    (b'{"tenant": ', b"application/json", 400, "bad-parameter", None),
    (b"[" * 5000 + b"]" * 5000, b"application/json", 400, "bad-parameter", None),
    (b"tenant=qa&metric=credits", b"application/x-www-form-urlencoded", 415, "unsupported-media-type", None),
    (b'{"metric": "credits", "amount": "1"}', None, 400, "bad-parameter", "tenant"),
    (b'{"tenant": "x", "metric": "credits", "amount": "1", "amount2": 1}', b"application/json", 400, "bad-parameter",
     "amount2"),
])
def test_bad_bytes_get_the_problem_that_names_them(quota_stack, body, content_type, status, code, parameter):
    got, _, answer = raw_exchange(quota_stack.url, check_request(quota_stack.tokens[("quota_client", 0)], body,
                                                                 content_type))
    problem = json.loads(answer)
    assert (got, problem["code"], problem.get("parameter")) == (status, code, parameter), problem


def test_the_check_is_documented_in_openapi_and_other_methods_go_to_fastapi(quota_stack):
    spec = requests.get(quota_stack.url + "/openapi.json", timeout=10).json()
    schema = spec["paths"]["/v1/check"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"tenant", "scope", "id", "metric", "amount", "period"}
    assert schema["additionalProperties"] is False and set(schema["required"]) == {"tenant", "metric", "amount"}
    wrong = requests.get(quota_stack.url + "/v1/check", timeout=10)
    assert wrong.status_code == 405 and wrong.json()["code"] == "http-405"
