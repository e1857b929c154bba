"""Pseudonyms: roles without identity see a stable keyed pseudonym for every user (the same on every endpoint, so
drill-down works), roles with identity see user ids until the user's identity is erased; personal host names too."""

from __future__ import annotations

import re

from services.api.privacy import Privacy, is_pseudonym, pseudonym
from tests.support.fixtures_api import Api

PSEUDONYM = re.compile(r"psn_[a-z2-7]{20}")


def users_in(body: dict) -> set[str]:
    rows = body["data"] if isinstance(body["data"], list) else body["data"]["attempts"]
    return {r["user_id"] for r in rows if r.get("user_id")}


def test_roles_without_identity_see_the_same_pseudonym_on_every_endpoint(api: Api) -> None:
    tenant = api.data.tenants[0]
    td, fd = api.tokens[("pipeline_td", 0)], api.tokens[("financial_director", 0)]
    from_usage = users_in(api.get("/v1/usage", td, {"group_by": "user"}).json())
    from_costs = users_in(api.get("/v1/costs", fd, {"group_by": "user"}).json())
    from_tasks = users_in(api.get("/v1/tasks", td, {"limit": 500}).json())
    assert from_usage and all(PSEUDONYM.fullmatch(u) for u in from_usage | from_costs | from_tasks)
    assert from_usage == from_costs == from_tasks == {pseudonym(api.settings.pseudonym_key(), tenant.tenant_id, u)
                                                      for u in tenant.users}
    # drill-down by pseudonym: the user's own tasks, and only theirs
    chosen = sorted(from_usage)[0]
    tasks = api.get("/v1/tasks", td, {"user": chosen, "limit": 500}).json()["data"]
    assert tasks and {t["user_id"] for t in tasks} == {chosen}
    # a user id instead of a pseudonym is refused to a role without identity
    refused = api.get("/v1/tasks", td, {"user": f"{tenant.code}-user0"})
    assert refused.status_code == 403 and refused.json()["code"] == "identity-not-permitted"


def test_roles_with_identity_see_user_ids_and_personal_hosts(api: Api) -> None:
    tenant = api.data.tenants[0]
    admin = api.tokens[("admin", 0)]
    assert users_in(api.get("/v1/usage", admin, {"group_by": "user"}).json()) == set(tenant.users)
    hosts = {r["host_name"] for r in api.get("/v1/access", admin, {"limit": 500}).json()["data"]}
    assert f"{tenant.code}-user0-laptop" in hosts


def test_a_personal_host_name_is_a_pseudonym_to_roles_without_identity(api: Api) -> None:
    tenant = api.data.tenants[0]
    workstation = f"{tenant.code}-user0-workstation"
    seen = {r["host_name"] for r in api.get("/v1/tasks", api.tokens[("pipeline_td", 0)], {"limit": 500}).json()["data"]}
    assert workstation not in seen and pseudonym(api.settings.pseudonym_key(), "", workstation) in seen
    assert f"aks-{tenant.code}-vmss000000" in seen  # a cluster node names no one
    admin_seen = {r["host_name"] for r in api.get("/v1/tasks", api.tokens[("admin", 0)], {"limit": 500}).json()["data"]}
    assert workstation in admin_seen


def test_erasure_shows_only_the_pseudonym_from_the_next_request_on_and_is_audited(api: Api) -> None:
    tenant = api.data.tenants[2]
    admin = api.issue("erasure-admin", "admin", [tenant.tenant_id])
    auditor = api.issue("erasure-auditor", "auditor", [tenant.tenant_id])
    user = f"{tenant.code}-user2"
    alias = pseudonym(api.settings.pseudonym_key(), tenant.tenant_id, user)
    assert user in users_in(api.get("/v1/usage", admin, {"group_by": "user"}).json())
    # by pseudonym: an admin may erase a user it only knows by pseudonym
    response = api.post("/v1/privacy/erasures", admin, {"tenant": tenant.tenant_id, "user": alias, "reason": "GDPR art. 17"})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["pseudonym"] == alias and not response.json()["data"]["already_erased"]
    record = api.last_records()[0]
    assert record["endpoint"] == "/v1/privacy/erasures" and record["principal"] == "erasure-admin"
    assert alias in record["body"] and record["status"] == 200
    for token in (admin, auditor):
        for path, params in (("/v1/usage", {"group_by": "user"}), ("/v1/access", {"limit": 500})):
            body = api.get(path, token, params).json()
            assert user not in str(body) and alias in str(body), path
    assert api.get("/v1/access", admin, {"user": alias}).json()["data"]  # drill-down by the pseudonym still works
    with api.pg() as conn:
        name, email, erased_at = conn.execute("SELECT display_name, email, erased_at FROM users WHERE tenant_id = %s "
                                              "AND user_id = %s", (tenant.tenant_id, user)).fetchone()
    assert (name, email) == ("", "") and erased_at is not None
    again = api.post("/v1/privacy/erasures", admin, {"tenant": tenant.tenant_id, "user": user})
    assert again.status_code == 200 and again.json()["data"]["already_erased"]
    # only roles granted privacy may ask; and never for another tenant
    denied = api.post("/v1/privacy/erasures", api.tokens[("auditor", 0)], {"tenant": api.tenant(0), "user": "x"})
    assert denied.status_code == 403 and denied.json()["code"] == "metric-not-permitted"
    other = api.post("/v1/privacy/erasures", admin, {"tenant": api.tenant(0), "user": "x"})
    assert other.status_code == 403 and other.json()["code"] == "tenant-not-permitted"


def test_pseudonyms_are_keyed_per_tenant_and_stable() -> None:
    key = b"k" * 40
    assert pseudonym(key, "t1", "alice") == pseudonym(key, "t1", "alice")
    assert pseudonym(key, "t1", "alice") != pseudonym(key, "t2", "alice") != pseudonym(b"j" * 40, "t1", "alice")
    assert is_pseudonym(pseudonym(key, "t1", "alice")) and pseudonym(key, "t1", "") == ""
    privacy = Privacy(key, identity=True, erased=frozenset({("t1", "bob")}), personal_hosts=re.compile("laptop"))
    assert privacy.user("t1", "alice") == "alice" and privacy.user("t1", "bob") == pseudonym(key, "t1", "bob")
    assert privacy.host("bob-laptop") == "bob-laptop"  # identity sees hosts
    blind = Privacy(key, identity=False, personal_hosts=re.compile("laptop"))
    assert blind.host("bob-laptop") == pseudonym(key, "", "bob-laptop") and blind.host("aks-node-1") == "aks-node-1"
