"""`python -m services.api.tokens grant|revoke-grant|issue|revoke|list`: who may call the API.

A grant gives a principal (a person's OIDC subject, or a name such as a service's) one role of the permission
matrix in some tenants. An API token authenticates a principal: `issue` prints it once (`tlm_<id>_<secret>`);
PostgreSQL keeps only the secret's SHA-256. `revoke` takes effect on the next request.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from datetime import datetime, timedelta, timezone

import psycopg

from services.api import permissions
from services.api.auth import TOKEN, secret_hash
from telemetry import settings


class TokenError(Exception):
    """A grant or token cannot be made as asked; the message says why and what to do."""


def grant(conn: psycopg.Connection, principal: str, role: str, tenants: list[str], by: str) -> None:
    if role not in permissions.ROLES:
        raise TokenError(f"unknown role {role!r}; roles: {', '.join(permissions.ROLES)}")
    if not principal or not tenants:
        raise TokenError("a grant needs a principal and at least one --tenant")
    known = {row[0] for row in conn.execute("SELECT tenant_id FROM tenants WHERE tenant_id = ANY(%s)", (tenants,))}
    unknown = [t for t in tenants if t not in known]
    if unknown:
        raise TokenError(f"unknown tenant {unknown[0]!r}: add it first (`python -m services.api.directory import`)")
    conn.execute("""INSERT INTO grants (principal, role, tenants, granted_by) VALUES (%s, %s, %s, %s)
                    ON CONFLICT (principal) DO UPDATE SET role = excluded.role, tenants = excluded.tenants,
                    granted_by = excluded.granted_by, granted_at = now()""", (principal, role, tenants, by))


def issue(conn: psycopg.Connection, principal: str, days: int, description: str, by: str) -> str:
    """A new token of principal (which must hold a grant), valid for days; returned once, never stored."""
    if not conn.execute("SELECT 1 FROM grants WHERE principal = %s", (principal,)).fetchone():
        raise TokenError(f"principal {principal!r} has no grant: give --role and --tenant, or run `grant` first")
    if not 1 <= days <= 3650:
        raise TokenError(f"--days {days} must be from 1 to 3650")
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    conn.execute("""INSERT INTO api_tokens (token_id, principal, secret_sha256, description, created_by, expires_at)
                    VALUES (%s, %s, %s, %s, %s, %s)""",
                 (token_id, principal, secret_hash(secret), description, by,
                  datetime.now(timezone.utc) + timedelta(days=days)))
    token = f"tlm_{token_id}_{secret}"
    assert TOKEN.fullmatch(token)
    return token


def revoke(conn: psycopg.Connection, token_or_id: str) -> str:
    match = TOKEN.fullmatch(token_or_id)
    token_id = match.group(1) if match else token_or_id
    row = conn.execute("UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE token_id = %s "
                       "RETURNING principal", (token_id,)).fetchone()
    if not row:
        raise TokenError(f"no token {token_id!r}")
    return token_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.api.tokens", description=__doc__.split("\n\n")[1].replace("\n", " "),
                                     epilog=f"roles: {', '.join(permissions.ROLES)}. Logs in as POSTGRES_USER. "
                                     "Exit status: 0 done, 1 refused or PostgreSQL failed, 2 bad configuration.")
    parser.add_argument("--by", default="cli", help="who does this, recorded with the grant or token (default: cli)")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grant", help="give a principal a role in tenants (replaces its grant)")
    g.add_argument("principal")
    g.add_argument("--role", required=True, choices=list(permissions.ROLES))
    g.add_argument("--tenant", action="append", required=True, help="a tenant id (repeat for several)")
    rg = sub.add_parser("revoke-grant", help="remove a principal's grant: its tokens stop working")
    rg.add_argument("principal")
    i = sub.add_parser("issue", help="issue a token for a principal and print it (only this once)")
    i.add_argument("principal")
    i.add_argument("--role", choices=list(permissions.ROLES), help="grant this role first (with --tenant)")
    i.add_argument("--tenant", action="append", help="with --role: the grant's tenants")
    i.add_argument("--days", type=int, default=90, help="validity in days (default 90)")
    i.add_argument("--description", default="", help="what the token is for")
    r = sub.add_parser("revoke", help="revoke a token (its id, or the token itself) at once")
    r.add_argument("token")
    sub.add_parser("list", help="list grants and tokens (never the secrets)")
    args = parser.parse_args(argv)
    try:
        config = settings.load()
    except settings.SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        with psycopg.connect(config.postgres_conninfo(), connect_timeout=10) as conn:
            if args.command == "grant":
                grant(conn, args.principal, args.role, args.tenant, args.by)
                print(f"granted {args.principal}: {args.role} in {', '.join(args.tenant)}")
            elif args.command == "revoke-grant":
                done = conn.execute("DELETE FROM grants WHERE principal = %s", (args.principal,)).rowcount
                print(f"removed the grant of {args.principal}" if done else f"{args.principal} had no grant")
            elif args.command == "issue":
                if args.role or args.tenant:
                    if not (args.role and args.tenant):
                        raise TokenError("--role and --tenant go together")
                    grant(conn, args.principal, args.role, args.tenant, args.by)
                print(issue(conn, args.principal, args.days, args.description, args.by))
            elif args.command == "revoke":
                print(f"revoked token {revoke(conn, args.token)}")
            else:
                for principal, role, tenants in conn.execute("SELECT principal, role, tenants FROM grants ORDER BY principal"):
                    print(f"grant  {principal}: {role} in {', '.join(tenants)}")
                for token_id, principal, expires, revoked in conn.execute(
                        "SELECT token_id, principal, expires_at, revoked_at FROM api_tokens ORDER BY created_at"):
                    state = f"revoked {revoked:%Y-%m-%d %H:%M}" if revoked else f"expires {expires:%Y-%m-%d}"
                    print(f"token  {token_id} of {principal}: {state}")
    except TokenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"error: PostgreSQL at {config.postgres_url}: {str(exc).strip()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
