"""The pure rules: quota metrics from usage columns, the ledger's hand-over and sums, decisions and crossings."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from services.quota.ledger import Ledger
from services.quota.metrics import COLUMNS, METRICS, NO_PRICES, BadUsage, Prices, column, raw, totals
from services.quota.rules import Limit, allowed, binding, crossed, judge, month_before, period_start

D = Decimal
PRICES = Prices("EUR", {"tokens_in_1k": (("2026-01-01 00:00:00", "2026-03-01 00:00:00", D("0.5")),
                                          ("2026-03-01 00:00:00", "2299-12-31 00:00:00", D("1"))),
                        "tokens_out_1k": (("2026-01-01 00:00:00", "2299-12-31 00:00:00", D("2")),),
                        "gpu_hour": (("2026-01-01 00:00:00", "2299-12-31 00:00:00", D("3.6")),),
                        "cpu_hour": (("2026-01-01 00:00:00", "2299-12-31 00:00:00", D("0.36")),)})


def cols(**values: object) -> tuple[Decimal, ...]:
    return raw({name: values.get(name, 0) for name in COLUMNS})


def test_metrics_take_the_larger_report_and_price_at_the_days_start():
    c = cols(tokens_in=1000, tokens_out=500, wkf_gpu_seconds="10.5", kuber_gpu_seconds="7", wkf_cpu_seconds="1",
             kuber_cpu_seconds="20", wkf_credits="3.25", kuber_credits="3.5")
    credits, gpu, cpu, tokens, cost = totals(c, "2026-02-28", PRICES)
    assert (credits, gpu, cpu, tokens) == (D("3.5"), D("10.5"), D("20"), D(1500))
    # 1000 x 0.5 / 1000 + 500 x 2 / 1000 + 10.5 x 3.6 / 3600 + 20 x 0.36 / 3600
    assert cost == D("0.5") + D("1") + D("0.0105") + D("0.002")
    assert totals(c, "2026-03-01", PRICES)[4] == D("1") + D("1") + D("0.0105") + D("0.002")
    assert totals(c, "2025-12-31", PRICES)[4] == 0  # no price in force: unpriced, zero


def test_cost_is_cut_to_twelve_decimals_never_rounded_up():
    c = cols(wkf_gpu_seconds="1")
    assert totals(c, "2026-02-01", Prices("EUR", {"gpu_hour": (("2026-01-01 00:00:00", "2299-12-31 00:00:00",
                                                                 D("1")),)}))[4] == D("0.000277777777")


@pytest.mark.parametrize("value", [-1, "-0.5", "NaN", "Infinity", "1e31", "abc", True, [1], {"a": 1}])
def test_bad_usage_columns_are_refused_by_name(value):
    with pytest.raises(BadUsage, match="tokens_in"):
        column({"tokens_in": value}, "tokens_in")


def test_float_columns_are_read_by_their_shortest_repr():
    assert column({"wkf_credits": 0.1}, "wkf_credits") == D("0.1")


def key(user: str, day: str, tenant: str = "t", department: str = "d") -> tuple[str, str, str, str]:
    return (tenant, department, user, day)


def test_the_stream_supersedes_clickhouse_per_key_and_never_adds_to_it():
    ledger = Ledger(NO_PRICES)
    ledger.put_base(("user", "t", "u"), "2026-02", [(key("u", "2026-02-01"), cols(tokens_in=100)),
                                                     (key("u", "2026-02-02"), cols(tokens_in=40))])
    assert ledger.used(("user", "t", "u"), "month", "2026-02-02")[3] == 140
    ledger.put_stream(key("u", "2026-02-02"), cols(tokens_in=55))  # the day's whole total so far
    assert ledger.used(("user", "t", "u"), "month", "2026-02-02")[3] == 155
    assert ledger.used(("user", "t", "u"), "day", "2026-02-02")[3] == 55
    # ClickHouse catching up later changes nothing where the stream has the key
    ledger.put_base(("department", "t", "d"), "2026-02", [(key("u", "2026-02-02"), cols(tokens_in=50))])
    assert ledger.used(("department", "t", "d"), "month", "2026-02-02")[3] == 155
    ledger.put_stream(key("u", "2026-02-02"), None)  # a tombstone: back to ClickHouse's row
    assert ledger.used(("user", "t", "u"), "day", "2026-02-02")[3] == 50


def test_a_tenants_load_makes_every_user_and_department_of_it_loaded():
    ledger = Ledger(NO_PRICES)
    ledger.put_base(("tenant", "t", ""), "2026-02", [(key("u", "2026-02-01"), cols(tokens_in=1))])
    assert ledger.is_loaded(("user", "t", "u"), "2026-02") and ledger.is_loaded(("user", "t", "never-used"), "2026-02")
    assert ledger.is_loaded(("department", "t", "d"), "2026-02")
    assert not ledger.is_loaded(("user", "t", "u"), "2026-03") and not ledger.is_loaded(("user", "t2", "u"), "2026-02")


def test_month_is_the_sum_of_its_days_and_ends_at_the_boundary():
    ledger = Ledger(NO_PRICES)
    ledger.put_stream(key("u", "2026-01-31"), cols(tokens_in=7))
    ledger.put_stream(key("u", "2026-02-01"), cols(tokens_in=3))
    assert ledger.used(("user", "t", "u"), "month", "2026-01-31")[3] == 7
    assert ledger.used(("user", "t", "u"), "month", "2026-02-01")[3] == 3
    assert ledger.used(("tenant", "t", ""), "month", "2026-02-15")[3] == 3
    ledger.drop_before("2026-02-01")
    assert ledger.used(("user", "t", "u"), "month", "2026-01-31")[3] == 0
    assert not ledger.put_stream(key("u", "2026-01-30"), cols(tokens_in=1))


def test_reprice_rebuilds_every_sum():
    ledger = Ledger(NO_PRICES)
    ledger.put_stream(key("u", "2026-02-01"), cols(tokens_out=1000))
    assert ledger.used(("tenant", "t", ""), "day", "2026-02-01")[4] == 0
    ledger.reprice(PRICES)
    assert ledger.used(("tenant", "t", ""), "day", "2026-02-01")[4] == 2


days = st.sampled_from(["2026-01-31", "2026-02-01", "2026-02-02"])
updates = st.lists(st.tuples(st.sampled_from(["stream", "base"]), st.sampled_from(["u1", "u2"]),
                             st.sampled_from(["d1", "d2"]), days, st.one_of(st.none(), st.integers(0, 10**6))),
                   max_size=40)


@settings(max_examples=200, deadline=None)
@given(updates)
def test_sums_equal_a_recount_whatever_the_order(ops):
    """Running sums after any interleaving of stream records, tombstones and ClickHouse rows equal a recount of the
    keys with the per-key rule (stream if present, else ClickHouse)."""
    ledger = Ledger(NO_PRICES)
    stream: dict = {}
    base: dict = {}
    for source, user, department, day, tokens in ops:
        k = key(user, day, department=department)
        if source == "stream":
            ledger.put_stream(k, None if tokens is None else cols(tokens_in=tokens))
            if tokens is None:
                stream.pop(k, None)
            else:
                stream[k] = tokens
        elif tokens is not None:
            ledger.put_base(("user", "t", user), day[:7], [(k, cols(tokens_in=tokens))])
            base[k] = tokens
    value = {k: stream.get(k, base.get(k, 0)) for k in set(stream) | set(base)}
    for day in ["2026-01-31", "2026-02-01", "2026-02-02"]:
        for scope, pick in ((("user", "t", "u1"), lambda k: k[2] == "u1"), (("department", "t", "d2"), lambda k: k[1] == "d2"),
                            (("tenant", "t", ""), lambda k: True)):
            assert ledger.used(scope, "day", day)[3] == sum(v for k, v in value.items() if pick(k) and k[3] == day)
            assert ledger.used(scope, "month", day)[3] == sum(v for k, v in value.items()
                                                               if pick(k) and k[3][:7] == day[:7])


def limit(soft: str | None, hard: str | None, period: str = "day") -> Limit:
    return Limit("t", "user", "u", "credits", period, None if soft is None else D(soft), None if hard is None else D(hard))


def test_judge_levels_and_the_zero_amount():
    assert judge(limit("5", "10"), D(4), D(1), "2026-02-03").level == "ok"
    assert judge(limit("5", "10"), D(4), D(2), "2026-02-03").level == "soft"
    assert judge(limit("5", "10"), D(4), D("6.000001"), "2026-02-03").level == "hard"
    assert judge(limit("5", "10"), D(10), D(0), "2026-02-03").level == "hard"  # nothing left
    assert judge(limit(None, "10"), D("9.5"), D(0), "2026-02-03").level == "ok"
    verdict = judge(limit("5", "10", "month"), D(12), D(0), "2026-02-03")
    assert (verdict.period_start, verdict.remaining) == ("2026-02-01", D(0))


def test_the_worst_verdict_binds_and_any_hard_one_denies():
    soft = judge(limit("1", None), D(3), D(1), "2026-02-03")
    ok = judge(limit(None, "100", "month"), D(3), D(1), "2026-02-03")
    tight = judge(limit(None, "5"), D(3), D(1), "2026-02-03")
    assert binding([ok, tight]) is tight and allowed([ok, tight, soft])
    hard = judge(limit(None, "3"), D(3), D(1), "2026-02-03")
    assert binding([soft, ok, hard]) is hard and not allowed([soft, ok, hard])
    assert binding([]) is None and allowed([])


def test_crossings_are_upward_only():
    lim = limit("5", "10")
    assert crossed(lim, D(4), D(11)) == ["soft", "hard"]
    assert crossed(lim, D(5), D("5.5")) == ["soft"]
    assert crossed(lim, D(11), D(12)) == [] and crossed(lim, D(11), D(4)) == []


def test_periods():
    assert period_start("month", "2026-03-31") == "2026-03-01" and period_start("day", "2026-03-31") == "2026-03-31"
    assert month_before("2026-01-15") == "2025-12-01" and month_before("2026-03-01") == "2026-02-01"


def test_the_metrics_are_the_settings_and_postgresql_ones():
    from pathlib import Path

    sql = (Path(__file__).resolve().parents[3] / "sql/postgres/migrations/0002_quota_limits.sql").read_text()
    assert "CHECK (metric IN (" + ", ".join(f"'{m}'" for m in METRICS) + "))" in sql
