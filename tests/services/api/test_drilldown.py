"""Drill-down on the running API: from a department's usage, following only the links the answers carry, to its
projects, a project's users, a user's tasks and a task's raw events from the lake; each level's totals add up to
the row above it, and a role that may not read tasks gets no link to them."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

from tests.support.fixtures_api import Api


def follow(api: Api, token: str, link: str) -> dict[str, Any]:
    response = api.get(link, token)
    assert response.status_code == 200, (link, response.text)
    return response.json()


def test_a_department_drills_down_to_a_tasks_raw_events(api: Api) -> None:
    token = api.tokens[("admin", 0)]
    target = follow(api, token, f"/v1/tasks/{api.lake_task}")["data"]["attempts"][0]  # the task the lake holds
    span = {"from": api.data.start.isoformat(), "to": api.data.end.isoformat()}
    departments = api.get("/v1/usage", token, {"group_by": "department", "granularity": "day", **span}).json()["data"]
    row = next(r for r in departments if r["department_id"] == target["department_id"])
    for column, value in (("project_id", target["project_id"]), ("user_id", target["user_id"])):
        below = follow(api, token, row["links"]["next"])["data"]
        assert below and sum(r["requests"] for r in below) == row["requests"], column  # the level adds up
        assert all(r.get("department_id", row.get("department_id")) == row.get("department_id") for r in below)
        row = next(r for r in below if r[column] == value)
    tasks = follow(api, token, row["links"]["tasks"])["data"]
    assert tasks and {t["user_id"] for t in tasks} == {target["user_id"]}
    assert {t["project_id"] for t in tasks} == {target["project_id"]}
    chosen = next(t for t in tasks if t["task_id"] == api.lake_task)
    detail = follow(api, token, chosen["links"]["task"])["data"]
    assert detail["events"], "the lake's events of the task"
    assert {e["task_id"] for e in detail["events"] if "task_id" in e} <= {api.lake_task}


def test_pseudonymous_roles_drill_by_pseudonym_and_roles_without_tasks_stop_at_users(api: Api) -> None:
    span = {"from": api.data.start.isoformat(), "to": api.data.end.isoformat()}
    td = api.tokens[("pipeline_td", 0)]
    users = api.get("/v1/usage", td, {"group_by": "user", "granularity": "day", **span}).json()["data"]
    assert users and all(r["user_id"].startswith("psn_") for r in users)
    tasks = follow(api, td, users[0]["links"]["tasks"])["data"]
    assert tasks and {t["user_id"] for t in tasks} == {users[0]["user_id"]}
    fd = api.tokens[("financial_director", 0)]
    costs = api.get("/v1/costs", fd, {"group_by": ["department", "user"], "granularity": "day", **span}).json()["data"]
    assert costs and all("links" not in r for r in costs)  # the user level leads to tasks, which FD may not read
    by_department = api.get("/v1/costs", fd, {"group_by": "department", "granularity": "day", **span}).json()["data"]
    projects = follow(api, fd, by_department[0]["links"]["next"])["data"]
    assert projects and {r["department_id"] for r in projects} == {by_department[0]["department_id"]}


def test_month_buckets_are_times_and_hold_the_days_of_the_month(api: Api) -> None:
    span = {"from": api.data.start.isoformat(), "to": api.data.end.isoformat()}
    for path, role, column in (("/v1/usage", "admin", "credits"), ("/v1/costs", "financial_director", "total_cost")):
        token = api.tokens[(role, 0)]
        totals = {}
        for granularity in ("day", "month"):
            answer = api.get(path, token, {"group_by": "department", "granularity": granularity, **span})
            assert answer.status_code == 200, (path, granularity, answer.text)
            rows = answer.json()["data"]
            buckets = [datetime.fromisoformat(r["bucket"]) for r in rows]
            assert buckets and {(b.time(), b.utcoffset()) for b in buckets} == {(time(0), timedelta(0))}
            if granularity == "month":
                assert {b.day for b in buckets} == {1}
            totals[granularity] = sum(Decimal(r[column]) for r in rows)
        assert totals["day"] == totals["month"] > 0, path
