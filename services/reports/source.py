"""What the chargeback report reads from ClickHouse: a month of costs_1d summed per key, the catalogue versions and
currency, the bookkeeping that says whether the month's costs are final (cost_dirty_days, cost_refreshes), and the
department totals of the months before, for the chart. Whole UTC days only, so costs_1d alone is read for the
charge; the task runs and VM time shown apart come from the span views of 0013 (computed when read).
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from decimal import Decimal

from clickhouse_connect.driver.client import Client

from services.reports.chargeback import RunOutcome, Row, VmTime, next_month
from telemetry import costs

_ROWS_SQL = """
    SELECT tenant_id, department_id, project_id, model, model_version, checkpoint_id, user_id,
           sum(requests), sum(tokens_in), sum(tokens_out), sum(gpu_seconds), sum(cpu_seconds), sum(load_transfer_bytes),
           sum(token_cost), sum(gpu_cost), sum(cpu_cost), sum(load_cost), sum(total_cost),
           arraySort(groupUniqArrayArray(unpriced))
    FROM {db}.costs_1d
    WHERE window_start >= {{lo:DateTime('UTC')}} AND window_start < {{hi:DateTime('UTC')}}
    GROUP BY tenant_id, department_id, project_id, model, model_version, checkpoint_id, user_id"""

# A day is pending when usage was noted for it after the last refresh that priced it (a day no refresh priced has
# ran_at 1970 from the join's defaults). Days noted for task facts alone recompute the VM tables, not costs_1d.
_VM_ONLY = "(" + ", ".join(f"'{reason}'" for reason in sorted(costs.VM_ONLY)) + ")"
_PENDING_SQL = """
    SELECT noted.day FROM
        (SELECT day, max(noted_at) AS noted FROM {db}.cost_dirty_days
         WHERE day >= {{lo:Date}} AND day < {{hi:Date}} AND reason NOT IN {vm_only} GROUP BY day) AS noted
    LEFT JOIN
        (SELECT arrayJoin(days) AS day, max(ran_at) AS ran FROM {db}.cost_refreshes GROUP BY day) AS priced
    ON noted.day = priced.day
    WHERE noted.noted > priced.ran
    ORDER BY noted.day"""


def _bounds(month: date) -> dict[str, datetime]:
    return {"lo": datetime.combine(month, time(), timezone.utc),
            "hi": datetime.combine(next_month(month), time(), timezone.utc)}


def month_rows(client: Client, database: str, month: date) -> list[Row]:
    result = client.query(_ROWS_SQL.format(db=database), parameters=_bounds(month))
    return [Row(*values[:18], unpriced=tuple(values[18])) for values in result.result_rows]


def catalogue_versions(client: Client, database: str, month: date) -> dict[int, int]:
    """Catalogue version -> days of the month whose costs it priced."""
    rows = client.query(
        f"SELECT catalogue_version, uniqExact(toDate(window_start)) FROM {database}.costs_1d "
        "WHERE window_start >= {lo:DateTime('UTC')} AND window_start < {hi:DateTime('UTC')} "
        "GROUP BY catalogue_version", parameters=_bounds(month)).result_rows
    return {int(version): int(days) for version, days in rows}


def currency(client: Client, database: str) -> str:
    """The catalogue's one currency ('' when no catalogue is loaded)."""
    return str(client.command(f"SELECT any(currency) FROM {database}.price_catalogue") or "")


def pending_days(client: Client, database: str, month: date) -> list[date]:
    return [row[0] for row in client.query(
        _PENDING_SQL.format(db=database, vm_only=_VM_ONLY), parameters={"lo": month, "hi": next_month(month)}).result_rows]


def unpriced_days(client: Client, database: str, month: date) -> list[date]:
    """Days of the month with usage and no priced row at all."""
    return [row[0] for row in client.query(
        f"SELECT DISTINCT toDate(window_start) AS day FROM {database}.usage_1d "
        "WHERE window_start >= {lo:DateTime('UTC')} AND window_start < {hi:DateTime('UTC')} "
        f"AND day NOT IN (SELECT DISTINCT toDate(window_start) FROM {database}.costs_1d "
        "WHERE window_start >= {lo:DateTime('UTC')} AND window_start < {hi:DateTime('UTC')}) ORDER BY day",
        parameters=_bounds(month)).result_rows]


def department_history(client: Client, database: str, month: date, months: int = 6) -> dict[str, dict[str, Decimal]]:
    """'yyyy-mm' -> 'tenant/department' -> total cost, for `months` months ending with `month` (months without costs
    included, empty)."""
    firsts = [month]
    while len(firsts) < months:
        prev = firsts[0]
        firsts.insert(0, date(prev.year - (prev.month == 1), (prev.month - 2) % 12 + 1, 1))
    history: dict[str, dict[str, Decimal]] = {f"{m:%Y-%m}": {} for m in firsts}
    rows = client.query(
        f"SELECT toStartOfMonth(window_start) AS m, tenant_id, department_id, sum(total_cost) FROM {database}.costs_1d "
        "WHERE window_start >= {lo:DateTime('UTC')} AND window_start < {hi:DateTime('UTC')} "
        "GROUP BY m, tenant_id, department_id",
        parameters={"lo": _bounds(firsts[0])["lo"], "hi": _bounds(month)["hi"]}).result_rows
    for first, tenant, department, total in rows:
        history[f"{first:%Y-%m}"][f"{tenant}/{department}"] = total
    return history


def run_outcomes(client: Client, database: str, month: date) -> list[RunOutcome]:
    """Task attempts that ended in the month per project and status, with their cost (cost_tasks_span: the VM
    share of each attempt, or its measured GPU / CPU where the VM type has no price)."""
    rows = client.query(
        f"SELECT tenant_id, department_id, project_id, toString(status), count(), sum(total_cost), "
        f"arraySort(groupUniqArrayArray(unpriced)) "
        f"FROM {database}.cost_tasks_span(lo = {{lo:DateTime('UTC')}}, hi = {{hi:DateTime('UTC')}}) "
        "GROUP BY tenant_id, department_id, project_id, status", parameters=_bounds(month)).result_rows
    return [RunOutcome(*row[:6], unpriced=tuple(row[6])) for row in rows]


def vm_time(client: Client, database: str, month: date) -> list[VmTime]:
    """VM hours of the month per VM type, active and idle (vm_activity_span: observed minus covered by attempts)."""
    rows = client.query(
        f"SELECT vm_type, sum(active_seconds), sum(idle_seconds), sum(active_cost), sum(idle_cost), "
        f"arraySort(groupUniqArrayArray(unpriced)) "
        f"FROM {database}.vm_activity_span(lo = {{lo:DateTime('UTC')}}, hi = {{hi:DateTime('UTC')}}) GROUP BY vm_type",
        parameters=_bounds(month)).result_rows
    return [VmTime(row[0], Decimal(str(row[1])), Decimal(str(row[2])), row[3], row[4], tuple(row[5])) for row in rows]
