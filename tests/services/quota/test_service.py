"""The quota core without HTTP or Kafka: decisions over the ledger, cold loads, the fail policy while rebuilding or
when ClickHouse is away, staleness with the data's age, the month boundary, and exceeded events. ClickHouse is a
function here (its real queries are in test_quota_service.py, against the dev ClickHouse engine)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from hypothesis import given, settings, strategies as st

from services.quota.ledger import Ledger
from services.quota.metrics import COLUMNS, NO_PRICES, raw
from services.quota.rules import Limit
from services.quota.service import Cold, Quota, utc_day
from services.quota.stores import StoreUnavailable

D = Decimal


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def cols(**values: object) -> tuple[Decimal, ...]:
    return raw({name: values.get(name, 0) for name in COLUMNS})


class Clock:
    def __init__(self, wall: str) -> None:
        self.now, self.mono = at(wall), 1000.0

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono


def quota(clock: Clock, rows: dict | None = None, fail_open: bool = True) -> tuple[Quota, list]:
    asked: list = []

    def scope_month(scope: str, tenant: str, scope_id: str, month: str):
        asked.append((scope, tenant, scope_id, month))
        if rows is None:
            raise StoreUnavailable("ClickHouse: connection refused")
        return rows.get((scope, scope_id, month), [])

    q = Quota(Ledger(NO_PRICES), Cold(scope_month), dict.fromkeys(("credits", "gpu_seconds", "cpu_seconds", "tokens",
                                                                    "cost"), fail_open),
              wall=clock.wall, monotonic=clock.monotonic)
    q.feed.rebuilt, q.feed.synced_at = True, clock.mono
    q.limits = {("t", "user", "u"): [Limit("t", "user", "u", "credits", "day", D(5), D(10)),
                                      Limit("t", "user", "u", "credits", "month", None, D(25))],
                ("t", "department", "d"): [Limit("t", "department", "d", "credits", "month", D(30), D(40))]}
    return q, asked


def test_a_cold_user_is_loaded_once_then_answered_from_memory_and_the_stream():
    clock = Clock("2026-02-10T12:00:00")
    q, asked = quota(clock, {("user", "u", "2026-02"): [(("t", "d", "u", "2026-02-09"), cols(wkf_credits="12")),
                                                         (("t", "d", "u", "2026-02-10"), cols(wkf_credits="3"))]})
    first = q.check("t", "user", "u", "credits", D(1))
    assert (first.allow, first.source, first.used) == (True, "clickhouse", D(3))
    assert {(v.limit.period, v.used) for v in first.verdicts} == {("day", D(3)), ("month", D(15))}
    q.apply(("t", "d", "u", "2026-02-10"), cols(wkf_credits="9.5"), live=True)  # the stream's day total replaces 3
    second = q.check("t", "user", "u", "credits", D(1))  # its department (known now, with limits) is loaded too
    assert (second.allow, second.source, second.used) == (False, "clickhouse", D("9.5"))
    assert [v.level for v in second.verdicts if v.limit.period == "day"] == ["hard"]
    third = q.check("t", "user", "u", "credits", D("0.5"))
    assert (third.allow, third.source, third.used) == (True, "memory", D("9.5"))
    assert [a[0] for a in asked] == ["user", "department"]


def test_the_month_boundary_starts_a_new_month_and_a_new_load():
    clock = Clock("2026-01-31T23:59:59")
    q, asked = quota(clock, {})
    q.apply(("t", "d", "u", "2026-01-31"), cols(wkf_credits="20"), live=True)
    assert q.check("t", "user", "u", "credits", D(1), "month").verdicts[0].used == D(20)
    clock.now = at("2026-02-01T00:00:01")
    answer = q.check("t", "user", "u", "credits", D(1), "month")
    assert (answer.verdicts[0].used, answer.verdicts[0].period_start, answer.allow) == (D(0), "2026-02-01", True)
    assert ("user", "t", "u", "2026-02") in asked


def test_enclosing_department_limits_bind_a_user():
    clock = Clock("2026-02-10T12:00:00")
    q, _ = quota(clock, {})
    q.apply(("t", "d", "other", "2026-02-10"), cols(wkf_credits="38"), live=True)
    q.apply(("t", "d", "u", "2026-02-10"), cols(wkf_credits="1"), live=True)
    answer = q.check("t", "user", "u", "credits", D(2))
    assert not answer.allow and {(v.limit.scope, v.level) for v in answer.verdicts} >= {("department", "hard")}


def test_while_rebuilding_answers_follow_the_policy_and_say_so():
    clock = Clock("2026-02-10T12:00:00")
    for fail_open in (True, False):
        q, asked = quota(clock, {}, fail_open=fail_open)
        q.feed.rebuilt = False
        answer = q.check("t", "user", "u", "credits", D(1))
        assert (answer.allow, answer.source, answer.degraded) == (fail_open, "fallback", True)
        assert "rebuild" in answer.reason and ("fail-open" if fail_open else "fail-closed") in answer.reason
        assert not asked


def test_clickhouse_away_gives_the_policy_answer_marked_degraded_never_an_error():
    clock = Clock("2026-02-10T12:00:00")
    q, _ = quota(clock, None, fail_open=False)
    answer = q.check("t", "user", "u", "credits", D(1))
    assert (answer.allow, answer.source, answer.degraded) == (False, "fallback", True)
    assert "connection refused" in answer.reason


def test_kafka_away_marks_answers_stale_with_the_datas_age():
    clock = Clock("2026-02-10T12:00:00")
    q, _ = quota(clock, {})
    q.stale_after_s = 10
    clock.mono += 4
    assert not q.check("t", "user", "u", "credits", D(1)).stale
    clock.mono += 30
    answer = q.check("t", "user", "u", "credits", D(1))
    assert answer.stale and answer.data_age_s == 34 and "STALE" in answer.reason and answer.source == "memory"


def test_exceeded_events_once_per_crossing_and_only_when_live_and_loaded():
    clock = Clock("2026-02-10T12:00:00")
    q, _ = quota(clock, {})
    key = ("t", "d", "u", "2026-02-10")
    assert q.apply(key, cols(wkf_credits="6"), live=True) == []  # not loaded yet: its usage before is unknown
    q.check("t", "user", "u", "credits", D(0))
    events = q.apply(key, cols(wkf_credits="11"), live=True)
    assert sorted(e["event_name"] for e in events) == ["quota.limit.exceeded.hard"]
    assert events[0]["used"] == "11" and events[0]["limit"] == "10" and events[0]["period_start"] == "2026-02-10"
    assert q.apply(key, cols(wkf_credits="12"), live=True) == []
    assert q.apply(("t", "d", "u", "2026-02-09"), cols(wkf_credits="20"), live=False) == []


def test_projects_come_from_clickhouse_and_are_reused_for_a_while():
    clock = Clock("2026-02-10T12:00:00")
    q, asked = quota(clock, {("project", "p", "2026-02"): [(("t", "d", "u", "2026-02-10"), cols(tokens_in=5)),
                                                            (("t", "d", "v", "2026-02-03"), cols(tokens_out=7))]})
    q.limits[("t", "project", "p")] = [Limit("t", "project", "p", "tokens", "month", None, D(12))]
    answer = q.check("t", "project", "p", "tokens", D(1))
    assert (answer.allow, answer.source, answer.verdicts[0].used) == (False, "clickhouse", D(12))
    q.check("t", "project", "p", "tokens", D(1))
    assert len([a for a in asked if a[0] == "project"]) == 1
    clock.mono += q.project_cache_s + 1
    q.check("t", "project", "p", "tokens", D(1))
    assert len([a for a in asked if a[0] == "project"]) == 2


@settings(max_examples=2000, deadline=None)
@given(micros=st.integers(0, 10**16) | st.integers(0, 10**5).flatmap(
    lambda day: st.sampled_from([day * 86400 * 10**6 + d for d in (-1, 0, 1)]).filter(lambda us: us >= 0)))
def test_the_utc_day_of_any_clock_time_is_the_calendars(micros):
    now = micros / 1e6  # as time.time() gives it, to the microsecond
    assert utc_day(now) == datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d")
