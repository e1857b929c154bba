"""Seeded randomness: one `random.Random` per run, plus the few distributions and id makers the simulator uses.

Nothing here reads the clock or the global `random` state, so a seed fully determines every value.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from itertools import accumulate
from statistics import NormalDist
from typing import Generic, Sequence, TypeVar

T = TypeVar("T")

# Standard normal quantiles at 4096 evenly spaced probabilities: a table lookup is ~5x cheaper than
# random.gauss, and a 12-bit normal is plenty for simulated latencies (tails reach +-3.5 sigma).
_NORMAL = tuple(NormalDist().inv_cdf((i + 0.5) / 4096) for i in range(4096))
_VARIANT = "89ab"


class Rand(random.Random):
    """random.Random with fast helpers; subclassing keeps the C methods (random, getrandbits)."""

    def below(self, n: int) -> int:
        """An int in [0, n): like randrange(n) at half the cost (the 2^-53 bias is irrelevant here)."""
        return int(self.random() * n)

    def normal(self) -> float:
        return _NORMAL[self.getrandbits(12)]

    def uuid4_str(self) -> str:
        """A version-4 UUID string from the seeded stream (uuid.uuid4 would read os.urandom)."""
        h = f"{self.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"

    def hex_id(self, n: int = 12) -> str:
        """n lowercase hex digits, for request / session ids."""
        return f"{self.getrandbits(4 * n):0{n}x}"

    def lognormal_ms(self, median_ms: float, sigma: float, lo: int, hi: int) -> int:
        """A log-normal duration with the given median, clamped to [lo, hi] ms (real latencies are skewed)."""
        value = median_ms * math.exp(sigma * _NORMAL[self.getrandbits(12)])
        return int(min(hi, max(lo, value)))

    def chance(self, p: float) -> bool:
        return self.random() < p


class Weighted(Generic[T]):
    """Weighted choice over a fixed list with precomputed cumulative weights (choices() rebuilds them each call)."""

    __slots__ = ("items", "_cum", "_total")

    def __init__(self, items: Sequence[T], weights: Sequence[float]) -> None:
        if len(items) != len(weights) or not items:
            raise ValueError("Weighted needs as many weights as items, and at least one item")
        self.items = list(items)
        self._cum = list(accumulate(weights))
        self._total = self._cum[-1]
        if self._total <= 0:
            raise ValueError("Weighted needs a positive total weight")

    def pick(self, rng: random.Random) -> T:
        return self.items[bisect_right(self._cum, rng.random() * self._total, 0, len(self._cum) - 1)]


def zipf_weights(n: int, s: float = 1.1) -> list[float]:
    """Weights 1/k^s: a few heavy users / popular models, a long tail (what usage dashboards look like)."""
    return [1.0 / (k**s) for k in range(1, n + 1)]
