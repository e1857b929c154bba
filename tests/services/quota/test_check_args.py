"""check_args(), the one validation of a check's body (the lean layer and the OpenAPI route both use it): generated
bodies are accepted as they were sent or refused with a 400 naming a parameter they carry, never another error."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from services.api.problems import Problem
from services.quota.app import AMOUNT_DECIMALS, FIELDS, check_args
from services.quota.metrics import MAX_VALUE, METRICS
from services.quota.rules import PERIODS

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                       max_size=5), max_leaves=12)
field_values = {
    "tenant": st.text(max_size=12) | json_values, "scope": st.sampled_from(["user", "tenant", "galaxy"]) | json_values,
    "id": st.text(max_size=12) | json_values, "metric": st.sampled_from([*METRICS, "bananas"]) | json_values,
    "amount": json_values | st.decimals(allow_nan=True).map(str) | st.sampled_from(["1e999999", "-0", "0.1", " 2 "]),
    "period": st.sampled_from([*PERIODS, "week", None]) | json_values}
bodies = st.fixed_dictionaries({}, optional={**field_values, "extra": json_values})


@settings(max_examples=1000, deadline=None)
@given(data=bodies | json_values)
def test_a_generated_body_is_accepted_as_sent_or_refused_naming_its_parameter(data):
    # as it arrives: through JSON (NaN and infinities as the bare words a careless client sends)
    data = json.loads(json.dumps(data))
    try:
        args = check_args(data)
    except Problem as problem:
        assert problem.status == 400 and problem.code == "bad-parameter" and problem.detail
        if isinstance(data, dict):
            assert problem.parameter in set(data) | set(FIELDS), problem.parameter
        else:
            assert problem.parameter is None
        json.loads(problem.encode("/v1/check"))  # the problem itself always encodes
        return
    assert set(data) <= set(FIELDS)
    assert (args.tenant, args.metric, args.period) == (data["tenant"], data["metric"], data.get("period"))
    assert args.scope == data.get("scope", "user")
    assert args.scope_id == ("" if args.scope == "tenant" else data.get("id", ""))
    assert args.metric in METRICS and args.period in (*PERIODS, None)
    assert args.amount.is_finite() and 0 <= args.amount <= MAX_VALUE
    assert not isinstance(data["amount"], bool)
    assert args.amount.as_tuple().exponent >= -AMOUNT_DECIMALS


amounts = st.decimals(min_value=0, max_value=MAX_VALUE, places=AMOUNT_DECIMALS, allow_nan=False, allow_infinity=False)


@settings(max_examples=500, deadline=None)
@given(tenant=st.from_regex(r"[a-z0-9_-]{1,20}", fullmatch=True), metric=st.sampled_from(METRICS),
       amount=amounts, period=st.sampled_from([*PERIODS, None]), as_text=st.booleans())
def test_every_valid_body_is_accepted_with_its_exact_amount(tenant, metric, amount, period, as_text):
    sent = str(amount) if as_text else (int(amount) if amount == amount.to_integral() else str(amount))
    args = check_args(json.loads(json.dumps({"tenant": tenant, "id": "u1", "metric": metric, "amount": sent,
                                             "period": period})))
    assert (args.tenant, args.scope, args.scope_id, args.metric, args.amount, args.period) == (
        tenant, "user", "u1", metric, amount, period)


@pytest.mark.parametrize("data, parameter", [
    ({"metric": "credits", "amount": "1"}, "tenant"), ({"tenant": "t", "amount": "1"}, "metric"),
    ({"tenant": "t", "metric": "credits"}, "amount"), ({"tenant": 7, "metric": "credits", "amount": "1"}, "tenant"),
    ({"tenant": "t", "scope": None, "metric": "credits", "amount": "1"}, "scope"),
    ({"tenant": "t", "metric": "credits", "amount": True}, "amount"),
    ({"tenant": "t", "metric": "credits", "amount": [1]}, "amount"),
    ({"tenant": "t", "metric": "credits", "amount": 1e300}, "amount"),
    ({"tenant": "t", "metric": "credits", "amount": "1", "period": 1}, "period"),
    ({"tenant": "t", "metric": "credits", "amount": "1", "limit": "2"}, "limit"),
    (["tenant"], None), ("tenant", None), (None, None),
])
def test_each_bad_body_names_its_parameter(data, parameter):
    with pytest.raises(Problem) as refused:
        check_args(data)
    assert (refused.value.status, refused.value.parameter) == (400, parameter)


def test_a_float_amount_keeps_its_shortest_decimal_form():
    assert check_args({"tenant": "t", "metric": "credits", "amount": 0.1}).amount == Decimal("0.1")
