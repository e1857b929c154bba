"""The tamper-evident audit trail: the API's hash-chained access log in PostgreSQL and the ingest audit log's hourly
digests in ClickHouse and PostgreSQL. `python -m services.api.audit verify` finds an edited, a deleted and an
inserted record in each, and names them; a rewrite of the whole chain shows against the anchors in ClickHouse."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta
from typing import Any, Iterator

import clickhouse_connect
import psycopg
import pytest

from dev import serving_data
from services.api import accesslog, digests
from telemetry.settings import REPO_ROOT, Settings
from tests.support.fixtures_api import Api, api_environment, fresh_postgres_database, migrated_stores


def audit_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.api.audit", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


class Trail:
    """Both stores of one test: PostgreSQL and ClickHouse databases of their own, audit rows and access records."""

    def __init__(self, env: dict[str, str], config: Settings, data: serving_data.Dataset) -> None:
        self.env, self.config, self.data = env, config, data
        self.ch = clickhouse_connect.get_client(dsn=config.clickhouse_url, username=config.clickhouse_user,
                                                password=config.clickhouse_password)
        self.pg = psycopg.connect(config.postgres_conninfo(), autocommit=True)

    def append(self, n: int) -> None:
        for i in range(n):
            record = accesslog.canonical({"v": 1, "at": f"2026-01-01T00:00:{i:02d}.000Z", "principal": f"p{i}",
                                          "status": 200, "params": {"user": ["\u00e9\x1f"]}})
            self.pg.execute("SELECT append_access_log(%s)", (record,))

    def verify(self) -> subprocess.CompletedProcess[str]:
        return audit_cli(self.env, "verify", "--limit", "50")


@pytest.fixture
def trail(api: Api, postgres_stack: Settings, clickhouse_dev: Any) -> Iterator[Trail]:
    name = f"trail_{uuid.uuid4().hex[:10]}"
    env = api_environment(api.env, clickhouse_dev, name, fresh_postgres_database(postgres_stack, name))
    config = migrated_stores(env)
    data = serving_data.build(tenants=2, users=2, hours=4)
    writer = clickhouse_connect.get_client(dsn=clickhouse_dev.writer)
    serving_data.write(writer, name, data)
    writer.close()
    t = Trail(env, config, data)
    yield t
    t.pg.close()
    t.ch.command(f"DROP DATABASE IF EXISTS {name} SYNC")
    t.ch.close()


def test_the_api_access_log_of_the_session_verifies_and_each_request_added_one_record(api: Api) -> None:
    before = api.access_log_size()
    for _ in range(3):
        api.get("/v1/whoami", api.tokens[("auditor", 0)])
    api.get("/v1/usage", None)
    assert api.access_log_size() == before + 4
    record = api.last_records()[0]
    assert set(record) >= {"principal", "role", "tenants", "endpoint", "params", "rows", "status", "at", "ms"}
    done = audit_cli(api.env, "verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the chain is intact" in done.stdout


def test_the_database_refuses_changes_to_the_logs(trail: Trail) -> None:
    trail.append(2)
    for statement in ("UPDATE access_log SET record = '{}' WHERE seq = 1", "DELETE FROM access_log WHERE seq = 2",
                      "TRUNCATE access_log"):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            trail.pg.execute(statement)
    api_login = psycopg.connect(trail.config.postgres_conninfo(api=True), autocommit=True)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # the API appends through the function only
        api_login.execute("INSERT INTO access_log VALUES (99, '{}', 'x', 'y')")
    api_login.close()


def test_verify_names_an_edited_a_deleted_and_an_inserted_record_in_both_logs(trail: Trail) -> None:
    trail.append(20)
    sealed = audit_cli(trail.env, "seal", "--until", digests.hour_text(trail.data.end))
    assert sealed.returncode == 0, sealed.stderr
    assert "sealed 4 hour(s)" in sealed.stdout and "anchored the access log's record 20" in sealed.stdout
    intact = trail.verify()
    assert intact.returncode == 0 and "4 sealed hours, every digest matches" in intact.stdout, intact.stdout

    # the access log, by its owner with the trigger off: record 5 edited, record 9 deleted, one inserted at 14
    pg = trail.pg
    pg.execute("ALTER TABLE access_log DISABLE TRIGGER access_log_append_only")
    pg.execute("UPDATE access_log SET record = replace(record, '\"status\":200', '\"status\":403') WHERE seq = 5")
    pg.execute("DELETE FROM access_log WHERE seq = 9")
    pg.execute("UPDATE access_log SET seq = -seq WHERE seq >= 14")
    pg.execute("UPDATE access_log SET seq = 1 - seq WHERE seq < 0")
    prev = pg.execute("SELECT hash FROM access_log WHERE seq = 13").fetchone()[0]
    forged = accesslog.canonical({"v": 1, "principal": "ghost", "status": 200})
    pg.execute("INSERT INTO access_log VALUES (14, %s, %s, %s)", (forged, prev, accesslog.chain_hash(prev, forged)))

    # the ingest audit log in ClickHouse: a row edited in hour 1, one deleted in hour 2, one inserted in hour 3
    ch, db = trail.ch, trail.config.clickhouse_database
    hours = [trail.data.start + timedelta(hours=h) for h in range(4)]

    def first_event(hour: Any) -> str:
        return str(ch.query(f"SELECT event_id FROM {db}.audit_log WHERE toStartOfHour(ts) = {{h:DateTime}} "
                            "ORDER BY ts LIMIT 1", parameters={"h": hour}).result_rows[0][0])

    ch.command(f"ALTER TABLE {db}.audit_log UPDATE decision = 'allow', action = 'delete' WHERE event_id = "
               f"'{first_event(hours[1])}'", settings={"mutations_sync": 2})
    ch.command(f"ALTER TABLE {db}.audit_log DELETE WHERE event_id = '{first_event(hours[2])}'",
               settings={"mutations_sync": 2})
    ch.command(f"INSERT INTO {db}.audit_log (event_id, ts, topic, tenant_id, user_id, action, resource) VALUES "
               f"('{uuid.uuid4()}', '{hours[3]:%Y-%m-%d %H}:30:00.000', 'asset_access', '{trail.data.tenants[0].tenant_id}', "
               "'intruder', 'read', 'secret')")

    found = trail.verify()
    assert found.returncode == 1, found.stdout + found.stderr
    lines = found.stdout.splitlines()
    assert "access log: record 5 changed: record 5 does not match its hash: its content was changed" in lines
    assert "access log: record 9 deleted: record 9 is missing: 8 is followed by 10" in lines
    assert "access log: record 14 inserted: record 14 was inserted: record 15 chains to record 13" in lines
    text = found.stdout
    assert f"hour {digests.hour_text(hours[1])} changed" in text
    assert f"hour {digests.hour_text(hours[2])} deleted" in text and "1 fewer than" in text
    assert f"hour {digests.hour_text(hours[3])} inserted" in text and "1 more than" in text
    assert f"hour {digests.hour_text(hours[0])}" not in text


def test_a_chain_rewritten_hashes_and_all_shows_against_the_anchor_and_digest_copies_must_agree(trail: Trail) -> None:
    trail.append(6)
    assert audit_cli(trail.env, "seal", "--until", digests.hour_text(trail.data.end)).returncode == 0
    pg = trail.pg
    pg.execute("ALTER TABLE access_log DISABLE TRIGGER access_log_append_only")
    rows = pg.execute("SELECT seq, record FROM access_log ORDER BY seq").fetchall()
    prev = accesslog.GENESIS
    for seq, record in rows:  # an owner who recomputes every hash after editing record 3
        if seq == 3:
            record = record.replace('"principal":"p2"', '"principal":"someone-else"')
        digest = accesslog.chain_hash(prev, record)
        pg.execute("UPDATE access_log SET record = %s, prev_hash = %s, hash = %s WHERE seq = %s", (record, prev, digest, seq))
        prev = digest
    # and the digests of one hour rewritten in PostgreSQL only
    pg.execute("ALTER TABLE audit_digests DISABLE TRIGGER audit_digests_append_only")
    first = digests.hour_text(trail.data.start)
    pg.execute("UPDATE audit_digests SET digest = repeat('f', 64) WHERE hour = %s", (trail.data.start,))
    found = trail.verify()
    assert found.returncode == 1
    assert "access log: record 6 changed: record 6 no longer has the hash anchored in ClickHouse" in found.stdout
    assert f"hour {first} broken" in found.stdout and "ClickHouse audit_digests holds another digest" in found.stdout


def test_seal_is_idempotent_and_restores_a_missing_clickhouse_copy(trail: Trail) -> None:
    until = digests.hour_text(trail.data.end)
    assert audit_cli(trail.env, "seal", "--until", until).returncode == 0
    again = audit_cli(trail.env, "seal", "--until", until)
    assert again.returncode == 0 and "sealed 0 hour(s)" in again.stdout
    db = trail.config.clickhouse_database
    trail.ch.command(f"TRUNCATE TABLE {db}.audit_digests")
    assert "holds no digest" in trail.verify().stdout
    assert audit_cli(trail.env, "seal", "--until", until).returncode == 0
    assert trail.verify().returncode == 0
