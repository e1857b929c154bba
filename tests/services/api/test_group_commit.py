"""The access log's group commit on the real PostgreSQL server: concurrent requests' records go in one transaction,
chained in arrival order; a request learns its seq only once its batch is committed; a failed batch fails every
request in it and writes nothing; and through the API, every answer sent names (X-Request-Id) a committed record of
its own."""

from __future__ import annotations

import asyncio
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Sequence

import psycopg
import pytest
import requests

from services.api import accesslog
from services.api.stores import Postgres
from telemetry import settings
from telemetry.migrate import migrate_postgres
from telemetry.settings import Settings
from tests.support.fixtures_api import Api, fresh_postgres_database


@pytest.fixture
def log_db(api: Api, postgres_stack: Settings) -> Iterator[Settings]:
    """A migrated PostgreSQL database of this test's own (the stack's server), as the API's login sees it."""
    name = f"gc_{uuid.uuid4().hex[:10]}"
    config = settings.load({**api.env, "POSTGRES_URL": fresh_postgres_database(postgres_stack, name)})
    with psycopg.connect(config.postgres_conninfo()) as conn:
        migrate_postgres(conn, config.postgres_api_user, say=lambda _: None)
    yield config
    with psycopg.connect(postgres_stack.postgres_conninfo(database="postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def entries(config: Settings) -> list[accesslog.Entry]:
    with psycopg.connect(config.postgres_conninfo(), autocommit=True) as conn:
        rows = conn.execute("SELECT seq, record, prev_hash, hash FROM access_log ORDER BY seq").fetchall()
    return [accesslog.Entry(*row) for row in rows]


def record(i: int) -> str:
    return accesslog.canonical({"v": 1, "i": i, "principal": f"p{i}", "params": {"q": ["\u00e9\x1f'\""]}})


class Recorder:
    """The API's own store and group commit, with the size of every batch it sent."""

    def __init__(self, config: Settings) -> None:
        self.pg = Postgres(config)
        self.sizes: list[int] = []
        self.log = accesslog.GroupCommit(self.fetch)
        self.arrivals: list[asyncio.Task[int]] = []  # appends made while the first batch was being committed

    async def fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        self.sizes.append(len(params[0]))
        if len(self.sizes) == 1:  # more requests finish while this batch is on its way
            self.arrivals = [asyncio.create_task(self.log.append(record(100 + i))) for i in range(30)]
            await asyncio.sleep(0)
        return await self.pg.fetch(sql, params)


def test_concurrent_records_are_committed_together_and_chained_in_arrival_order(log_db: Settings) -> None:
    async def scenario() -> tuple[list[int], list[int], Recorder]:
        recorder = Recorder(log_db)
        await recorder.pg.open()
        try:
            first = await asyncio.gather(*(recorder.log.append(record(i)) for i in range(50)))
            later = await asyncio.gather(*recorder.arrivals)
        finally:
            await recorder.pg.close()
        return first, later, recorder

    first, later, recorder = asyncio.run(scenario())
    assert recorder.sizes == [50, 30]  # one transaction for the 50, one for those that came during its commit
    assert (recorder.log.batches, recorder.log.records) == (2, 80)
    assert first == list(range(1, 51)) and later == list(range(51, 81))
    log = entries(log_db)
    assert [json.loads(e.record)["i"] for e in log] == list(range(50)) + list(range(100, 130))
    assert list(accesslog.verify(log)) == []
    assert log[50].prev_hash == log[49].hash  # the second batch chains to the first one's last record


def test_a_failed_batch_fails_every_request_in_it_and_writes_nothing(log_db: Settings) -> None:
    owner = psycopg.connect(log_db.postgres_conninfo(), autocommit=True)
    api_user = log_db.postgres_api_user

    async def appends(n: int) -> list[Any]:
        pg = Postgres(log_db)
        await pg.open()
        log = accesslog.GroupCommit(pg.fetch)
        try:
            return await asyncio.gather(*(log.append(record(i)) for i in range(n)), return_exceptions=True)
        finally:
            await pg.close()

    try:
        assert asyncio.run(appends(3)) == [1, 2, 3]
        owner.execute(f'REVOKE EXECUTE ON FUNCTION append_access_logs(text[]) FROM "{api_user}"')
        failed = asyncio.run(appends(40))
        assert len(failed) == 40 and all(isinstance(f, psycopg.errors.InsufficientPrivilege) for f in failed), failed
        assert len(entries(log_db)) == 3
        owner.execute(f'GRANT EXECUTE ON FUNCTION append_access_logs(text[]) TO "{api_user}"')
        assert asyncio.run(appends(5)) == [4, 5, 6, 7, 8]
        assert list(accesslog.verify(entries(log_db))) == []
    finally:
        owner.execute(f'GRANT EXECUTE ON FUNCTION append_access_logs(text[]) TO "{api_user}"')
        owner.close()


def test_the_database_refuses_a_batch_holding_a_null_record(log_db: Settings) -> None:
    with psycopg.connect(log_db.postgres_conninfo(api=True), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="NULL"):
            conn.execute("SELECT * FROM append_access_logs(%s::text[])", ([record(1), None],))
    assert entries(log_db) == []


def test_every_answer_of_concurrent_requests_names_its_own_committed_record(api: Api) -> None:
    """40 requests at once, each with its own `limit`: each 200 carries X-Request-Id, and the record of that id,
    already in the table when the answer arrived, is that request's (endpoint, parameters, status, rows)."""
    token = api.tokens[("admin", 0)]

    def call(limit: int) -> requests.Response:
        return api.get("/v1/access", token, {"limit": str(limit)})

    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(call, range(1, 41)))
    assert [a.status_code for a in answers] == [200] * 40, [a.text for a in answers if a.status_code != 200][:2]
    ids = [a.headers["x-request-id"] for a in answers]
    assert len(set(ids)) == 40
    with api.pg() as conn:
        stored = {json.loads(r)["request_id"]: json.loads(r) for (r,) in conn.execute(
            "SELECT record FROM access_log WHERE record::jsonb ->> 'request_id' = ANY(%s)", (ids,)).fetchall()}
    for limit, (request_id, answer) in enumerate(zip(ids, answers), 1):
        logged = stored[request_id]
        assert (logged["endpoint"], logged["params"]["limit"], logged["status"]) == ("/v1/access", [str(limit)], 200)
        assert logged["rows"] == answer.json()["page"]["returned"]
    metrics = requests.get(api.url + "/metrics", timeout=30).text
    assert "telemetry_api_access_log_records_total" in metrics and "telemetry_api_access_log_batches_total" in metrics
