"""Who may use the dev server: users with SHA-256 password hashes, read-write or read-only, as ClickHouse's own
users.xml gives them, and what no client may run on it (table functions and engines that reach files, other
servers or programs).

The server runs chdb inside its own process with the rights of whoever started it: ClickHouse's source
privileges (FILE, URL, REMOTE, S3, ...) do not exist there, so the statements that would use them are refused
here, before the engine sees them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import xml.etree.ElementTree as ET

import yaml

from telemetry import sqltext
from telemetry.settings import REPO_ROOT

# Production's reader profile; its settings (all but readonly, which `readonly: true` here stands for) apply to
# every read-only user of the dev server, so panels and the API run here under the settings they get in production.
READER_PROFILE = REPO_ROOT / "sql" / "clickhouse" / "users.d" / "reader.xml"

AUTHENTICATION_FAILED = 516
ACCESS_DENIED = 497
READONLY = 164

# Table functions, functions (file() reads a file into a string) and table or database engines (ENGINE =
# File(...), a MySQL database, a Kafka consumer) that reach outside the server: refused wherever they are called.
DENIED_CALLS = frozenset(name.lower() for name in (
    "file", "fileCluster", "url", "urlCluster", "s3", "s3Cluster", "gcs", "oss", "cosn", "azureBlobStorage",
    "azureBlobStorageCluster", "hdfs", "hdfsCluster", "remote", "remoteSecure", "cluster", "clusterAllReplicas",
    "mysql", "postgresql", "mongodb", "redis", "sqlite", "jdbc", "odbc", "executable", "deltaLake",
    "deltaLakeCluster", "deltaLakeS3", "deltaLakeAzure", "deltaLakeLocal", "iceberg", "icebergS3", "icebergAzure",
    "icebergHDFS", "icebergLocal", "icebergCluster", "icebergS3Cluster", "hudi", "hudiCluster", "paimon",
    "arrowFlight", "ytsaurus", "prometheusQuery", "prometheusQueryRange", "python",  # chdb's: the server's objects
    "Kafka", "RabbitMQ", "NATS", "FileLog", "S3Queue", "AzureQueue", "Distributed", "MaterializedPostgreSQL",
    "MaterializedMySQL", "ExecutableProcessPool", "Dictionary", "Replicated",
))
# Statements that act on the server process itself or on its files.
DENIED_KEYWORDS = frozenset({"SYSTEM", "KILL", "BACKUP", "RESTORE", "ATTACH", "DETACH"})


def reader_profile(path: Path = READER_PROFILE) -> dict[str, str]:
    """The settings of the `reader` profile in a ClickHouse users.d file, readonly left out."""
    try:
        profile = ET.parse(path).getroot().find("./profiles/reader")
    except (OSError, ET.ParseError) as exc:
        raise ValueError(f"{path}: not a ClickHouse users file ({exc})") from exc
    if profile is None:
        raise ValueError(f"{path}: no <profiles><reader> element")
    return {child.tag: (child.text or "").strip() for child in profile if child.tag != "readonly"}


class AccessError(Exception):
    """A request this server refuses: ClickHouse's code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class User:
    name: str
    password_sha256_hex: str
    readonly: bool


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def load_users(path: Path) -> dict[str, User]:
    """users.yaml: {users: {NAME: {password_sha256_hex: HEX, readonly: BOOL}}}."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
        entries = data["users"]
        users = {str(name): User(str(name), str(e["password_sha256_hex"]).lower(), bool(e.get("readonly", False)))
                 for name, e in entries.items()}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a users file ({type(exc).__name__}: {exc}); expected "
                         "users: {NAME: {password_sha256_hex: HEX, readonly: BOOL}}") from exc
    if not users:
        raise ValueError(f"{path}: no users")
    return users


def write_users(path: Path, passwords: dict[str, tuple[str, bool]]) -> None:
    """Write users.yaml (mode 600) for {name: (password, readonly)}; only hashes go into the file."""
    body = {"users": {name: {"password_sha256_hex": password_hash(pw), "readonly": ro}
                      for name, (pw, ro) in passwords.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# the dev ClickHouse server's users (SHA-256 of each password), written by the local stack\n")
        yaml.safe_dump(body, f, sort_keys=True)


def credentials(headers: dict[str, str], query_string: str) -> tuple[str, str]:
    """(user, password) the way ClickHouse's HTTP interface takes them: basic auth, X-ClickHouse-User / -Key
    headers, or user= / password= in the URL; none at all is user default with an empty password."""
    auth = headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            user, _, password = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise AccessError(AUTHENTICATION_FAILED, "Malformed Basic authorization header") from None
        return user, password
    if "x-clickhouse-user" in headers:
        return headers["x-clickhouse-user"], headers.get("x-clickhouse-key", "")
    params = dict(parse_qsl(query_string, keep_blank_values=True))
    return params.get("user", "default"), params.get("password", "")


def authenticate(users: dict[str, User], user: str, password: str) -> User:
    known = users.get(user)
    # compared in constant time, and the same answer for an unknown user as for a wrong password
    if known is None or not hmac.compare_digest(password_hash(password), known.password_sha256_hex):
        raise AccessError(AUTHENTICATION_FAILED, f"{user}: Authentication failed: password is incorrect, or there "
                                                 "is no user with such name.")
    return known


def check_statement(user: User, keyword: str, text: str) -> None:
    """Refuse what reaches outside the server, and anything but reading for a read-only user."""
    if keyword in DENIED_KEYWORDS:
        raise AccessError(ACCESS_DENIED, f"{keyword} statements are refused by the dev server")
    if user.readonly and keyword not in sqltext.READONLY_KEYWORDS:
        raise AccessError(READONLY, f"{user.name}: Cannot execute query in readonly mode: user {user.name} is "
                                    "read-only")
    previous = before = None
    for index, token in enumerate(sqltext.tokens(text)):
        engine_name = token.kind in ("word", "quoted") and previous is not None and (
            previous.text.upper() == "ENGINE" or (previous.text == "=" and before is not None and before.text.upper() == "ENGINE"))
        if engine_name and token.text.strip("`\"").lower() in DENIED_CALLS:  # ENGINE = Kafka SETTINGS ...: no call
            raise AccessError(ACCESS_DENIED, f"ENGINE {token.text} reaches files, other servers or programs and is "
                                             "refused by the dev server")
        if keyword == "CREATE" and index < 6 and token.kind == "word" and token.text.upper() == "DICTIONARY":
            raise AccessError(ACCESS_DENIED, "CREATE DICTIONARY is refused by the dev server (its sources reach "
                                             "files, URLs and programs)")
        if token.kind == "word" and token.text.upper() in ("OUTFILE", "INFILE"):
            raise AccessError(ACCESS_DENIED, "INTO OUTFILE / FROM INFILE are refused by the dev server")
        if token.text == "(" and previous is not None and previous.kind in ("word", "quoted"):
            if previous.text.strip("`\"").lower() in DENIED_CALLS:
                raise AccessError(ACCESS_DENIED, f"{previous.text}(...) reaches files, other servers or programs "
                                                 "and is refused by the dev server")
        before, previous = previous, token
