"""The monthly chargeback report as plain data: a month's priced cost rows summed per project, department and tenant,
with charges in whole cents apportioned so that every level adds up to the cent, unpriced items named, and the late
corrections since the previous run of the same month. No I/O: services.reports.source reads, .outputs writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Iterable, Mapping, Sequence

COST_ITEMS = ("token_cost", "gpu_cost", "cpu_cost", "load_cost", "total_cost")
QUANTITIES = ("requests", "tokens_in", "tokens_out", "gpu_seconds", "cpu_seconds", "load_transfer_bytes")
CENT = Decimal("0.01")
EXACT = Decimal("0.000000000001")  # the cost tables' Decimal(38, 12)
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")

ProjectKey = tuple[str, str, str]  # tenant, department, project


class MonthError(ValueError):
    """A month the report cannot be made for; the message names the value and the fix."""


def parse_month(text: str, today: date) -> date:
    """'2026-11' -> date(2026, 11, 1); a malformed month, or one that has not started by `today`, is refused."""
    match = _MONTH.match(text.strip())
    if not match or not 1 <= int(match[2]) <= 12:
        raise MonthError(f"--month {text!r}: give a month as YYYY-MM, e.g. {today:%Y-%m}")
    first = date(int(match[1]), int(match[2]), 1)
    if first > today.replace(day=1):
        raise MonthError(f"--month {text}: the month has not started yet (today is {today.isoformat()} UTC); "
                         f"give {today:%Y-%m} or an earlier month")
    return first


def next_month(first: date) -> date:
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


@dataclass(frozen=True)
class Row:
    """One tenant / department / project / model / model version / checkpoint / user of the month, summed."""
    tenant_id: str
    department_id: str
    project_id: str
    model: str
    model_version: str
    checkpoint_id: str
    user_id: str
    requests: int
    tokens_in: int
    tokens_out: int
    gpu_seconds: Decimal
    cpu_seconds: Decimal
    load_transfer_bytes: int
    token_cost: Decimal
    gpu_cost: Decimal
    cpu_cost: Decimal
    load_cost: Decimal
    total_cost: Decimal
    unpriced: tuple[str, ...]

    @property
    def project(self) -> ProjectKey:
        return self.tenant_id, self.department_id, self.project_id

    def sort_key(self) -> tuple[str, ...]:
        return (self.tenant_id, self.department_id, self.project_id, self.model, self.model_version,
                self.checkpoint_id, self.user_id)


@dataclass(frozen=True)
class Total:
    """Exact cost items of a group and its charge in whole currency units of two decimals."""
    key: tuple[str, ...]
    items: Mapping[str, Decimal]
    charge: Decimal


@dataclass(frozen=True)
class Correction:
    """A project whose exact total changed since the previous run of the month (before None: it is new)."""
    project: ProjectKey
    before: Decimal | None
    now: Decimal

    @property
    def delta(self) -> Decimal:
        return self.now - (self.before or Decimal(0))


@dataclass(frozen=True)
class RunOutcome:
    """Task attempts of a project that ended in the month with one status, and what they cost."""
    tenant_id: str
    department_id: str
    project_id: str
    status: str
    attempts: int
    cost: Decimal
    unpriced: tuple[str, ...]


@dataclass(frozen=True)
class VmTime:
    """A VM type's hours in the month: covered by task attempts (active) or not (idle), and their cost."""
    vm_type: str
    active_seconds: Decimal
    idle_seconds: Decimal
    active_cost: Decimal
    idle_cost: Decimal
    unpriced: tuple[str, ...]


@dataclass(frozen=True)
class Report:
    month: date
    currency: str
    rows: tuple[Row, ...]
    row_charges: tuple[Decimal, ...]  # parallel to rows
    projects: tuple[Total, ...]
    departments: tuple[Total, ...]
    grand: Total
    catalogue_versions: Mapping[int, int]  # version -> days of the month priced with it
    unpriced: Mapping[str, tuple[ProjectKey, ...]]  # kind:item -> projects with usage it does not price
    provisional_reasons: tuple[str, ...]
    corrections: tuple[Correction, ...] | None = None  # None: no previous run of this month
    previous_generated_at: str | None = None
    history: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)  # yyyy-mm -> department -> total
    # shown apart from the charge (the same work is charged above as tokens, GPU and CPU): sorted
    runs: tuple[RunOutcome, ...] = ()
    vms: tuple[VmTime, ...] = ()

    @property
    def provisional(self) -> bool:
        return bool(self.provisional_reasons)

    @property
    def empty(self) -> bool:
        return not self.rows


