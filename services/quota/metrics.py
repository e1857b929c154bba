"""The quota metrics and how one day of a user's usage (a telemetry.usage.v1 record, or the same columns summed from
ClickHouse's usage_1d) turns into them, exactly: credits, GPU-seconds, CPU-seconds, tokens and cost.

Workflow and Kubernetes report the same allocation twice, so credits and unit-seconds take the larger of the two
reports, as the cost views do (there per hour and artifact, here per user and day). Cost prices the day's tokens and
unit-seconds at the catalogue's `*` prices in force at the day's start (usage on the topic carries no model).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation, localcontext
from typing import Any, Mapping

from telemetry.settings import QUOTA_METRICS

# Named in the settings module, whose QUOTA_FAIL_POLICY is per metric; PostgreSQL's quota_limits checks the same.
METRICS: tuple[str, ...] = QUOTA_METRICS
METRIC_DOCS: dict[str, str] = {
    "credits": "credits charged (the larger of the Workflow and Kubernetes reports of a user's day)",
    "gpu_seconds": "allocated GPU-seconds (the larger of the two reports)",
    "cpu_seconds": "allocated core-seconds (the larger of the two reports)",
    "tokens": "LLM tokens in + out",
    "cost": "tokens, GPU- and CPU-seconds at the price catalogue's `*` prices in force at the day's start",
}
# The usage columns the metrics are made of: on the topic and in usage_1d alike.
COLUMNS = ("tokens_in", "tokens_out", "wkf_cpu_seconds", "wkf_gpu_seconds", "kuber_cpu_seconds", "kuber_gpu_seconds",
           "wkf_credits", "kuber_credits")
ZERO = Decimal(0)
# Larger than any real day's total (the job's money is Decimal(38, 6)); a bigger number is a corrupt record.
MAX_VALUE = Decimal(10) ** 30
# A day's cost is cut (not rounded) to 12 decimals, as the cost views' Decimal(38, 12) casts cut theirs.
COST_QUANTUM = Decimal("1e-12")
PRICE_KINDS = ("tokens_in_1k", "tokens_out_1k", "gpu_hour", "cpu_hour")

Totals = tuple[Decimal, ...]  # one value per METRICS entry, in order
NO_USAGE: Totals = (ZERO,) * len(METRICS)


class BadUsage(ValueError):
    """A usage record that cannot be read: the message says which column and why."""


@dataclass(frozen=True)
class Prices:
    """The catalogue's `*` prices: per kind, periods (valid_from, valid_to, unit_price) with times as
    'YYYY-MM-DD HH:MM:SS' UTC, [from, to); and the catalogue's currency."""

    currency: str
    periods: Mapping[str, tuple[tuple[str, str, Decimal], ...]]

    def at(self, kind: str, day: str) -> Decimal:
        """The unit price in force at the start of day (YYYY-MM-DD); zero when none is (the usage is unpriced)."""
        moment = day + " 00:00:00"
        for start, end, price in self.periods.get(kind, ()):
            if start <= moment < end:
                return price
        return ZERO


NO_PRICES = Prices("", {})


def column(record: Mapping[str, Any], name: str) -> Decimal:
    """A usage column as an exact decimal: absent or null is zero; negative, fractional counts or absurd sizes are
    refused (a float is read through its shortest repr, never its binary expansion)."""
    value = record.get(name)
    if value is None:
        return ZERO
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise BadUsage(f"{name} is {type(value).__name__}, not a number")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise BadUsage(f"{name}={str(value)[:40]!r} is not a number") from None
    if not number.is_finite() or number < 0 or number > MAX_VALUE:
        raise BadUsage(f"{name}={str(value)[:40]!r} is not a usage amount (0 to 1e30)")
    return number


Raw = tuple[Decimal, ...]  # one value per COLUMNS entry, in order


def raw(record: Mapping[str, Any]) -> Raw:
    """A record's usage columns, exact (BadUsage names the first bad one)."""
    return tuple(column(record, name) for name in COLUMNS)


def totals(columns: Raw, day: str, prices: Prices) -> Totals:
    """The quota metrics of one user's day of usage."""
    c = dict(zip(COLUMNS, columns))
    gpu = max(c["wkf_gpu_seconds"], c["kuber_gpu_seconds"])
    cpu = max(c["wkf_cpu_seconds"], c["kuber_cpu_seconds"])
    with localcontext() as ctx:  # wide enough that nothing rounds before the one cut to COST_QUANTUM
        ctx.prec = 100
        cost = ((c["tokens_in"] * prices.at("tokens_in_1k", day) + c["tokens_out"] * prices.at("tokens_out_1k", day)) / 1000
                + gpu * prices.at("gpu_hour", day) / 3600 + cpu * prices.at("cpu_hour", day) / 3600)
        cost = cost.quantize(COST_QUANTUM, rounding=ROUND_DOWN)
    return (max(c["wkf_credits"], c["kuber_credits"]), gpu, cpu, c["tokens_in"] + c["tokens_out"], cost)


def add(a: Totals, b: Totals) -> Totals:
    return tuple(x + y for x, y in zip(a, b))


def subtract(a: Totals, b: Totals) -> Totals:
    return tuple(x - y for x, y in zip(a, b))


def index(metric: str) -> int:
    return METRICS.index(metric)
