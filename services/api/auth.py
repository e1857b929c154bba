"""Who is calling: a bearer token, either an opaque API token (`tlm_<id>_<secret>`, its SHA-256 kept in
PostgreSQL, revocation effective on the next request) or a JWT from the OIDC provider, checked against the
provider's JWKS (signature, issuer, audience, expiry). Either names a principal; PostgreSQL's grants give its role
and tenants, and the permission matrix what that role may read."""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import jwt
import requests

from services.api import permissions
from services.api.batching import Batcher
from services.api.permissions import RolePolicy
from services.api.problems import Problem, forbidden, unauthenticated
from services.api.stores import Postgres

TOKEN = re.compile(r"tlm_([a-z0-9]{16})_([A-Za-z0-9_-]{43})")
JWT_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
US = "\x1f"


@dataclass(frozen=True)
class Caller:
    principal: str
    role: str
    tenants: tuple[str, ...]
    auth: str  # api-token | jwt
    policy: RolePolicy
    token_id: str = ""
    erased: frozenset[tuple[str, str]] = field(default_factory=frozenset)


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class Jwks:
    """The provider's signing keys, fetched from its JWKS URL and kept for five minutes. An unknown key id fetches
    again at most every 30 s, so tokens with made-up key ids cannot hammer the provider."""

    TTL_S, REFETCH_S = 300.0, 30.0

    def __init__(self, url: str) -> None:
        self.url = url
        self.keys: dict[str, Any] = {}
        self.fetched = 0.0
        self.lock = threading.Lock()

    def key(self, kid: str | None) -> Any:
        with self.lock:
            age = time.monotonic() - self.fetched
            if age > self.TTL_S or (kid not in self.keys and age > self.REFETCH_S):
                self._fetch()
            if kid is None and len(self.keys) == 1:
                return next(iter(self.keys.values()))
            return self.keys.get(kid or "")

    def _fetch(self) -> None:
        try:
            document = requests.get(self.url, timeout=5).json()
            keys = jwt.PyJWKSet.from_dict(document).keys
        except (requests.RequestException, ValueError, jwt.PyJWTError) as exc:
            if not self.keys:
                raise Problem(503, "jwks-unavailable", "The identity provider's keys are unavailable",
                              f"fetching the JWKS at {self.url} failed: {exc}") from exc
            return  # keep the keys we have
        self.keys = {k.key_id or "": k for k in keys}
        self.fetched = time.monotonic()