def apportion(total_cents: int, parts: Sequence[Decimal]) -> list[int]:
    """Whole cents per part adding up to total_cents: each part's cents rounded down, the cents left given to the
    parts with the largest remainders (the first of equal ones), so the parts' cents differ from the exact amounts by
    less than a cent each. total_cents must be within len(parts) cents above the parts' floors (a rounded sum is)."""
    floors = [int((part * 100).to_integral_value(ROUND_FLOOR)) for part in parts]
    left = total_cents - sum(floors)
    if not 0 <= left <= len(parts):
        raise ValueError(f"{total_cents} cents cannot be apportioned over parts summing to {sum(parts)}")
    order = sorted(range(len(parts)), key=lambda i: (-(parts[i] * 100 - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return floors


def cents(amount: Decimal) -> int:
    return int((amount * 100).to_integral_value(ROUND_HALF_EVEN))


def _sum_items(rows: Iterable[Row]) -> dict[str, Decimal]:
    sums = {item: Decimal(0) for item in COST_ITEMS}
    for row in rows:
        for item in COST_ITEMS:
            sums[item] += getattr(row, item)
    return sums


def _add(totals: Iterable[Mapping[str, Decimal]]) -> dict[str, Decimal]:
    sums = {item: Decimal(0) for item in COST_ITEMS}
    for items in totals:
        for item in COST_ITEMS:
            sums[item] += items[item]
    return sums


def build(month: date, rows: Iterable[Row], currency: str, catalogue_versions: Mapping[int, int],
          provisional_reasons: Sequence[str], previous: Mapping[ProjectKey, Decimal] | None = None,
          previous_generated_at: str | None = None,
          history: Mapping[str, Mapping[str, Decimal]] | None = None,
          runs: Iterable[RunOutcome] = (), vms: Iterable[VmTime] = ()) -> Report:
    """The month's report: project totals are their rows' sums, department totals their projects' sums, the grand
    total the departments' sum; charges apportioned top down from the grand total rounded to the cent.
    `previous`: the project totals of the last run of this month (its manifest), for the corrections."""
    ordered = tuple(sorted(rows, key=Row.sort_key))
    by_project: dict[ProjectKey, list[int]] = {}
    for index, row in enumerate(ordered):
        by_project.setdefault(row.project, []).append(index)
    project_items = {key: _sum_items(ordered[i] for i in indexes) for key, indexes in by_project.items()}
    by_department: dict[tuple[str, str], list[ProjectKey]] = {}
    for key in by_project:
        by_department.setdefault(key[:2], []).append(key)
    department_items = {dep: _add(project_items[p] for p in projects) for dep, projects in by_department.items()}
    grand_items = _add(department_items.values())

    grand_cents = cents(grand_items["total_cost"])
    departments = list(by_department)
    department_cents = dict(zip(departments, apportion(
        grand_cents, [department_items[d]["total_cost"] for d in departments])))
    project_cents: dict[ProjectKey, int] = {}
    row_cents = [0] * len(ordered)
    for dep, projects in by_department.items():
        project_cents.update(zip(projects, apportion(
            department_cents[dep], [project_items[p]["total_cost"] for p in projects])))
        for project in projects:
            indexes = by_project[project]
            for i, amount in zip(indexes, apportion(project_cents[project],
                                                    [ordered[i].total_cost for i in indexes])):
                row_cents[i] = amount

    unpriced: dict[str, set[ProjectKey]] = {}
    for row in ordered:
        for item in row.unpriced:
            unpriced.setdefault(item, set()).add(row.project)

    corrections = None
    if previous is not None:
        corrections = tuple(
            Correction(key, previous.get(key), project_items.get(key, {}).get("total_cost", Decimal(0)))
            for key in sorted(set(previous) | set(project_items))
            if previous.get(key) != project_items.get(key, {}).get("total_cost"))

    return Report(
        month=month, currency=currency, rows=ordered, row_charges=tuple(_money(c) for c in row_cents),
        projects=tuple(Total(p, project_items[p], _money(project_cents[p])) for p in by_project),
        departments=tuple(Total(d, department_items[d], _money(department_cents[d])) for d in departments),
        grand=Total((), grand_items, _money(grand_cents)),
        catalogue_versions=dict(sorted(catalogue_versions.items())),
        unpriced={item: tuple(sorted(projects)) for item, projects in sorted(unpriced.items())},
        provisional_reasons=tuple(provisional_reasons), corrections=corrections,
        previous_generated_at=previous_generated_at, history=dict(history or {}),
        runs=tuple(sorted(runs, key=lambda r: (r.tenant_id, r.department_id, r.project_id, r.status))),
        vms=tuple(sorted(vms, key=lambda v: v.vm_type)))


def provisional_reasons(month: date, now: datetime, pending_days: Sequence[date], unpriced_days: Sequence[date],
                        unpriced_items: Iterable[str]) -> list[str]:
    """Why the month's figures may still change: not over yet, usage noted but not priced again yet, days with usage
    and no priced rows, usage without a price."""
    reasons = []
    if now.astimezone(timezone.utc).date() < next_month(month):
        reasons.append(f"the month is not over (until {next_month(month).isoformat()} 00:00 UTC)")
    if pending_days:
        reasons.append("usage arrived after the last pricing of " + _days(pending_days) +
                       " (python -m telemetry.costs refresh prices it)")
    if unpriced_days:
        reasons.append("usage not priced yet on " + _days(unpriced_days))
    items = sorted(set(unpriced_items))
    if items:
        reasons.append("no price in the catalogue for " + ", ".join(items) + ": that usage is charged 0 until a "
                       "catalogue version prices it")
    return reasons


def _days(days: Sequence[date]) -> str:
    shown = ", ".join(d.isoformat() for d in sorted(days)[:5])
    return shown + (f" and {len(days) - 5} more day(s)" if len(days) > 5 else "")


def _money(amount_cents: int) -> Decimal:
    return (Decimal(amount_cents) / 100).quantize(CENT)


def exact(amount: Decimal) -> str:
    """An amount as the cost tables hold it, 12 decimals, the same text for the same value."""
    return str(amount.quantize(EXACT))
