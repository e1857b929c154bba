"""Bearer tokens: opaque API tokens (revocation takes effect on the next request) and JWTs checked against a JWKS
the test serves from keys it made; every refused attempt is a clear 401 / 403 and is in the access log."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from telemetry.settings import REPO_ROOT
from tests.support.fixtures_api import AUDIENCE, ISSUER, Api


def hs256(claims: dict[str, object], secret: bytes) -> str:
    """A JWT signed with HMAC by hand (PyJWT rightly refuses a PEM key as an HMAC secret)."""
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = part(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "test-key"}).encode())
    body = part(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{part(signature)}"


def refused(api: Api, token: str | None, status: int, code: str, principal: str = "") -> str:
    response = api.get("/v1/whoami", token)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code and response.headers["content-type"] == "application/problem+json"
    record = api.last_records()[0]
    assert (record["status"], record["principal"]) == (status, principal)
    return response.json()["detail"]


def tokens_cli(api: Api, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.api.tokens", *args], cwd=REPO_ROOT, env=api.env,
                          capture_output=True, text=True, timeout=60)


def test_revocation_takes_effect_on_the_next_request(api: Api) -> None:
    issued = tokens_cli(api, "issue", "revoked-one", "--role", "auditor", "--tenant", api.tenant(0))
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert api.get("/v1/whoami", token).json()["data"]["principal"] == "revoked-one"
    revoked = tokens_cli(api, "revoke", token)
    assert revoked.returncode == 0 and "revoked token" in revoked.stdout
    assert "was revoked" in refused(api, token, 401, "unauthenticated")
    listed = tokens_cli(api, "list").stdout
    assert "revoked-one" in listed and token.split("_")[2] not in listed  # never the secret


def test_concurrent_requests_share_token_lookups_yet_each_gets_its_own_caller(api: Api) -> None:
    """Token lookups of requests in flight together go to PostgreSQL in one query: each request still gets its own
    token's principal, role and tenants, a revoked token among them is refused, a guessed one is unknown."""
    revoked = tokens_cli(api, "issue", "revoked-in-a-crowd", "--role", "auditor", "--tenant", api.tenant(1)).stdout.strip()
    assert tokens_cli(api, "revoke", revoked).returncode == 0
    guessed = f"tlm_{'0' * 16}_{'A' * 43}"
    calls = [(token, f"{role}-{index}", [api.tenant(index)]) for (role, index), token in sorted(api.tokens.items())] * 3
    calls += [(revoked, "was revoked", None), (guessed, "unknown API token", None)] * 4
    with ThreadPoolExecutor(len(calls)) as pool:
        answers = list(pool.map(lambda call: api.get("/v1/whoami", call[0]), calls))
    for (_, expected, tenants), answer in zip(calls, answers):
        if tenants is None:
            assert answer.status_code == 401 and expected in answer.json()["detail"], answer.text
        else:
            assert answer.status_code == 200, answer.text
            data = answer.json()["data"]
            assert (data["principal"], data["tenants"]) == (expected, tenants)


def test_missing_malformed_unknown_and_expired_tokens(api: Api) -> None:
    refused(api, None, 401, "unauthenticated")
    assert api.get("/v1/whoami", None).headers["www-authenticate"].startswith("Bearer")
    refused(api, "tlm_0000000000000000_" + "A" * 43, 401, "unauthenticated")
    good = api.tokens[("admin", 0)]
    refused(api, good[:-1] + ("B" if good[-1] != "B" else "C"), 401, "unauthenticated")  # right id, wrong secret
    with api.pg() as conn:
        expired = api.issue("expired-one", "admin", [api.tenant(0)])
        conn.execute("UPDATE api_tokens SET expires_at = now() - interval '1 minute' WHERE token_id = %s",
                     (expired.split("_")[1],))
    assert "expired" in refused(api, expired, 401, "unauthenticated")
    response = __import__("requests").get(api.url + "/v1/whoami", headers={"Authorization": f"Basic {good}"}, timeout=10)
    assert response.status_code == 401


def test_no_grant_and_unknown_role_are_403_naming_the_principal(api: Api) -> None:
    token = api.issue("soon-without-grant", "admin", [api.tenant(0)])
    assert tokens_cli(api, "revoke-grant", "soon-without-grant").returncode == 0
    refused(api, token, 403, "no-grant", "soon-without-grant")
    token = api.issue("renamed-role", "admin", [api.tenant(0)])
    with api.pg() as conn:  # a grant left over from a role the matrix no longer has
        conn.execute("UPDATE grants SET role = 'superuser' WHERE principal = 'renamed-role'")
    assert "superuser" in refused(api, token, 403, "unknown-role", "renamed-role")


def test_the_cli_refuses_unknown_roles_and_tenants(api: Api) -> None:
    bad_role = tokens_cli(api, "grant", "x", "--role", "root", "--tenant", api.tenant(0))
    assert bad_role.returncode == 2 and "invalid choice" in bad_role.stderr
    bad_tenant = tokens_cli(api, "issue", "x", "--role", "admin", "--tenant", "no-such-tenant")
    assert bad_tenant.returncode == 1 and "unknown tenant 'no-such-tenant'" in bad_tenant.stderr


def test_a_jwt_of_the_issuer_authenticates_its_granted_subject(api: Api) -> None:
    api.issue("oidc|alice", "financial_director", [api.tenant(1)])
    token = api.jwks.token("oidc|alice")
    me = api.get("/v1/whoami", token)
    assert me.status_code == 200, me.text
    assert me.json()["data"] | {} == {"principal": "oidc|alice", "role": "financial_director", "auth": "jwt",
                                      "tenants": [api.tenant(1)], "metrics": ["costs", "quotas", "usage", "vms"],
                                      "max_range_days": 400, "identity": False}
    assert api.get("/v1/costs", token).status_code == 200
    assert api.get("/v1/costs", token, {"tenant": api.tenant(0)}).json()["code"] == "tenant-not-permitted"


@pytest.mark.parametrize("case", ["audience", "issuer", "expired", "unpublished key", "unknown kid", "hs256", "no sub grant"])
def test_jwts_that_must_not_pass(api: Api, case: str) -> None:
    from cryptography.hazmat.primitives import serialization

    api.issue("oidc|bob", "admin", [api.tenant(0)])
    jwks = api.jwks
    public_pem = jwks.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
    token = {
        "audience": lambda: jwks.token("oidc|bob", audience="someone-else"),
        "issuer": lambda: jwks.token("oidc|bob", issuer="https://evil.example/"),
        "expired": lambda: jwks.token("oidc|bob", expires_in=-120),
        "unpublished key": lambda: jwks.token("oidc|bob", key=jwks.other),
        "unknown kid": lambda: jwks.token("oidc|bob", key=jwks.other, kid="rotated-away"),
        # the public key used as an HMAC secret: the classic algorithm confusion
        "hs256": lambda: hs256({"sub": "oidc|bob", "aud": AUDIENCE, "iss": ISSUER, "iat": 0, "exp": 4102444800},
                               public_pem),
        "no sub grant": lambda: jwks.token("oidc|nobody"),
    }[case]()
    if case == "no sub grant":
        refused(api, token, 403, "no-grant", "oidc|nobody")
    else:
        refused(api, token, 401, "unauthenticated")
