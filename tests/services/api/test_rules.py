"""The API's rules in plain Python: the access log's chain check, the hourly digests, time ranges, money."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.api import accesslog, digests, params, permissions
from services.api.app import money
from services.api.problems import Problem


def chain(records: list[str]) -> list[accesslog.Entry]:
    out, prev = [], accesslog.GENESIS
    for seq, record in enumerate(records, 1):
        digest = accesslog.chain_hash(prev, record)
        out.append(accesslog.Entry(seq, record, prev, digest))
        prev = digest
    return out


def test_an_intact_chain_has_no_finding_and_each_kind_of_tampering_is_named_first() -> None:
    entries = chain([accesslog.canonical({"n": i}) for i in range(8)])
    assert list(accesslog.verify(entries)) == []
    edited = [*entries[:3], accesslog.Entry(4, '{"n":99}', entries[3].prev_hash, entries[3].hash), *entries[4:]]
    assert [(f.seq, f.what) for f in accesslog.verify(edited)] == [(4, "changed")]
    deleted = entries[:5] + entries[6:]
    assert [(f.seq, f.what) for f in accesslog.verify(deleted)] == [(6, "deleted")]
    forged = accesslog.Entry(4, "{}", entries[2].hash, accesslog.chain_hash(entries[2].hash, "{}"))
    inserted = entries[:3] + [forged] + [accesslog.Entry(e.seq + 1, e.record, e.prev_hash, e.hash) for e in entries[3:]]
    assert [(f.seq, f.what) for f in accesslog.verify(inserted)] == [(4, "inserted")]
    assert [(f.seq, f.what) for f in accesslog.verify(entries, {3: "0" * 64})] == [(3, "changed")]
    assert [(f.seq, f.what) for f in accesslog.verify(entries[:5], {7: entries[6].hash})] == [(7, "deleted")]


@given(st.dictionaries(st.text(), st.one_of(st.text(), st.integers(), st.lists(st.text()))))
def test_canonical_records_are_ascii_and_stable(record: dict) -> None:
    text = accesslog.canonical(record)
    assert text.isascii() and text == accesslog.canonical(dict(reversed(list(record.items()))))
    assert "\\u0000" not in accesslog.bounded("a\x00b") and len(accesslog.bounded("x" * 5000)) < 1100


def test_hour_digests_chain_and_verify_names_the_hour() -> None:
    start = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
    measured = {start: (3, "a" * 64), start + timedelta(hours=2): (1, "b" * 64)}
    sealed = digests.chain(accesslog.GENESIS, start, start + timedelta(hours=3), measured)
    assert [d.rows for d in sealed] == [3, 0, 1] and sealed[1].rows_sha256 == digests.EMPTY_ROWS_SHA256
    other = {d.hour: d.digest for d in sealed}
    assert list(digests.verify(sealed, measured, other, "copy")) == []
    found = list(digests.verify(sealed, {start: (4, "c" * 64)}, other, "copy"))
    assert [(f.hour.hour, f.what) for f in found] == [(10, "inserted"), (12, "deleted")]


def test_time_ranges_default_and_refuse_what_they_should() -> None:
    now = datetime(2026, 3, 10, 12, tzinfo=timezone.utc)
    week = timedelta(days=7)
    assert params.time_range(None, None, week, now) == params.TimeRange(now - timedelta(hours=24), now)
    assert params.time_range(None, None, timedelta(hours=2), now).span == timedelta(hours=2)
    assert params.time_range("2026-03-09", "2026-03-10T01:00:00+01:00", week, now).end == datetime(2026, 3, 10, tzinfo=timezone.utc)
    for start, end, code in (("2026-03-01", None, "range-exceeds-role-limit"), ("2026-03-10T11:00:00Z", "2026-03-10T10:00:00Z", "bad-parameter"),
                             ("garbage", None, "bad-parameter"), (None, "2027-01-01T00:00:00Z", "bad-parameter")):
        with pytest.raises(Problem) as info:
            params.time_range(start, end, week, now)
        assert info.value.code == code


def test_money_is_exact_decimal_text() -> None:
    assert money(Decimal("12345678901234567890.123456")) == "12345678901234567890.123456"
    assert money(0.1) == "0.1" and money(2.5e-7) == "0.00000025" and money(7) == "7" and money(None) is None
    assert money(float("nan")) is None


def test_the_matrix_names_every_role_of_the_issue_and_renders_for_the_readme() -> None:
    assert {"pipeline_td", "admin", "financial_director", "auditor"} <= set(permissions.ROLES)
    table = permissions.markdown_table()
    for role, policy in permissions.ROLES.items():
        assert f"| `{role}` |" in table and f"{policy.max_range.days} days" in table


def test_answers_render_times_decimals_and_non_finite_numbers() -> None:
    import json

    from services.api.app import JsonBody

    when = datetime(2026, 3, 1, 10, 0, 0, 123000)
    body = json.loads(JsonBody({"t": when, "d": Decimal("1.500000"), "f": 0.25}).body)
    assert body == {"t": "2026-03-01T10:00:00.123Z", "d": "1.500000", "f": 0.25}
    assert json.loads(JsonBody({"rows": [{"x": float("nan"), "t": when}]}).body) == {"rows": [{"x": None, "t": "2026-03-01T10:00:00.123Z"}]}


ANSWER_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


@given(ANSWER_VALUES)
def test_answers_read_back_as_the_standard_librarys_rendering_would(value: object) -> None:
    """The fast encoder (orjson) against the standard library's, on generated answers: the same JSON values,
    integers past 64 bits, non-finite floats (null) and text with any code point included."""
    import json

    from services.api.app import JsonBody, _default, _finite

    expected = json.loads(json.dumps(_finite({"v": value}), ensure_ascii=False, allow_nan=False, default=_default))
    assert json.loads(JsonBody({"v": value}).body) == expected
