"""Limits and decisions, plain Python: which limits bind a check, the verdict of each (ok, over the soft level,
over the hard level), the decision over them all, and when a change of usage crosses a level (an exceeded event).

A check asks: may this scope spend `amount` more of a metric now? It is denied when, for any hard limit of the scope
or a scope enclosing it, used + amount would exceed the limit (an amount of zero asks whether anything is left, so it
is denied once used reaches the limit). Soft levels never deny; they warn.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

PERIODS = ("day", "month")
SCOPES = ("tenant", "department", "project", "user")
LEVELS = ("soft", "hard")


@dataclass(frozen=True)
class Limit:
    tenant_id: str
    scope: str
    scope_id: str  # "" for the tenant scope
    metric: str
    period: str
    soft: Decimal | None
    hard: Decimal | None


@dataclass(frozen=True)
class Verdict:
    """One limit against the usage of its scope and period."""

    limit: Limit
    period_start: str
    used: Decimal
    after: Decimal  # used + the amount asked for
    level: str  # ok, soft or hard

    @property
    def remaining(self) -> Decimal | None:
        """What is left below the hard level (never below zero); None without one."""
        if self.limit.hard is None:
            return None
        return max(self.limit.hard - self.used, Decimal(0))


def period_start(period: str, day: str) -> str:
    """The first day of the period (YYYY-MM-DD) that holds day."""
    return day if period == "day" else day[:8] + "01"


def month_before(day: str) -> str:
    """The first day of the month before day's month: the oldest day a period of day's month ever needs."""
    d = date.fromisoformat(day)
    year, month = (d.year, d.month - 1) if d.month > 1 else (d.year - 1, 12)
    return f"{year:04d}-{month:02d}-01"


def judge(limit: Limit, used: Decimal, amount: Decimal, day: str) -> Verdict:
    after = used + amount
    if limit.hard is not None and (after > limit.hard or (amount == 0 and used >= limit.hard)):
        level = "hard"
    elif limit.soft is not None and (after > limit.soft or (amount == 0 and used >= limit.soft)):
        level = "soft"
    else:
        level = "ok"
    return Verdict(limit, period_start(limit.period, day), used, after, level)


def binding(verdicts: list[Verdict]) -> Verdict | None:
    """The verdict that decides: the worst level, then the least left below its level."""
    if not verdicts:
        return None
    rank = {"hard": 0, "soft": 1, "ok": 2}

    def headroom(v: Verdict) -> Decimal:
        level = v.limit.hard if v.limit.hard is not None else v.limit.soft
        return (level if level is not None else Decimal(0)) - v.after

    return min(verdicts, key=lambda v: (rank[v.level], headroom(v)))


def allowed(verdicts: list[Verdict]) -> bool:
    return all(v.level != "hard" for v in verdicts)


def crossed(limit: Limit, before: Decimal, after: Decimal) -> list[str]:
    """The levels a change of usage from before to after went past (upwards): each one an exceeded event."""
    out = []
    for level, value in (("soft", limit.soft), ("hard", limit.hard)):
        if value is not None and before <= value < after:
            out.append(level)
    return out
