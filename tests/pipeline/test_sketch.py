"""The latency sketch answers quantiles within its relative accuracy, after merging."""

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import sketch


def hist_of(values):
    return Counter(sketch.bucket(v) for v in values)


@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_quantiles_within_relative_accuracy(q):
    rnd = random.Random(7)
    values = sorted(rnd.lognormvariate(5, 1.2) + 1 for _ in range(20_000))
    exact = values[int(q * (len(values) - 1))]
    assert sketch.quantile(hist_of(values), q) == pytest.approx(exact, rel=sketch.RELATIVE_ACCURACY * 1.01)


def test_merged_sketches_equal_the_sketch_of_all_values():
    rnd = random.Random(3)
    a = [rnd.uniform(1, 5000) for _ in range(3000)]
    b = [rnd.uniform(1, 120_000) for _ in range(3000)]
    merged = hist_of(a) + hist_of(b)
    assert merged == hist_of(a + b)
    assert sketch.quantile(merged, 0.5) == sketch.quantile(hist_of(a + b), 0.5)


def test_edges():
    assert sketch.quantile({}, 0.5) is None
    assert sketch.bucket(0) == 0 and sketch.representative(0) == 0.0
    assert sketch.bucket(120_000) < 2**16  # fits the UInt16 key of usage_10s.latency_hist
    with pytest.raises(ValueError, match="q=1.5"):
        sketch.quantile({1: 1}, 1.5)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(0, 2000), st.integers(0, 10**6), max_size=60),
       st.lists(st.floats(0, 1), min_size=1, max_size=4))
def test_quantiles_at_once_equal_each_quantile_alone(hist, qs):
    """quantiles() (one pass, bisect) gives what walking the sorted buckets for each q gives, zero counts included."""
    def walk(q):
        total = sum(hist.values())
        if total == 0:
            return None
        seen = 0
        for index in sorted(hist):
            seen += hist[index]
            if seen > q * (total - 1):
                return sketch.representative(index)
        return sketch.representative(max(hist))

    assert sketch.quantiles(hist, qs) == [walk(q) for q in qs]
