"""The API's ClickHouse cache on the session's real ClickHouse engine, its clock moved by the test: an answer is
served from the cache within its TTL, queried again in the background when asked for in the last part of its life
(so requests do not queue behind ClickHouse when it expires), and never served older than the TTL."""

from __future__ import annotations

import asyncio
from typing import Any

from services.api import stores
from telemetry import settings
from tests.support.fixtures_api import Api

SQL = "SELECT toString(generateUUIDv4()) AS answer"  # a new answer at every query


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_answers_are_refreshed_ahead_of_expiry_and_never_served_stale(api: Api) -> None:
    clock = Clock()
    reader = stores.ClickHouseReader(settings.load({**api.env, "API_CACHE_SECONDS": "10"}))
    reader.clock = clock.monotonic

    async def ask() -> str:
        rows: list[dict[str, Any]] = await reader.query(SQL, {})
        return rows[0]["answer"]

    async def scenario() -> None:
        first = await ask()
        assert (reader.misses, reader.hits) == (1, 0)
        clock.now += 6.9  # within the TTL, before the refresh-ahead part: the cache, nothing else
        assert await ask() == first
        await asyncio.sleep(0.05)
        assert (reader.misses, reader.hits) == (1, 1) and not reader._refreshing
        clock.now += 0.2  # 7.1 s old: served from the cache, and queried again in the background
        assert await ask() == first
        assert len(reader._refreshing) == 1
        await asyncio.gather(*reader._refreshing)
        second = await ask()  # the background answer, with no wait
        assert second != first and reader.misses == 2
        clock.now += 10.0  # nobody asked for it in its last part: expired, so the next request queries itself
        third = await ask()
        assert third != second and reader.misses == 3

    asyncio.run(scenario())


def test_a_derived_answer_is_computed_once_per_query_and_cached_apart_from_the_plain_rows(api: Api) -> None:
    clock = Clock()
    reader = stores.ClickHouseReader(settings.load({**api.env, "API_CACHE_SECONDS": "10"}))
    reader.clock = clock.monotonic
    calls: list[int] = []

    def shout(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls.append(len(rows))
        return [{"answer": row["answer"].upper()} for row in rows]

    async def scenario() -> None:
        plain = (await reader.query(SQL, {}))[0]["answer"]
        derived = [(await reader.query(SQL, {}, derive=shout))[0]["answer"] for _ in range(5)]
        assert calls == [1]  # five requests, one derivation
        assert len(set(derived)) == 1 and derived[0] == derived[0].upper()
        assert derived[0] != plain.upper()  # its own query, not the plain answer's rows changed in place
        assert (await reader.query(SQL, {}))[0]["answer"] == plain  # the plain rows are not touched by it
        clock.now += 11.0
        assert (await reader.query(SQL, {}, derive=shout))[0]["answer"] != derived[0]
        assert calls == [1, 1]

    asyncio.run(scenario())
