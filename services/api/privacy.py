"""Pseudonyms: a person's identifier shown as a stable keyed hash to roles without identity, and to everyone once
the person's identity was erased.

pseudonym = "psn_" + the first 20 base32 characters of HMAC-SHA256(key, tenant_id + US + value): the same person
gets the same pseudonym on every endpoint and in every response (so drill-down works), a different one in another
tenant, and without the key (API_PSEUDONYM_KEY) nobody can compute one from a guessed user id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from functools import lru_cache

PREFIX = "psn_"
_SEPARATOR = "\x1f"


@lru_cache(maxsize=1 << 16)  # answers show the same few thousand people again and again
def pseudonym(key: bytes, tenant_id: str, value: str) -> str:
    """The stable keyed pseudonym of a user id (or personal host name) within a tenant; '' stays ''."""
    if value == "":
        return ""
    digest = hmac.new(key, f"{tenant_id}{_SEPARATOR}{value}".encode(), hashlib.sha256).digest()
    return PREFIX + base64.b32encode(digest).decode()[:20].lower()


def is_pseudonym(value: str) -> bool:
    return value.startswith(PREFIX) and len(value) == len(PREFIX) + 20


@dataclass(frozen=True)
class Privacy:
    """How one request shows people: with identity (a role granted it) except the erased, else as pseudonyms."""

    key: bytes
    identity: bool
    erased: frozenset[tuple[str, str]] = field(default_factory=frozenset)  # (tenant_id, user_id)
    personal_hosts: re.Pattern[str] | None = None

    def user(self, tenant_id: str, user_id: str) -> str:
        if self.identity and (tenant_id, user_id) not in self.erased:
            return user_id
        return pseudonym(self.key, tenant_id, user_id)

    def host(self, host_name: str) -> str:
        """A host name, or its pseudonym when it names a person (API_PERSONAL_HOSTS) and the role lacks identity.
        Hosts are not a tenant's: one pseudonym per host across tenants."""
        if self.identity or not host_name or not (self.personal_hosts and self.personal_hosts.search(host_name)):
            return host_name
        return pseudonym(self.key, "", host_name)
