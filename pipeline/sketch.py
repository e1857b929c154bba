"""A mergeable latency sketch: log-scale buckets with 1% relative accuracy (the DDSketch mapping).

Windows store bucket index -> count, so sketches merge by adding counts (ClickHouse sumMap), and any
quantile of any span is answered after the merge within 1% of the true value.
"""

from __future__ import annotations

import math
from typing import Mapping

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
    if not 0 <= q <= 1:
        raise ValueError(f"quantile q={q} must be within [0, 1]")
    total = sum(hist.values())
    if total == 0:
        return None
    rank = q * (total - 1)
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen > rank:
            return representative(index)
    return representative(max(hist))
