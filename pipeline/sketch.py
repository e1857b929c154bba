"""A mergeable latency sketch: log-scale buckets with 1% relative accuracy (the DDSketch mapping).

Windows store bucket index -> count, so sketches merge by adding counts (ClickHouse sumMap), and any
quantile of any span is answered after the merge within 1% of the true value.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from itertools import accumulate
from typing import Mapping, Sequence

RELATIVE_ACCURACY = 0.01
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)


def bucket(value_ms: float) -> int:
    """Bucket index of a latency; 0 holds everything below 1 ms (sub-millisecond detail is noise here)."""
    if value_ms < 1:
        return 0
    return int(math.ceil(math.log(value_ms) / _LOG_GAMMA))


def representative(index: int) -> float:
    """The value a bucket stands for: within RELATIVE_ACCURACY of every value mapped to it."""
    if index == 0:
        return 0.0
    return 2 * GAMMA**index / (GAMMA + 1)


def quantile(hist: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0..1) of a merged histogram, None when it is empty."""
    return quantiles(hist, (q,))[0]


def quantiles(hist: Mapping[int, int], qs: Sequence[float]) -> list[float | None]:
    """Several quantiles of one merged histogram, its buckets sorted and summed once (the API answers a row's
    p50 / p95 / p99 together, for hundreds of rows per request); None each when it is empty."""
    for q in qs:
        if not 0 <= q <= 1:
            raise ValueError(f"quantile q={q} must be within [0, 1]")
    indexes = sorted(hist)
    cumulative = list(accumulate(map(hist.__getitem__, indexes)))  # a bucket of count 0 never comes first below
    if not cumulative or cumulative[-1] <= 0:
        return [None for _ in qs]
    total = cumulative[-1]
    # the first bucket whose running count exceeds the rank q * (total - 1)
    return [representative(indexes[min(bisect_right(cumulative, q * (total - 1)), len(indexes) - 1)]) for q in qs]
