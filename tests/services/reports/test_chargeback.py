"""The report's pure rules: charges apportioned to the cent at every level (a seeded property over generated
amounts), months parsed and refused with the fix named, the reasons a month is provisional, corrections."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from services.reports import chargeback
from services.reports.chargeback import Row, apportion, cents

amounts = st.decimals(min_value=0, max_value=10**6, places=12, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, derandomize=True)
@given(st.lists(amounts, min_size=1, max_size=40))
def test_apportioned_cents_add_up_and_each_is_within_a_cent(parts: list[Decimal]) -> None:
    total = cents(sum(parts, Decimal(0)))
    shares = apportion(total, parts)
    assert sum(shares) == total
    assert all(abs(Decimal(share) - part * 100) < 1 for share, part in zip(shares, parts))


def test_apportion_refuses_a_total_the_parts_cannot_make() -> None:
    with pytest.raises(ValueError, match="cannot be apportioned"):
        apportion(500, [Decimal("1.00"), Decimal("1.00")])


def row(project: str, department: str, total: str, user: str = "u", unpriced: tuple[str, ...] = ()) -> Row:
    amount = Decimal(total)
    return Row("t", department, project, "m", "v1", "", user, 1, 10, 10, Decimal(0), Decimal(0), 0,
               amount, Decimal(0), Decimal(0), Decimal(0), amount, unpriced)


@settings(max_examples=100, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(["p1", "p2", "p3"]), st.sampled_from(["d1", "d2"]), amounts,
                          st.sampled_from(["a", "b", "c"])), max_size=30))
def test_every_level_is_the_sum_of_the_one_below_to_the_cent(lines: list[tuple[str, str, Decimal, str]]) -> None:
    rows = [row(p, d, str(a), u) for p, d, a, u in lines]
    report = chargeback.build(date(2026, 11, 1), rows, "USD", {}, [])
    assert report.grand.items["total_cost"] == sum((r.total_cost for r in rows), Decimal(0))
    assert report.grand.charge == sum((d.charge for d in report.departments), Decimal(0))
    assert report.grand.charge * 100 == cents(report.grand.items["total_cost"])
    for department in report.departments:
        projects = [p for p in report.projects if p.key[:2] == department.key]
        assert department.charge == sum((p.charge for p in projects), Decimal(0))
        assert department.items["total_cost"] == sum((p.items["total_cost"] for p in projects), Decimal(0))
    for project in report.projects:
        charges = [c for r, c in zip(report.rows, report.row_charges) if r.project == project.key]
        assert project.charge == sum(charges, Decimal(0))


def test_corrections_name_changed_new_and_vanished_projects() -> None:
    before = {("t", "d1", "p1"): Decimal("1.5"), ("t", "d1", "p2"): Decimal("2"), ("t", "d1", "gone"): Decimal("3")}
    report = chargeback.build(date(2026, 11, 1), [row("p1", "d1", "1.5"), row("p2", "d1", "2.25"),
                                                  row("new", "d1", "4")], "USD", {}, [], previous=before)
    assert {(c.project[2], c.before, c.now, c.delta) for c in report.corrections or ()} == {
        ("p2", Decimal(2), Decimal("2.25"), Decimal("0.25")), ("gone", Decimal(3), Decimal(0), Decimal(-3)),
        ("new", None, Decimal(4), Decimal(4))}


def test_unpriced_items_are_named_with_their_projects() -> None:
    report = chargeback.build(date(2026, 11, 1), [row("p1", "d1", "0", unpriced=("tokens_in_1k:m",)),
                                                  row("p2", "d2", "1", unpriced=("tokens_in_1k:m", "gpu_hour:*"))],
                              "USD", {}, [])
    assert report.unpriced == {"gpu_hour:*": (("t", "d2", "p2"),),
                               "tokens_in_1k:m": (("t", "d1", "p1"), ("t", "d2", "p2"))}


def test_provisional_reasons() -> None:
    month = date(2026, 11, 1)
    closed = datetime(2026, 12, 3, tzinfo=timezone.utc)
    assert chargeback.provisional_reasons(month, closed, [], [], []) == []
    open_ = chargeback.provisional_reasons(month, datetime(2026, 11, 30, 23, tzinfo=timezone.utc), [], [], [])
    assert open_ == ["the month is not over (until 2026-12-01 00:00 UTC)"]
    reasons = chargeback.provisional_reasons(month, closed, [date(2026, 11, 5)], [date(2026, 11, 6)],
                                             ["cpu_hour:*", "cpu_hour:*"])
    assert len(reasons) == 3 and "2026-11-05" in reasons[0] and "2026-11-06" in reasons[1]
    assert "cpu_hour:*" in reasons[2]


@pytest.mark.parametrize("text, message", [
    ("2026-13", "give a month as YYYY-MM"), ("nov", "give a month as YYYY-MM"), ("2026-1", "give a month as YYYY-MM"),
    ("2027-01", "has not started yet (today is 2026-12-03 UTC); give 2026-12 or an earlier month")])
def test_bad_months_are_refused_with_the_fix(text: str, message: str) -> None:
    with pytest.raises(chargeback.MonthError, match=message.replace("(", r"\(").replace(")", r"\)")):
        chargeback.parse_month(text, date(2026, 12, 3))


def test_months_parse() -> None:
    assert chargeback.parse_month("2026-12", date(2026, 12, 3)) == date(2026, 12, 1)
    assert chargeback.next_month(date(2026, 12, 1)) == date(2027, 1, 1)


names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@settings(max_examples=60, derandomize=True)
@given(st.lists(st.tuples(names, names, names, names), min_size=1, max_size=8))
def test_hostile_names_survive_csv_and_never_reach_the_page_as_markup(keys: list[tuple[str, str, str, str]]) -> None:
    """Department, project, model and user names are whatever producers sent: CSV quoting keeps each one whole and
    the page escapes them."""
    import csv
    import io

    from services.reports import outputs

    rows = [Row("t", d, p, m, "v1", "", u, 1, 1, 1, Decimal(0), Decimal(0), 0, Decimal("0.5"), Decimal(0),
                Decimal(0), Decimal(0), Decimal("0.5"), ()) for d, p, m, u in keys]
    report = chargeback.build(date(2026, 11, 1), rows, "USD", {1: 30}, ["x <script>"])
    parsed = list(csv.DictReader(io.StringIO(outputs.rows_csv(report).decode(), newline="")))
    assert sorted((r["department_id"], r["project_id"], r["model"], r["user_id"]) for r in parsed) == sorted(
        (r.department_id, r.project_id, r.model, r.user_id) for r in report.rows)
    page = outputs.html(report, "2026-12-03T00:00:00Z")
    assert "<script" not in page
