"""Drill-down links: department -> project -> user -> the user's tasks -> one task and its raw events (from the lake).

Each row of a usage or cost answer grouped by a level links to the next level below it within the same range and
tenant (the filters of the levels above carried along); a task row links to the task. Links are relative URLs a
client follows with the same token; a level the caller's role may not read gets no link.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from services.api.permissions import Metric, RolePolicy

# (column grouped by, its filter parameter, the next level's group_by); the user level leads to tasks
LEVELS = (("department_id", "department", "project"), ("project_id", "project", "user"), ("user_id", "user", None))


def breakdown(path: str, row: dict[str, Any], dims: list[str], span: dict[str, str], granularity: str,
              policy: RolePolicy) -> dict[str, str] | None:
    """The link from a usage or cost row (path /v1/usage or /v1/costs) to the level below its deepest grouped
    level, or None when it has none."""
    grouped = [level for level in LEVELS if level[0] in dims]
    if not grouped:
        return None
    filters = [(name, row[column]) for column, name, _ in LEVELS if column in dims and row.get(column) is not None]
    query = [("tenant", row["tenant_id"]), ("from", span["from"]), ("to", span["to"]), *filters]
    below = grouped[-1][2]
    if below is not None:  # the levels above stay grouped, so each row below still names its department
        group_by = [("group_by", name) for _, name, _ in grouped] + [("group_by", below)]
        return {"next": f"{path}?{urlencode([*query, ('granularity', granularity), *group_by])}"}
    if Metric.TASKS not in policy.metrics:
        return None
    tasks = [(name, value) for name, value in query if name != "department"]  # tasks filter by project and user
    return {"tasks": f"/v1/tasks?{urlencode(tasks)}"}


def task(row: dict[str, Any]) -> dict[str, str]:
    """A task row's link to the task: its attempts and raw events."""
    return {"task": f"/v1/tasks/{quote(str(row['task_id']), safe='')}?{urlencode([('tenant', row['tenant_id'])])}"}
