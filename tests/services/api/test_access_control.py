"""Every endpoint x role x tenant of the running API (real PostgreSQL, the dev ClickHouse engine): what a role may
read it gets, for its tenants only; what it may not is refused with the problem naming why; another tenant's ids,
SQL, huge and reversed ranges and generated hostile parameters never get past the caller's tenants or crash it."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api import permissions
from services.api.permissions import Metric
from services.api.routers import models
from tests.support.fixtures_api import Api

TODAY = datetime.now(timezone.utc).date().isoformat()
# (path, metric type, parameters, documented model); "{task}" is a task of the caller's first tenant
ENDPOINTS: list[tuple[str, Metric | None, dict[str, Any], type]] = [
    ("/v1/whoami", None, {}, models.Single[models.WhoAmI]),
    ("/v1/usage", Metric.USAGE, {"group_by": ["user", "project", "model"]}, models.Page[models.UsageRow]),
    ("/v1/costs", Metric.COSTS, {"group_by": ["user", "department"], "granularity": "hour"}, models.Page[models.CostRow]),
    ("/v1/costs/runs", Metric.COSTS, {}, models.Page[models.RunCostRow]),
    ("/v1/models/performance", Metric.MODELS, {}, models.Page[models.ModelRow]),
    ("/v1/metrics/minute", Metric.MODELS, {"limit": 50}, models.Page[models.MinuteRow]),
    ("/v1/errors/top", Metric.ERRORS, {}, models.Page[models.ErrorRow]),
    ("/v1/retention/d1", Metric.RETENTION, {"cohort_date": TODAY}, models.Single[list[models.Retention]]),
    ("/v1/vms", Metric.VMS, {}, models.Page[models.VmRow]),
    ("/v1/pipeline/health", Metric.PIPELINE, {}, models.Page[models.TopicHealthRow]),
    ("/v1/pipeline/dlq", Metric.PIPELINE, {}, models.Page[models.DlqRow]),
    ("/v1/tasks", Metric.TASKS, {}, models.Page[models.TaskRow]),
    ("/v1/tasks/{task}", Metric.TASKS, {}, models.Single[models.TaskDetail]),
    ("/v1/access", Metric.ACCESS, {}, models.Page[models.AccessRow]),
    ("/v1/access/api", Metric.ACCESS, {}, models.Page[models.ApiAccessRow]),
    ("/v1/quota-limits", Metric.QUOTA_LIMITS, {}, models.Page[models.QuotaLimit]),
    ("/v1/quota-limits/changes", Metric.QUOTA_LIMITS, {}, models.Page[models.QuotaLimitChange]),
]


def own_task(api: Api, index: int) -> str:
    return api.data.task_ids[api.tenant(index)][1]


def markers(api: Api, index: int) -> list[str]:
    """Strings only another tenant's rows contain: its tenant id, and its user, project, task and host ids."""
    out = []
    for i, t in enumerate(api.data.tenants):
        if i != index:
            out += [t.tenant_id, f"{t.code}-user", f"{t.code}-task-", f"{t.code}-chat", f"{t.code}-reports",
                    f"aks-{t.code}-", f"{t.code}-research", f"{t.code}-finance", f"{t.code}-dataset"]
    return out


def assert_own_tenant_only(api: Api, index: int, path: str, body: dict[str, Any]) -> None:
    rows = body["data"] if isinstance(body["data"], list) else [body["data"]]
    for row in rows:
        if "tenant_id" in row:
            assert row["tenant_id"] == api.tenant(index), (path, row)
        if "record" in row:  # the API's access log: records of requests that covered the caller's tenants
            assert set(row["record"]["tenants"]) & {api.tenant(index)}, row
    if path != "/v1/access/api":  # its records quote what callers asked for, their own parameters included
        text = str(body)
        leaked = [m for m in markers(api, index) if m in text]
        assert not leaked, f"{path} shows another tenant's {leaked[:3]}"


def test_the_matrix_covers_every_endpoint_of_the_spec(api: Api) -> None:
    spec = __import__("requests").get(api.url + "/openapi.json", timeout=10).json()
    documented = {p for p, ops in spec["paths"].items() if p.startswith("/v1") and "get" in ops}
    exports = {"/v1/exports/{dataset}"}  # not JSON: tests/services/api/test_exports.py has its matrix
    assert documented == {p.replace("{task}", "{task_id}") for p, *_ in ENDPOINTS} | exports


