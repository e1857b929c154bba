"""Hostile input through the real job on the real broker: over 10,000 generated records of every bad kind (null
values, empty, binary, huge, control characters, deep nesting, wrong types, Unicode digits, absurd numbers and
timestamps, records stamped a day ahead, duplicate ids) mixed with valid events of every family. The job must
never restart (polled from its Flink REST API while it runs), and every record must be accounted for per topic:
consumed = valid + DLQ + duplicates in the ingest counters, each class exactly as generated, and every DLQ row
with a reason. The generator decides each record's class itself, not by asking the validator.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
import requests
from confluent_kafka import Producer

from schemas import FAMILIES, topics_for_family
from schemas.examples import EXAMPLES, example
from telemetry.settings import REPO_ROOT
from tests.support.job_runs import JOB_TIMEOUT_S, job_command, loaded_clickhouse, reset_topics

pytestmark = pytest.mark.stack
SEED = 20261203
RECORDS = 12_000
VALID, DUPLICATE, DLQ = "valid", "duplicate", "dlq"
# Recent, or the tables' TTL would drop the rows as they are written.
BASE = (datetime.now(timezone.utc) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
BASE_MS = int(BASE.timestamp() * 1000)
# Ahead of the job's clock by more than its allowed skew (5 min), yet within what Kafka 4's broker takes
# (log.message.timestamp.after.max.ms, 1 h): further ahead, the broker refuses the record at produce time.
AHEAD_MS = 30 * 60_000


@dataclass(frozen=True)
class Record:
    topic: str
    value: bytes | None
    kafka_ts: int  # ms; librdkafka takes 0 for "now", so 1 stands for a producer that stamps nothing sensible
    expect: str  # VALID, DUPLICATE or DLQ


def event(rng: random.Random, family: str, ts_ms: int, **overrides: Any) -> dict[str, Any]:
    """A valid event of the family: one of its examples with a fresh id and the given time."""
    base = example(family, rng.randrange(len(EXAMPLES[family])))
    stamp = datetime.fromtimestamp(ts_ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {**base, "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)), "ts": stamp, **overrides}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=True).encode()


def hostile_records(seed: int, n: int) -> list[Record]:
    rng = random.Random(seed)
    families = sorted(FAMILIES)
    valid_sent: list[Record] = []
    out: list[Record] = []

    def ts() -> int:
        return BASE_MS + rng.randrange(3_600_000)

    def valid(family: str, **overrides: Any) -> Record:
        when = ts()
        return Record(topics_for_family(family)[0], dumps(event(rng, family, when, **overrides)), when, VALID)

    def bad(value: bytes | None, family: str | None = None) -> Record:
        family = family or rng.choice(families)
        return Record(topics_for_family(family)[0], value, ts(), DLQ)

    def mangled(family: str, mutate: Callable[[dict[str, Any]], Any]) -> Record:
        body = event(rng, family, ts())
        return bad(dumps(mutate(body)), family)

    def restamped(kafka_ts: int, expect: str) -> Record:
        """A valid event in a record whose Kafka timestamp says something else."""
        record = valid(rng.choice(families))
        return Record(record.topic, record.value, kafka_ts, expect)

    def llm_ahead() -> Record:
        when = int(time.time() * 1000) + AHEAD_MS
        return Record(topics_for_family("llm_request")[0], dumps(event(rng, "llm_request", when)), when, DLQ)

    kinds: list[tuple[int, Callable[[], Record]]] = [
        (20, lambda: valid(rng.choice(families))),
        (3, lambda: valid("xumi_load", labels={"attempt": rng.choice(["²", "١٢", "0", "101", "9" * 30, "³"]),
                                               "model_version": "v"})),  # valid, and no attempt the join can use
        (2, lambda: restamped(1, VALID)),  # Kafka timestamp in 1970: a correction or late, but valid
        (6, lambda: Record("", None, 0, DUPLICATE)),  # placeholder: a delivery of an earlier valid record again
        (3, lambda: bad(None)),  # tombstone
        (2, lambda: bad(b"")),
        (4, lambda: bad(b"\xff" + rng.randbytes(rng.randrange(1, 2048)))),  # binary, never UTF-8
        (1, lambda: bad(rng.choice([b"\x01", b"a", b" ", "€".encode()]) * rng.randrange(65_537, 150_000))),  # huge
        (4, lambda: bad(dumps(event(rng, "llm_request", ts()))[:-1].replace(b'"tenant_id":"', b'"tenant_id":"\x01\x02\n', 1),
                        "llm_request")),  # raw control characters inside a JSON string
        (2, lambda: bad(b"[" * rng.randrange(1_000, 20_000))),  # nesting bomb
        (2, lambda: mangled("xumi_task", lambda e: {**e, "labels": nested(rng.randrange(2, 300))})),
        (4, lambda: mangled(rng.choice(families), lambda e: {**e, rng.choice(["tenant_id", "event_id", "ts", "labels"]):
                                                             rng.choice([42, True, [], {"a": 1}, 1.5])})),  # wrong types
        (3, lambda: mangled("llm_request", lambda e: {**e, "tokens_in": rng.choice([10**400, -1, 2**64, 1e309])})),
        (2, lambda: mangled("llm_request", lambda e: {**e, "latency_ms": float("nan")})),  # NaN: not JSON
        (3, lambda: mangled(rng.choice(families), lambda e: {**e, "ts": rng.choice([
            "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z", 2**62, -1, "2026-13-45T99:99:99Z", "yesterday"])})),
        (2, lambda: mangled(rng.choice(families), lambda e: {**e, "surprise": "\ud800" if rng.random() < 0.5 else 1})),
        (2, lambda: mangled(rng.choice(families), lambda e: {**e, "labels": {f"k{i}": "v" for i in range(17)}})),
        (2, lambda: restamped(int(time.time() * 1000) + AHEAD_MS, DLQ)),  # the record stamped ahead of the clock
        (2, llm_ahead),  # the report: LLM requests stamped ahead, ts and record alike
    ]
    weights = [w for w, _ in kinds]
    while len(out) < n:
        record = rng.choices(kinds, weights)[0][1]()
        if record.expect == DUPLICATE:
            if not valid_sent:
                continue
            first = rng.choice(valid_sent)
            record = Record(first.topic, first.value, first.kafka_ts, DUPLICATE)
        elif record.expect == VALID:
            valid_sent.append(record)
        out.append(record)
    return out


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"x": value}
    return value


def produce(bootstrap: str, records: list[Record]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "message.max.bytes": 1_000_000})
    failed: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failed.append(f"{msg.topic()}: {err}")

    for r in records:
        while True:
            try:
                producer.produce(r.topic, r.value, timestamp=r.kafka_ts, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.5)
    assert producer.flush(60) == 0
    assert not failed, f"{len(failed)} records were not delivered, e.g. {failed[:3]}"


def restarts(rest_url: str) -> int | None:
    """numRestarts of the running job, None while it has none running (starting up, or done)."""
    try:
        jobs = requests.get(f"{rest_url}/jobs/overview", timeout=2).json()["jobs"]
        running = [j["jid"] for j in jobs if j["state"] in ("RUNNING", "RESTARTING", "FAILING")]
        if not running:
            return None
        metrics = requests.get(f"{rest_url}/jobs/{running[0]}/metrics", params={"get": "numRestarts"}, timeout=2).json()
        return int(metrics[0]["value"]) if metrics else 0
    except (requests.RequestException, ValueError, KeyError, IndexError):
        return None


@pytest.fixture(scope="module")
def hostile_run(kafka_url: str, stack_env: dict[str, str], clickhouse_server: str,
                tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("hostile")
    reset_topics(stack_env)
    records = hostile_records(SEED, RECORDS)
    produce(kafka_url, records)
    with socket.socket() as probe:  # a free port for the job's REST API
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Restarts allowed (no --no-restart), so a record that fails the job shows as a restart, not an exit.
    command = [arg for arg in job_command(stack_env, work, "--lake-uri", str(work / "lake"), "--prometheus-url", "",
                                          "--rest-port", str(port)) if arg != "--no-restart"]
    seen: list[int] = []
    with open(work / "job.log", "w") as log:
        job = subprocess.Popen(command, cwd=REPO_ROOT, env=stack_env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + JOB_TIMEOUT_S
        try:
            while job.poll() is None and time.monotonic() < deadline:
                count = restarts(f"http://127.0.0.1:{port}")
                if count is not None:
                    seen.append(count)
                    if count:
                        break
                time.sleep(0.5)
        finally:
            if job.poll() is None:
                job.kill()
            code = job.wait()
    with loaded_clickhouse(stack_env, clickhouse_server) as (client, database):
        ingest = {row[0]: row[1:] for row in client.query(
            f"SELECT topic, sum(consumed), sum(valid), sum(dlq), sum(duplicates) FROM {database}.ingest_stats_10s "
            "GROUP BY topic").result_rows}
        dlq = client.query(f"SELECT topic, reason, count() FROM {database}.dlq_events FINAL GROUP BY topic, reason").result_rows
    return {"records": records, "code": code, "restarts": seen, "log": (work / "job.log").read_text()[-4000:],
            "ingest": ingest, "dlq": dlq}


def test_no_record_restarts_or_stops_the_job(hostile_run: dict[str, Any]) -> None:
    assert hostile_run["restarts"], "the job's REST API never answered while it ran"
    assert max(hostile_run["restarts"]) == 0, hostile_run["log"]
    assert hostile_run["code"] == 0, hostile_run["log"]


def test_every_record_is_accounted_for_per_topic(hostile_run: dict[str, Any]) -> None:
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for r in hostile_run["records"]:
        expected[r.topic][r.expect] += 1
    assert sum(sum(c.values()) for c in expected.values()) >= 10_000
    got = {topic: (consumed, valid, dlq, duplicates) for topic, (consumed, valid, dlq, duplicates)
           in hostile_run["ingest"].items()}
    want = {topic: (sum(c.values()), c[VALID], c[DLQ], c[DUPLICATE]) for topic, c in expected.items()}
    assert got == want
    assert all(consumed == valid + dlq + duplicates for consumed, valid, dlq, duplicates in got.values())


def test_every_dlq_record_is_stored_with_a_reason(hostile_run: dict[str, Any]) -> None:
    per_topic = Counter()
    reasons = Counter()
    for topic, reason, count in hostile_run["dlq"]:
        assert reason, f"{count} DLQ rows of {topic} without a reason"
        per_topic[topic] += count
        reasons[reason] += count
    assert dict(per_topic) == {t: c for t, (_, _, c, _) in hostile_run["ingest"].items() if c}
    # the kinds that used to stop the job are there under their own reasons, and nothing raised in the job
    assert {"null_value", "oversize", "future_timestamp", "not_json"} <= reasons.keys()
    assert "internal_error" not in reasons