class JwtVerifier:
    def __init__(self, issuer: str, audience: str, jwks_url: str) -> None:
        self.issuer, self.audience, self.jwks = issuer, audience, Jwks(jwks_url)

    def subject(self, token: str) -> str:
        """The verified token's subject; a 401 problem naming what failed otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise unauthenticated(f"the bearer token is neither an API token nor a JWT: {exc}") from None
        if header.get("alg") not in JWT_ALGORITHMS:
            raise unauthenticated(f"JWT algorithm {str(header.get('alg'))[:20]!r} is not accepted; "
                                  f"use one of {', '.join(JWT_ALGORITHMS)}")
        key = self.jwks.key(header.get("kid"))
        if key is None:
            raise unauthenticated(f"the JWT's key id {str(header.get('kid'))[:64]!r} is not in the issuer's JWKS")
        try:
            claims = jwt.decode(token, key, algorithms=[header["alg"]], audience=self.audience, issuer=self.issuer,
                                leeway=30, options={"require": ["exp", "iat", "sub", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise unauthenticated("the JWT has expired") from None
        except jwt.PyJWTError as exc:
            raise unauthenticated(f"the JWT was refused: {exc}") from None
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise unauthenticated("the JWT's sub claim is empty")
        return subject


_TOKENS_SQL = """
    SELECT t.token_id, t.principal, t.secret_sha256, t.expires_at, t.revoked_at, g.role, g.tenants,
           ARRAY(SELECT e.tenant_id || chr(31) || e.user_id FROM erasures AS e WHERE e.tenant_id = ANY(g.tenants))
    FROM api_tokens AS t LEFT JOIN grants AS g ON g.principal = t.principal
    WHERE t.token_id = ANY(%b)"""
_GRANT_SQL = """
    SELECT g.principal, g.role, g.tenants,
           ARRAY(SELECT e.tenant_id || chr(31) || e.user_id FROM erasures AS e WHERE e.tenant_id = ANY(g.tenants))
    FROM grants AS g WHERE g.principal = %s"""


class Tokens:
    """API tokens' rows (token, grant, erasures), looked up in batches: the requests that arrive while one lookup is
    on its way share the next (services/api/batching.py). Each request's lookup is sent after the request arrived,
    never answered from a cache, so a revocation, an expiry or a changed grant committed before it is seen."""

    def __init__(self, pg: Postgres) -> None:
        self.pg = pg
        self.batcher: Batcher[str, tuple[Any, ...] | None] = Batcher(self._lookup)

    async def row(self, token_id: str) -> tuple[Any, ...] | None:
        return await self.batcher(token_id)

    async def _lookup(self, token_ids: list[str]) -> list[tuple[Any, ...] | None]:
        found = {row[0]: row[1:] for row in await self.pg.fetch(_TOKENS_SQL, (sorted(set(token_ids)),))}
        return [found.get(token_id) for token_id in token_ids]


async def authenticate(authorization: str | None, pg: Postgres, verifier: JwtVerifier | None, tokens: Tokens) -> Caller:
    """The caller of a request from its Authorization header, or the 401 / 403 problem that says why not."""
    if not authorization:
        raise unauthenticated("send `Authorization: Bearer <token>` (an API token from `python -m services.api.tokens "
                              "issue`, or a JWT of the configured OIDC issuer)")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthenticated("the Authorization header must be `Bearer <token>`")
    match = TOKEN.fullmatch(token)
    if match:
        token_id, secret = match.groups()
        row = await tokens.row(token_id)
        if row is None or not hmac.compare_digest(bytes(row[1]), secret_hash(secret)):
            raise unauthenticated("unknown API token")
        principal, _, expires_at, revoked_at, role, tenants, erased = row
        if revoked_at is not None:
            raise unauthenticated(f"API token {token_id} was revoked at {revoked_at.isoformat()}")
        if expires_at <= datetime.now(timezone.utc):
            raise unauthenticated(f"API token {token_id} expired at {expires_at.isoformat()}")
        if role is None:
            problem = forbidden("no-grant", f"principal {principal!r} has no grant (roles and tenants): see "
                                            "`python -m services.api.tokens grant`")
            problem.principal = principal
            raise problem
        return _caller(principal, role, tenants, erased, "api-token", token_id)
    if verifier is None:
        raise unauthenticated("the bearer token is not an API token (tlm_...), and this API accepts no JWTs "
                              "(API_OIDC_ISSUER is unset)")
    import anyio

    subject = await anyio.to_thread.run_sync(verifier.subject, token)
    rows = await pg.fetch(_GRANT_SQL, (subject,))
    if not rows:
        problem = forbidden("no-grant", f"the JWT's subject {subject[:64]!r} has no grant: see "
                                        "`python -m services.api.tokens grant`")
        problem.principal = subject
        raise problem
    principal, role, tenants, erased = rows[0]
    return _caller(principal, role, tenants, erased, "jwt")


def _caller(principal: str, role: str, tenants: list[str], erased: list[str], auth: str, token_id: str = "") -> Caller:
    policy = permissions.policy(role)
    if policy is None:
        problem = forbidden("unknown-role", f"principal {principal!r} has role {role!r}, which is not one of "
                                            f"{', '.join(permissions.ROLES)}")
        problem.principal = principal
        raise problem
    pairs = frozenset(tuple(item.split(US, 1)) for item in erased)  # type: ignore[misc]
    return Caller(principal, role, tuple(tenants), auth, policy, token_id, pairs)  # type: ignore[arg-type]
