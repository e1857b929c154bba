"""Quota limits through the API (real PostgreSQL): the admin sets, changes and removes them for its own tenants
only, every change lands in the append-only history with who, when, why, before and after (and in the access log),
bad levels are named 400s, and the API's login cannot write the tables except through set_quota_limit()."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import requests

from tests.support.fixtures_api import Api


def put(api: Api, token: str, body: dict[str, Any]) -> requests.Response:
    return requests.put(api.url + "/v1/quota-limits", json=body, headers={"Authorization": f"Bearer {token}"},
                        timeout=30)


def limit(api: Api, **change: Any) -> dict[str, Any]:
    return {"tenant": api.tenant(0), "scope": "user", "id": "quota-user", "metric": "tokens", "period": "day",
            "soft": "800", "hard": "1000.5", "reason": "pilot budget", **change}


def test_the_admin_sets_changes_and_removes_a_limit_and_every_change_is_recorded(api: Api) -> None:
    admin = api.tokens[("admin", 0)]
    first = put(api, admin, limit(api))
    assert first.status_code == 200, first.text
    change = first.json()["data"]
    assert (change["changed_by"], change["old_hard"], change["new_soft"], change["new_hard"], change["deleted"]) == (
        "admin-0", None, "800.000000", "1000.500000", False)
    assert api.last_records()[0]["endpoint"] == "/v1/quota-limits" and api.last_records()[0]["tenants"] == [api.tenant(0)]
    second = put(api, admin, limit(api, soft=None, hard="2000", reason="raised")).json()["data"]
    assert (second["old_soft"], second["old_hard"], second["new_soft"], second["new_hard"]) == (
        "800.000000", "1000.500000", None, "2000.000000")
    listed = api.get("/v1/quota-limits", admin).json()["data"]
    assert [(r["scope_id"], r["soft_limit"], r["hard_limit"], r["updated_by"]) for r in listed
            if r["scope_id"] == "quota-user"] == [("quota-user", None, "2000.000000", "admin-0")]
    removed = put(api, admin, limit(api, soft=None, hard=None, reason="pilot over")).json()["data"]
    assert removed["deleted"] and removed["old_hard"] == "2000.000000"
    assert put(api, admin, limit(api, soft=None, hard=None)).status_code == 404  # nothing left to remove
    history = api.get("/v1/quota-limits/changes", admin, {"metric": "tokens"}).json()["data"]
    assert [h["reason"] for h in history if h["scope_id"] == "quota-user"][:3] == ["pilot over", "raised", "pilot budget"]


def test_only_the_admin_changes_limits_and_only_for_its_tenants(api: Api) -> None:
    for role in ("financial_director", "pipeline_td", "auditor", "quota_service", "quota_client"):
        refused = put(api, api.tokens[(role, 0)], limit(api))
        assert refused.status_code == 403 and refused.json()["code"] == "metric-not-permitted", role
    other = put(api, api.tokens[("admin", 1)], limit(api))
    assert other.status_code == 403 and other.json()["code"] == "tenant-not-permitted"


@pytest.mark.parametrize("change, parameter", [
    ({"soft": "11", "hard": "10"}, "soft"), ({"hard": "-1"}, "hard"), ({"hard": "1.0000001"}, "hard"),
    ({"hard": "1e40"}, "hard"), ({"hard": "lots"}, "hard"), ({"metric": "bananas"}, "metric"),
    ({"period": "week"}, "period"), ({"scope": "galaxy"}, "scope"), ({"id": "a b"}, "id"), ({"reason": "a\x00b"}, "reason"),
])
def test_bad_limits_are_named_400s(api: Api, change: dict[str, Any], parameter: str) -> None:
    response = put(api, api.tokens[("admin", 0)], limit(api, **change))
    assert response.status_code == 400 and response.json()["parameter"] == parameter, response.text


def test_the_apis_login_cannot_write_limits_or_their_history_directly(api: Api) -> None:
    with psycopg.connect(api.settings.postgres_conninfo(api=True), autocommit=True) as conn:
        for sql in ("UPDATE quota_limits SET hard_limit = 0", "DELETE FROM quota_limit_changes",
                    "INSERT INTO quota_limits (tenant_id, scope, scope_id, metric, period, hard_limit) "
                    f"VALUES ('{api.tenant(0)}', 'tenant', '', 'cost', 'day', 1)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql)
    with api.pg() as conn, pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        conn.execute("DELETE FROM quota_limit_changes")
