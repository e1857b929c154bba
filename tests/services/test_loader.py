"""The ClickHouse loader (services.loader) run as a real process against a real Kafka broker (the test stack's,
only Kafka started) and the dev ClickHouse server, each test in a freshly migrated database and on topics of its
own: only committed transactions are loaded, a SIGKILL at a random point loses and doubles nothing (rollups
included), rejected rows go to the DLQ or stop their partition, --once exits when caught up, SIGTERM finishes
the batch in hand, and /metrics counts what happened.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from services.loader.insert import insert_rows
from telemetry.migrate import migrate
from telemetry.settings import REPO_ROOT
from tests.conftest import dev_clickhouse
from tests.support.databases import migrated_database
from tests.support.polling import eventually

# Recent, or the tables' 12-month TTL would drop the rows as they are written
BASE = (datetime.now(timezone.utc) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def ch(clickhouse_server: str) -> Iterator[Client]:
    client = clickhouse_connect.get_client(dsn=clickhouse_server)
    yield client
    client.close()


@pytest.fixture
def database(ch: Client) -> Iterator[str]:
    with migrated_database(ch, "l") as name:
        yield name


@pytest.fixture
def loader_env(stack_env: dict[str, str], kafka_url: str, clickhouse_server: str, database: str) -> dict[str, str]:
    return {**stack_env, "CLICKHOUSE_URL": clickhouse_server, "CLICKHOUSE_DATABASE": database,
            "LOADER_GROUP_ID": f"loader-test-{uuid.uuid4().hex[:8]}", "LOADER_METRICS_PORT": "0"}


def new_topic(kafka_url: str, partitions: int) -> str:
    name = f"loader-test-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": kafka_url})  # kept referenced: a collected client fails its futures
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    return name


def produce(kafka_url: str, transactions: list[tuple[list[tuple[str, int, bytes | None]], bool]]) -> None:
    """Each transaction: its (topic, partition, value) records, and whether it commits (else it aborts)."""
    producer = Producer({"bootstrap.servers": kafka_url, "transactional.id": f"loader-test-{uuid.uuid4()}", "linger.ms": 10})
    producer.init_transactions(30)
    for records, commit in transactions:
        producer.begin_transaction()
        for topic, partition, value in records:
            producer.produce(topic, value, partition=partition)
        # Delivered before the transaction ends: abort_transaction right after produce() races the partitions
        # being added to the transaction and fails now and then with INVALID_TXN_STATE (librdkafka issue 4849).
        assert producer.flush(30) == 0, "the test's records were not delivered in 30 s"
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)


def ch_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def usage_row(i: int, user: str | None = None) -> bytes:
    """A usage delta with a key of its own (so a duplicate shows as requests = 2 for that key)."""
    return json.dumps({
        "window_start": ch_time(BASE + timedelta(seconds=10 * (i % 720))), "tenant_id": "t1", "department_id": "d1",
        "project_id": "p1", "user_id": user or f"u{i}", "model": "m", "requests": 1, "tokens_in": i,
        "credits": i / 8, "errors_by_type": {"timeout": i % 2}, "latency_hist": {str(i % 7): 1},
    }).encode()


def audit_row(i: int, **extra: Any) -> bytes:
    return json.dumps({"event_id": str(uuid.UUID(int=i + 1)), "ts": ch_time(BASE + timedelta(seconds=i)), "topic": "pbac_access",
                       "event_name": "pbac.access", "tenant_id": "t1", "user_id": f"u{i}", "decision": "allow", **extra}).encode()


def run_once(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.loader", "--once", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def start(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "services.loader", *args], cwd=REPO_ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def usage_totals(ch: Client, database: str, table: str) -> tuple[int, int, int, float]:
    """(keys, requests, max requests of a key, tokens_in, credits) of a usage table, summed per key."""
    return ch.query(
        f"SELECT count(), sum(r), max(r), sum(t), sum(c) FROM (SELECT sum(requests) AS r, sum(tokens_in) AS t, "
        f"sum(credits) AS c FROM {database}.{table} GROUP BY user_id, window_start)"
    ).result_rows[0]


def positions(ch: Client, database: str, topic: str) -> dict[int, tuple[int, int, str]]:
    rows = ch.query(f"SELECT partition, argMax(tuple(first_offset, last_offset, state), seq) FROM {database}.loader_progress "
                    f"WHERE topic = '{topic}' GROUP BY partition").result_rows
    return {p: tuple(v) for p, v in rows}  # type: ignore[misc]


@pytest.mark.stack
def test_only_committed_rows_are_loaded_and_once_exits_when_caught_up(kafka_url: str, loader_env: dict[str, str], ch: Client, database: str) -> None:
    usage, audit = new_topic(kafka_url, 3), new_topic(kafka_url, 1)
    committed = list(range(0, 600)) + list(range(900, 1500))
    produce(kafka_url, [
        ([(usage, i % 3, usage_row(i)) for i in range(0, 600)] + [(audit, 0, audit_row(i)) for i in range(40)], True),
        ([(usage, i % 3, usage_row(i, user="aborted")) for i in range(600, 900)] + [(audit, 0, audit_row(i, user_id="aborted")) for i in range(40, 50)], False),
        ([(usage, i % 3, usage_row(i)) for i in range(900, 1500)], True),
    ])
    topics = ("--topics", f"{usage}=usage_10s", f"{audit}=audit_log", "--batch-rows", "250")
    first = run_once(loader_env, *topics)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "assigned 4 partitions: 0 resume after their last batch, 0 replay an interrupted batch, 4 start at the beginning" in first.stdout

    expected = (len(committed), len(committed), 1, sum(committed), pytest.approx(sum(i / 8 for i in committed)))
    assert usage_totals(ch, database, "usage_10s") == expected
    assert ch.command(f"SELECT count() FROM {database}.usage_10s WHERE user_id = 'aborted'") == 0
    assert ch.query(f"SELECT count(), countIf(user_id = 'aborted') FROM {database}.audit_log").result_rows[0] == (40, 0)
    # The rollups hold the same sums as the 10 s table
    for rollup in ("usage_1m", "usage_1h", "usage_1d"):
        sums = ch.query(f"SELECT sum(requests), sum(tokens_in) FROM {database}.{rollup}").result_rows[0]
        assert sums == (len(committed), sum(committed)), rollup
    # Every partition's newest mark is a loaded batch ending at its last committed record
    marks = positions(ch, database, usage)
    assert sorted(marks) == [0, 1, 2] and all(state == "loaded" for _, _, state in marks.values())

    again = run_once(loader_env, *topics)  # caught up: nothing more to insert, nothing inserted twice
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 rows inserted" in again.stdout and "resume after their last batch" in again.stdout
    assert usage_totals(ch, database, "usage_10s") == expected
    assert ch.command(f"SELECT count() FROM {database}.audit_log") == 40


@pytest.mark.stack
def test_sigkill_at_random_points_then_restart_loads_every_row_exactly_once(
    kafka_url: str, loader_env: dict[str, str], ch: Client, database: str, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    topic = new_topic(kafka_url, 6)
    n = 60_000
    transactions = []
    for start_at in range(0, n, 3000):  # committed transactions of 3000 rows, an aborted one after every third
        transactions.append(([(topic, i % 6, usage_row(i)) for i in range(start_at, start_at + 3000)], True))
        if start_at % 9000 == 0:
            transactions.append(([(topic, i % 6, usage_row(i, user="aborted")) for i in range(500)], False))
    produce(kafka_url, transactions)
    args = ("--topics", f"{topic}=usage_10s", "--batch-rows", "500", "--batch-ms", "50")

    def loaded() -> int:
        return int(ch.command(f"SELECT sum(requests) FROM {database}.usage_10s") or 0)

    for kill in range(4):
        threshold = rng.randint(n * (2 * kill + 1) // 20, n * (2 * kill + 2) // 20)
        log = tmp_path / f"loader-{kill}.log"
        proc = start(loader_env, log, *args)
        try:
            eventually(lambda: loaded() >= threshold, f"{threshold} rows loaded (seed {seed})")
            # Right after a batch shows up the next one is rarely on its way yet: a random pause lands the kill
            # anywhere, often while an insert is in flight or done but not yet marked loaded.
            time.sleep(rng.uniform(0, 0.3))
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # loaded() counts duplicates too, so it may pass n only if something doubled: checked at the end
        assert loaded() < n, f"the loader finished before the kill, so nothing was interrupted (seed {seed})"
        if kill:  # every restart after a kill finds the batch in flight (or last inserted) and replays it
            assert "replaying the interrupted batch" in log.read_text(), log.read_text()

    final = run_once(loader_env, *args)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "replaying the interrupted batch" in final.stdout
    numbers = range(n)
    expected = (n, n, 1, sum(numbers), pytest.approx(sum(i / 8 for i in numbers)))
    assert usage_totals(ch, database, "usage_10s") == expected, f"seed {seed}"
    for rollup in ("usage_1m", "usage_1h"):  # a row doubled in a rollup shows as a key with 2 requests
        assert usage_totals(ch, database, rollup) == expected, f"{rollup}, seed {seed}"
    assert ch.command(f"SELECT count() FROM {database}.usage_10s WHERE user_id = 'aborted'") == 0


@pytest.mark.stack
def test_rejected_rows_go_to_the_dlq_and_the_rest_of_the_batch_is_loaded(
    kafka_url: str, loader_env: dict[str, str], ch: Client, database: str
) -> None:
    audit, dlq = new_topic(kafka_url, 1), new_topic(kafka_url, 1)
    bad = {3: b'{"event_id": "not-a-uuid", "ts": "2026-01-01 00:00:00"}', 7: audit_row(7, unknown_column=1), 9: None}
    values = [bad.get(i, audit_row(i)) for i in range(12)]
    produce(kafka_url, [([(audit, 0, v) for v in values], True)])
    topics = ("--topics", f"{audit}=audit_log", f"{dlq}=dlq_events", "--dlq-topic", dlq)

    for _ in range(2):  # the second run finds everything loaded and changes nothing
        result = run_once(loader_env, *topics)
        assert result.returncode == 0, result.stdout + result.stderr
        assert ch.command(f"SELECT count() FROM {database}.audit_log") == 9
        rows = ch.query(f"SELECT kafka_offset, reason, topic, kafka_partition, payload, message FROM {database}.dlq_events FINAL "
                        "ORDER BY kafka_offset").result_rows
        assert [r[:4] for r in rows] == [(i, "clickhouse_rejected", audit, 0) for i in (3, 7, 9)]
        assert [r[4] for r in rows] == [bad[3].decode(), bad[7].decode(), ""]
        assert "UUID" in rows[0][5] and "Unknown field" in rows[1][5] and "empty" in rows[2][5]
    assert "rejected by audit_log (offsets 3, 7, 9)" in result.stdout or "0 rows inserted" in result.stdout


@pytest.mark.stack
def test_on_reject_stop_keeps_the_batch_out_until_the_cause_is_fixed(
    kafka_url: str, loader_env: dict[str, str], ch: Client, database: str
) -> None:
    audit = new_topic(kafka_url, 2)
    produce(kafka_url, [([(audit, 0, audit_row(i)) for i in range(5)]
                         + [(audit, 1, audit_row(i, **({"shard": "x"} if i == 7 else {}))) for i in range(5, 10)], True)])
    args = ("--topics", f"{audit}=audit_log", "--on-reject", "stop")

    stopped = run_once(loader_env, *args)
    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    assert re.search(rf"stopped {audit}\[1\] -> audit_log: ClickHouse rejected 1 rows of the batch 0\.\.4 \(first at offset 2: "
                     r"Unknown field found.*shard", stopped.stdout), stopped.stdout
    assert ch.command(f"SELECT count() FROM {database}.audit_log") == 5  # partition 0 only
    assert positions(ch, database, audit)[1] == (0, 4, "intent")

    # The fix (here: the table gains the column the producer writes); the restart reads the batch again
    ch.command(f"ALTER TABLE {database}.audit_log ADD COLUMN shard String DEFAULT ''")
    fixed = run_once(loader_env, *args)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "replaying the interrupted batch" in fixed.stdout
    assert ch.query(f"SELECT count(), countIf(shard = 'x') FROM {database}.audit_log").result_rows[0] == (10, 1)


@pytest.mark.stack
def test_metrics_endpoint_and_sigterm_finishes_the_batch_in_hand(
    kafka_url: str, loader_env: dict[str, str], ch: Client, database: str, tmp_path: Path
) -> None:
    audit = new_topic(kafka_url, 1)
    produce(kafka_url, [([(audit, 0, audit_row(i)) for i in range(30)], True)])
    log = tmp_path / "loader.log"
    # A batch that only a full 1000 rows or ten minutes would close: only SIGTERM gets these 30 rows in
    proc = start(loader_env, log, "--topics", f"{audit}=audit_log", "--batch-rows", "1000", "--batch-ms", "600000",
                 "--progress-interval", "0.1")
    try:
        port = eventually(lambda: re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", log.read_text()), "the metrics port").group(1)

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                return response.read().decode()

        eventually(lambda: "telemetry_loader_rows_buffered 30" in scrape(), "30 rows buffered")
        assert ch.command(f"SELECT count() FROM {database}.audit_log") == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert ch.command(f"SELECT count() FROM {database}.audit_log") == 30
    assert positions(ch, database, audit) == {0: (0, 29, "loaded")}
    assert "30 rows inserted (audit_log 30)" in log.read_text()


@pytest.mark.stack
def test_metrics_text_counts_rows_batches_latency_and_lag(kafka_url: str, loader_env: dict[str, str], database: str, tmp_path: Path) -> None:
    audit = new_topic(kafka_url, 1)
    produce(kafka_url, [([(audit, 0, audit_row(i)) for i in range(25)], True)])
    log = tmp_path / "loader.log"
    proc = start(loader_env, log, "--topics", f"{audit}=audit_log", "--progress-interval", "0.1")
    try:
        port = eventually(lambda: re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", log.read_text()), "the metrics port").group(1)

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                return response.read().decode()

        def loaded_and_caught_up() -> str | None:
            text = scrape()
            lag = f'telemetry_loader_lag_records{{topic="{audit}",partition="0"}} 0'
            return text if lag in text and 'telemetry_loader_rows_inserted_total{table="audit_log"} 25' in text else None

        text = eventually(loaded_and_caught_up, "the metrics of 25 loaded rows")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert 'telemetry_loader_batches_total{table="audit_log"} 1' in text
    assert 'telemetry_loader_insert_seconds_count{table="audit_log"} 1' in text
    assert 'telemetry_loader_insert_seconds_bucket{table="audit_log",le="+Inf"} 1' in text
    assert "# TYPE telemetry_loader_insert_errors_total counter" in text
    assert "telemetry_loader_partitions_stopped" in text


@pytest.mark.stack
def test_clickhouse_going_away_makes_the_loader_wait_then_resume_exactly(
    kafka_url: str, stack_env: dict[str, str], tmp_path: Path
) -> None:
    """A ClickHouse of its own, stopped and started again under the loader: the loader waits with back-off
    (it used to exit on the progress write, outside the insert's retries), shows it on /metrics, and loads
    every row exactly once when ClickHouse is back."""
    topic = new_topic(kafka_url, 2)
    (tmp_path / "ch").mkdir()
    with dev_clickhouse(tmp_path / "ch") as server:
        database = f"l_{uuid.uuid4().hex[:12]}"
        migrate(clickhouse_connect.get_client(dsn=server.writer), database, retention_months=12, say=lambda _: None)
        env = {**stack_env, "CLICKHOUSE_URL": server.writer, "CLICKHOUSE_DATABASE": database,
               "LOADER_GROUP_ID": f"loader-test-{uuid.uuid4().hex[:8]}", "LOADER_METRICS_PORT": "0"}
        produce(kafka_url, [([(topic, i % 2, usage_row(i)) for i in range(3000)], True)])
        log = tmp_path / "loader.log"
        proc = start(env, log, "--topics", f"{topic}=usage_10s", "--batch-rows", "500", "--progress-interval", "0.2")

        def loaded() -> int:
            ch = clickhouse_connect.get_client(dsn=server.writer)
            try:
                return int(ch.command(f"SELECT sum(requests) FROM {database}.usage_10s") or 0)
            finally:
                ch.close()

        try:
            port = eventually(lambda: re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", log.read_text()),
                              "the metrics port").group(1)
            eventually(lambda: loaded() == 3000, "the first 3000 rows loaded")
        except BaseException:
            proc.kill()
            raise
    try:
        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                return response.read().decode()

        produce(kafka_url, [([(topic, i % 2, usage_row(i)) for i in range(3000, 6000)], True)])
        def failed_calls() -> int:
            return sum(int(n) for n in re.findall(r'telemetry_loader_clickhouse_errors_total\{operation="[^"]+"\} (\d+)',
                                                   scrape()))

        eventually(lambda: failed_calls() >= 3, "the loader retrying the unreachable ClickHouse", timeout=180)
        assert "telemetry_loader_clickhouse_unavailable 1" in scrape()
        assert proc.poll() is None, log.read_text()
        with dev_clickhouse(tmp_path / "ch", port=int(urlsplit(server.url).port or 0)):
            eventually(lambda: loaded() == 6000, "every row loaded once ClickHouse is back", timeout=180)
            eventually(lambda: "telemetry_loader_clickhouse_unavailable 0" in scrape(), "the wait over on /metrics")
            ch = clickhouse_connect.get_client(dsn=server.writer)
            numbers = range(6000)
            expected = (6000, 6000, 1, sum(numbers), pytest.approx(sum(i / 8 for i in numbers)))
            for table in ("usage_10s", "usage_1m", "usage_1h"):  # a doubled row shows as a key with 2 requests
                assert usage_totals(ch, database, table) == expected, table
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0, log.read_text()
        assert "cannot reach ClickHouse: Connection refused" in log.read_text()
        assert "succeeded after" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_insert_rows_takes_out_exactly_the_rows_clickhouse_refuses(ch: Client, database: str) -> None:
    rows: list[bytes | None] = [audit_row(i) for i in range(6)]
    rows[1] = b'{"ts": "yesterday-ish"}'
    rows[4] = b"not json at all"
    for _ in range(2):  # the same token again: deduplicated, the same rows refused
        refused = insert_rows(ch, f"{database}.audit_log", rows, "unit:0:0:5", max_rejected=10)
        assert [r.index for r in refused] == [1, 4]
        assert all(r.error and "DB::Exception" not in r.error for r in refused)
    assert ch.command(f"SELECT count() FROM {database}.audit_log") == 4
