"""Watermark heartbeats (services/heartbeat/__main__.py): the rounds it plans, its configuration errors, and one round
sent to the test broker and read back: one record per partition of each topic, with the header the job filters
on and the wall-clock timestamp that moves its partition's watermark."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from telemetry import settings, topics
from services.heartbeat.beat import HEADER, Beat, Heartbeat, beats, partition_counts
from telemetry.settings import REPO_ROOT
from tests.support.fixtures_prometheus import free_port


def test_a_round_has_one_beat_per_partition_stamped_behind_the_clock() -> None:
    round_ = beats({"b": 2, "a": 1}, now_ms=1_000_000, delay_ms=250)
    assert round_ == [Beat("a", 0, 999_750), Beat("b", 0, 999_750), Beat("b", 1, 999_750)]
    assert json.loads(round_[2].value()) == {"heartbeat": 999_750, "topic": "b", "partition": 1}


def test_the_job_and_the_heartbeat_agree_on_the_header() -> None:
    job = (REPO_ROOT / "jobs" / "telemetry_job.py").read_text()
    assert HEADER == topics.HEARTBEAT_HEADER and "topics.HEARTBEAT_HEADER" in job


@pytest.mark.parametrize("name, value", [("HEARTBEAT_INTERVAL_MS", "5"), ("HEARTBEAT_DELAY_MS", "-1"),
                                         ("HEARTBEAT_INTERVAL_MS", "fast")])
def test_settings_reject_a_bad_value_by_name(name: str, value: str) -> None:
    with pytest.raises(settings.SettingsError, match=f"{name}='{value}'"):
        settings.load({name: value})


def test_cli_names_a_bad_interval() -> None:
    done = subprocess.run([sys.executable, "-m", "services.heartbeat", "--interval-ms", "5"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--interval-ms 5 must be 10-60000" in done.stderr


@pytest.mark.stack
def test_missing_topic_is_named(kafka_url: str) -> None:
    producer = Producer({"bootstrap.servers": kafka_url})
    with pytest.raises(SystemExit, match="no-such-topic do not exist on the broker"):
        partition_counts(producer, ["xumi_task", "no-such-topic"])


@pytest.mark.stack
def test_a_round_reaches_every_partition(kafka_url: str) -> None:
    names = ["pbac_politics", "asset_access"]  # 1 and 3 partitions
    producer = Producer({"bootstrap.servers": kafka_url})
    clock_s = int(time.time()) - 3600 + 0.123  # an hour ago: the broker refuses timestamps far in the future
    stamp = int(clock_s * 1000) - 1000
    heartbeat = Heartbeat(producer, names, interval_ms=200, delay_ms=1000, clock=lambda: clock_s)
    want = {(t, p) for t in names for p in range(topics.BY_NAME[t].partitions)}
    assert heartbeat.beat() == len(want)
    producer.flush(30)
    assert heartbeat.errors == 0
    # From the beginning: the clock above is this test's alone, so its beats are the records with its timestamp.
    consumer = Consumer({"bootstrap.servers": kafka_url, "group.id": "test-heartbeat", "enable.auto.commit": False})
    consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in want])
    got = {}
    try:
        deadline = time.monotonic() + 30
        while len(got) < len(want) and time.monotonic() < deadline:
            msg = consumer.poll(1)
            if msg is not None and msg.error() is None and msg.timestamp()[1] == stamp:
                got[(msg.topic(), msg.partition())] = dict(msg.headers() or [])
    finally:
        consumer.close()
    assert got == {tp: {HEADER: str(stamp).encode()} for tp in want}


@pytest.mark.stack
def test_run_beats_each_interval_until_stopped(kafka_url: str, tmp_path) -> None:
    alive = tmp_path / "alive"
    heartbeat = Heartbeat(Producer({"bootstrap.servers": kafka_url}), ["pbac_service"], interval_ms=50, delay_ms=0)
    runner = threading.Thread(target=heartbeat.run, kwargs={"alive": alive, "out": sys.stderr})
    runner.start()
    time.sleep(1.0)
    heartbeat.stopped.set()
    runner.join(timeout=15)
    assert not runner.is_alive() and alive.exists()
    assert 5 <= heartbeat.sent <= 25 and heartbeat.errors == 0  # about 20 rounds of one partition in 1 s


def test_a_broker_gone_away_keeps_the_known_partitions_beating(capsys: pytest.CaptureFixture[str]) -> None:
    # A real producer pointed at a port nothing listens on: the metadata request fails, produce() still queues.
    port = free_port()
    heartbeat = Heartbeat(Producer({"bootstrap.servers": f"127.0.0.1:{port}", "message.timeout.ms": 1000}),
                          ["xumi_task"], interval_ms=200, delay_ms=0, metadata_timeout_s=1.0)
    with pytest.raises(KafkaException):
        heartbeat.beat()  # nothing known yet: an error, as at start-up
    heartbeat.partitions = {"xumi_task": 2}
    heartbeat._refreshed = float("-inf")  # the periodic re-read is due
    assert heartbeat.beat() == 2
    assert "keeping the last known" in capsys.readouterr().err
    heartbeat.producer.flush(5)
    assert heartbeat.errors == 2  # both beats timed out undelivered, and were counted