@pytest.mark.parametrize("role", list(permissions.ROLES))
@pytest.mark.parametrize("path, metric, params, model", ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_each_role_reads_what_the_matrix_allows_for_its_tenant_only(api: Api, role: str, path: str, metric: Metric | None,
                                                                     params: dict[str, Any], model: type) -> None:
    for index in range(2):
        token = api.tokens[(role, index)]
        before = api.access_log_size()
        response = api.get(path.replace("{task}", own_task(api, index)), token, params)
        if metric is not None and metric not in permissions.ROLES[role].metrics:
            assert response.status_code == 403, response.text
            problem = response.json()
            assert response.headers["content-type"] == "application/problem+json"
            assert problem["code"] == "metric-not-permitted" and role in problem["detail"]
        else:
            assert response.status_code == 200, response.text
            body = response.json()
            model.model_validate(body)  # the answer is what the spec documents
            assert_own_tenant_only(api, index, path, body)
            if path not in ("/v1/access/api", "/v1/retention/d1"):
                assert body["data"], f"{path}: the test data should give rows"
        # every request is in the access log before its answer, refused ones too
        assert api.access_log_size() == before + 1
        record = api.last_records()[0]
        assert (record["principal"], record["role"], record["status"]) == (f"{role}-{index}", role, response.status_code)


@pytest.mark.parametrize("path, metric, params, model", ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_another_tenant_is_refused_whatever_the_endpoint(api: Api, path: str, metric: Metric | None, params: dict[str, Any],
                                                          model: type) -> None:
    role = next(r for r, p in permissions.ROLES.items() if metric is None or metric in p.metrics)
    response = api.get(path.replace("{task}", own_task(api, 0)), api.tokens[(role, 0)],
                       {**params, "tenant": [api.tenant(0), api.tenant(1)]})
    assert response.status_code == 403 and response.json()["code"] == "tenant-not-permitted", response.text
    assert response.json()["parameter"] == "tenant"


def test_another_tenants_ids_as_filters_find_nothing(api: Api) -> None:
    other = api.data.tenants[1]
    admin = api.tokens[("admin", 0)]
    for path, params in (("/v1/usage", {"user": f"{other.code}-user0"}), ("/v1/usage", {"project": f"{other.code}-chat"}),
                         ("/v1/tasks", {"user": f"{other.code}-user1"}), ("/v1/access", {"resource": f"{other.code}-dataset-0"}),
                         ("/v1/tasks", {"node": other.nodes[0][0]})):
        response = api.get(path, admin, params)
        assert response.status_code == 200 and response.json()["data"] == [], (path, params, response.text)
    task = api.data.task_ids[other.tenant_id][0]
    response = api.get(f"/v1/tasks/{task}", admin)
    assert response.status_code == 404 and response.json()["code"] == "not-found"
    # a pseudonym of another tenant's user names no user of the caller's
    theirs = api.get("/v1/usage", api.tokens[("pipeline_td", 1)], {"group_by": "user"}).json()["data"][0]["user_id"]
    assert api.get("/v1/usage", api.tokens[("pipeline_td", 0)], {"user": theirs}).json()["data"] == []


SQL = ["x' OR '1'='1", "'; DROP TABLE audit_log; --", "1) UNION ALL SELECT name FROM system.users --",
       "{tenants:Array(String)}", "a\x00b", "x\nSELECT 1", "\\' OR 1=1 #", "%27%20OR%201%3D1"]


@pytest.mark.parametrize("value", SQL)
def test_sql_in_parameters_is_a_clear_400(api: Api, value: str) -> None:
    for path, name in (("/v1/usage", "project"), ("/v1/tasks", "model"), ("/v1/access", "resource"),
                       ("/v1/usage", "user"), ("/v1/costs", "department")):
        role = "admin" if path != "/v1/costs" else "financial_director"
        response = api.get(path, api.tokens[(role, 0)], {name: value})
        assert response.status_code == 400, (path, name, response.text)
        assert response.json()["parameter"] == name
    assert api.get(f"/v1/tasks/{value}", api.tokens[("admin", 0)]).status_code in (400, 404)


@pytest.mark.parametrize("params, status, code, parameter", [
    ({"from": "2000-01-01", "to": "2026-01-01"}, 403, "range-exceeds-role-limit", "from"),
    ({"from": "1999-12-31"}, 400, "bad-parameter", "from"),
    ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, 400, "bad-parameter", "from"),
    ({"to": "2999-01-01T00:00:00Z"}, 400, "bad-parameter", "to"),
    ({"from": "yesterday"}, 400, "bad-parameter", "from"),
    ({"from": "2026-03-01T10:00:00"}, 400, "bad-parameter", "from"),
    ({"granularity": "second"}, 400, "bad-parameter", "granularity"),
    ({"group_by": "tenant"}, 400, "bad-parameter", "group_by"),
    ({"limit": 0}, 400, "bad-parameter", "limit"),
    ({"limit": 10**9}, 400, "bad-parameter", "limit"),
    ({"offset": -1}, 400, "bad-parameter", "offset"),
])
def test_bad_ranges_and_parameters_are_named(api: Api, params: dict[str, Any], status: int, code: str,
                                              parameter: str) -> None:
    response = api.get("/v1/usage", api.tokens[("pipeline_td", 0)], params)
    assert response.status_code == status, response.text
    problem = response.json()
    assert (problem["code"], problem["parameter"]) == (code, parameter), problem
    assert api.last_records()[0]["status"] == status


def test_each_role_gets_its_own_longest_range(api: Api) -> None:
    for role, policy in permissions.ROLES.items():
        if Metric.USAGE not in policy.metrics:  # quota_client: decisions only, no range of usage to read
            continue
        days = policy.max_range.days
        now = datetime.now(timezone.utc).replace(microsecond=0)
        within = {"from": (now - policy.max_range).isoformat(), "to": now.isoformat()}
        beyond = {"from": (now - policy.max_range).replace(second=0).isoformat().replace("+00:00", "Z"),
                  "to": (now.replace(second=0) + __import__("datetime").timedelta(minutes=1)).isoformat()}
        token = api.tokens[(role, 0)]
        assert api.get("/v1/usage", token, within).status_code == 200, (role, days)
        refused = api.get("/v1/usage", token, beyond)
        assert refused.status_code == 403 and f"at most {days} days" in refused.json()["detail"], (role, refused.text)


def test_pages_follow_next_offset_to_the_end_without_overlap(api: Api) -> None:
    token = api.tokens[("admin", 0)]
    seen, offset = [], 0
    while offset is not None:
        body = api.get("/v1/tasks", token, {"limit": 7, "offset": offset}).json()
        seen += [(r["task_id"], r["attempt"]) for r in body["data"]]
        offset = body["page"]["next_offset"]
    assert len(seen) == len(set(seen)) == len(api.data.task_ids[api.tenant(0)])


_NAMES = ["from", "to", "granularity", "group_by", "department", "project", "user", "model", "checkpoint", "limit",
          "offset", "tenant", "status", "node", "topic", "resource", "action", "decision", "model_id", "cohort_date"]
_HOSTILE = st.one_of(st.text(max_size=300), st.sampled_from(SQL), st.integers(-10**20, 10**20).map(str),
                     st.sampled_from(["psn_aaaaaaaaaaaaaaaaaaaa", "2026-03-01", "9999-12-31T23:59:59Z", "", "NaN"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from([e[0] for e in ENDPOINTS if "{" not in e[0]]),
       params=st.lists(st.tuples(st.one_of(st.sampled_from(_NAMES), st.text(max_size=20)), _HOSTILE), max_size=6))
def test_generated_hostile_parameters_never_crash_or_leak(api: Api, path: str, params: list[tuple[str, str]]) -> None:
    response = api.get(path, api.tokens[("admin", 0)] if path not in ("/v1/costs", "/v1/costs/runs") else
                       api.tokens[("financial_director", 0)], params)
    assert response.status_code in (200, 400, 403, 404), response.text
    if response.status_code == 200:
        assert_own_tenant_only(api, 0, path, response.json())
    else:
        assert response.headers["content-type"] == "application/problem+json"
        assert re.fullmatch(r"[a-z-]+", response.json()["code"])


def test_aggregates_come_from_the_windows_that_overlap_the_range(api: Api) -> None:
    """A range inside one hour still gets that hour's usage and cost; one that touches no window gets nothing."""
    hour = api.data.start + __import__("datetime").timedelta(hours=2)
    inside = {"from": (hour.replace(minute=20)).isoformat(), "to": (hour.replace(minute=21)).isoformat(),
              "granularity": "hour"}
    usage = api.get("/v1/usage", api.tokens[("admin", 0)], inside).json()["data"]
    assert [r["bucket"] for r in usage] == [hour.strftime("%Y-%m-%dT%H:00:00.000Z")]
    costs = api.get("/v1/costs", api.tokens[("financial_director", 0)], inside).json()["data"]
    assert [r["bucket"] for r in costs] == [hour.strftime("%Y-%m-%dT%H:00:00.000Z")]
    before = {"from": (api.data.start - __import__("datetime").timedelta(hours=3)).isoformat(),
              "to": api.data.start.isoformat()}
    assert api.get("/v1/usage", api.tokens[("admin", 0)], before).json()["data"] == []
