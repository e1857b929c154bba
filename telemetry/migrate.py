"""Apply the schemas: the ordered files of sql/clickhouse/migrations and sql/postgres/migrations, each once, recorded
with its checksum in the store's own schema_migrations table.

`python -m telemetry.migrate [--only clickhouse|postgres] [--dry-run]`; an edited file that was already applied is
refused. Both stores go through one code path (discover, check what was applied, apply the rest in order); only
how a file is run and recorded differs: ClickHouse statement by statement, PostgreSQL a file per transaction.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Protocol

import psycopg

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as ClientError

from telemetry import clickhouse, settings
from telemetry.sqltext import split_statements

MIGRATIONS_DIR = settings.REPO_ROOT / "sql" / "clickhouse" / "migrations"
POSTGRES_MIGRATIONS_DIR = settings.REPO_ROOT / "sql" / "postgres" / "migrations"
_FILE_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# The tool's own bookkeeping, not part of the schema it applies: it must exist before the first file runs.
_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS {database}.schema_migrations
(
    version    UInt32,
    name       String,
    sha256     String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY version
"""


_POSTGRES_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    sha256     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(Exception):
    """Migrations cannot be applied as they are; the message says which file and what to do."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sha256: str
    text: str

    def statements(self, values: dict[str, str]) -> list[str]:
        """The file's statements with {{placeholders}} filled in."""
        return split_statements(self.render(values))

    def render(self, values: dict[str, str]) -> str:
        """The file's text with {{placeholders}} filled in."""

        def fill(match: re.Match[str]) -> str:
            try:
                return values[match.group(1)]
            except KeyError:
                raise MigrationError(f"{self.name}: unknown placeholder {match.group()} (known: {', '.join(sorted(values))})") from None

        return _PLACEHOLDER.sub(fill, self.text)


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in version order; refuses misnamed files and reused version numbers."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.fullmatch(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_description.sql (lower case, digits, underscores)")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path.name} and {found[version].name} both claim version {version}")
        raw = path.read_bytes()
        found[version] = Migration(version, path.name, hashlib.sha256(raw).hexdigest(), raw.decode())
    return [found[v] for v in sorted(found)]


def applied_migrations(client: Client, database: str) -> dict[int, tuple[str, str]]:
    """version -> (file name, sha256) of what the ledger says was applied; empty when there is no ledger yet."""
    if not client.command(f"EXISTS TABLE {database}.schema_migrations"):
        return {}
    rows = client.query(f"SELECT version, name, sha256 FROM {database}.schema_migrations ORDER BY version").result_rows
    return {version: (name, sha) for version, name, sha in rows}


def pending(migrations: list[Migration], applied: dict[int, tuple[str, str]]) -> list[Migration]:
    """The migrations still to apply, after checking that the applied ones are unchanged on disk."""
    on_disk = {m.version: m for m in migrations}
    for version, (name, sha) in sorted(applied.items()):
        current = on_disk.get(version)
        if current is None:
            raise MigrationError(f"{name} (version {version}) was applied but is no longer in the migrations directory; restore it")
        if current.sha256 != sha:
            raise MigrationError(
                f"refusing to migrate: {current.name} was applied with sha256 {sha[:12]}… but the file now hashes to "
                f"{current.sha256[:12]}…; an applied migration must not be edited: restore it and put the change in a new file"
            )
    return [m for m in migrations if m.version not in applied]


class Store(Protocol):
    """How one database keeps its ledger and runs a file; run() holds the rules they share."""

    label: str

    def applied(self) -> dict[int, tuple[str, str]]:
        """version -> (file name, sha256) of what the ledger says was applied; empty when there is no ledger yet."""

    def plan(self, migration: Migration) -> list[str]:
        """The file's statements, placeholders filled in (raises MigrationError before anything runs)."""

    def prepare(self) -> None:
        """Create the database and the ledger when missing."""

    def apply(self, migration: Migration, statements: list[str]) -> None:
        """Run the statements and record the file in the ledger."""


def run(store: Store, directory: Path, dry_run: bool = False, say: Callable[[str], None] = print) -> list[Migration]:
    """Apply (or with dry_run only list) the pending migrations of directory to store in order; returns them."""
    migrations = discover(directory)
    todo = pending(migrations, store.applied())
    if not todo:
        say(f"{store.label} is up to date: {len(migrations)} migrations applied, nothing to do")
        return []
    # Every file is rendered before anything runs, so a bad placeholder stops the run with nothing applied
    planned = [(migration, store.plan(migration)) for migration in todo]
    if dry_run:
        for migration, statements in planned:
            say(f"-- would apply {migration.name}")
            for statement in statements:
                say(statement + ";")
        return todo
    store.prepare()
    for migration, statements in planned:
        store.apply(migration, statements)
        say(f"applied {migration.name} ({len(statements)} statement{'' if len(statements) == 1 else 's'})")
    say(f"{store.label}: applied {len(todo)} migrations, {len(migrations)} in total")
    return todo


class ClickHouseStore:
    """A ClickHouse database: statements one by one (ClickHouse has no transactional DDL; files are written with
    IF NOT EXISTS so a fixed file can run again whole), the ledger in <database>.schema_migrations."""

    def __init__(self, client: Client, database: str, retention_months: int) -> None:
        if not _IDENTIFIER.fullmatch(database):
            raise MigrationError(f"database name {database!r} must be a plain identifier")
        self.client, self.database = client, database
        self.values = {"database": database, "retention_months": str(retention_months)}
        self.label = f"database {database}"

    def applied(self) -> dict[int, tuple[str, str]]:
        return applied_migrations(self.client, self.database)

    def plan(self, migration: Migration) -> list[str]:
        return migration.statements(self.values)

    def prepare(self) -> None:
        self.client.command(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        self.client.command(_LEDGER_DDL.format(database=self.database))

    def apply(self, migration: Migration, statements: list[str]) -> None:
        for number, statement in enumerate(statements, 1):
            try:
                self.client.command(statement)
            except ClientError as exc:
                raise MigrationError(f"{migration.name}: statement {number} of {len(statements)} failed: {exc}") from exc
        self.client.insert(
            f"{self.database}.schema_migrations",
            [[migration.version, migration.name, migration.sha256, datetime.now(timezone.utc)]],
            column_names=["version", "name", "sha256", "applied_at"],
        )


class PostgresStore:
    """A PostgreSQL database: each file runs whole in one transaction with its ledger row, so a file is applied
    completely or not at all. {{api_user}} is the API's login (POSTGRES_API_USER), which the files grant to."""

    def __init__(self, conn: psycopg.Connection, api_user: str) -> None:
        self.conn = conn
        self.values = {"api_user": api_user}
        self.label = f"PostgreSQL database {conn.info.dbname}"

    def applied(self) -> dict[int, tuple[str, str]]:
        exists = self.conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        self.conn.commit()
        if not exists or not exists[0]:
            return {}
        rows = self.conn.execute("SELECT version, name, sha256 FROM schema_migrations ORDER BY version").fetchall()
        self.conn.commit()
        return {version: (name, sha) for version, name, sha in rows}

    def plan(self, migration: Migration) -> list[str]:
        return [migration.render(self.values)]

    def prepare(self) -> None:
        with self.conn.transaction():
            self.conn.execute(_POSTGRES_LEDGER_DDL)

    def apply(self, migration: Migration, statements: list[str]) -> None:
        try:
            with self.conn.transaction():
                for statement in statements:
                    self.conn.execute(statement)  # type: ignore[arg-type]  # a script: no parameters
                self.conn.execute("INSERT INTO schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                                  (migration.version, migration.name, migration.sha256))
        except psycopg.Error as exc:
            raise MigrationError(f"{migration.name} failed and was rolled back: {exc}") from exc


def migrate(
    client: Client,
    database: str,
    retention_months: int,
    directory: Path = MIGRATIONS_DIR,
    dry_run: bool = False,
    say: Callable[[str], None] = print,
) -> list[Migration]:
    """Apply (or with dry_run only list) the pending ClickHouse migrations in order; returns them."""
    return run(ClickHouseStore(client, database, retention_months), directory, dry_run, say)


def migrate_postgres(conn: psycopg.Connection, api_user: str, directory: Path = POSTGRES_MIGRATIONS_DIR,
                     dry_run: bool = False, say: Callable[[str], None] = print) -> list[Migration]:
    """Apply (or with dry_run only list) the pending PostgreSQL migrations in order; returns them."""
    return run(PostgresStore(conn, api_user), directory, dry_run, say)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m telemetry.migrate",
        description="Apply the pending migrations in order: ClickHouse's (sql/clickhouse/migrations/NNNN_*.sql) "
        "through clickhouse-connect, then PostgreSQL's (sql/postgres/migrations/NNNN_*.sql) through psycopg, each "
        "file recorded (version, name, sha256, applied_at) in that store's schema_migrations. Running it again is a "
        "no-op; a file changed after it was applied is refused. ClickHouse: {{database}} and {{retention_months}} "
        "come from the options below and RETENTION_MONTHS (default 12), credentials from CLICKHOUSE_USER / "
        "CLICKHOUSE_PASSWORD. PostgreSQL: POSTGRES_URL, POSTGRES_USER / POSTGRES_PASSWORD (the schema owner); "
        "{{api_user}} is POSTGRES_API_USER, the login the files grant the API's privileges to. "
        "Exit status: 0 done, 1 a store failed or refused, 2 a configuration error.",
    )
    parser.add_argument("--only", choices=("clickhouse", "postgres"), help="migrate one store only (default: both)")
    parser.add_argument("--url", help=f"ClickHouse HTTP URL (default: CLICKHOUSE_URL or {settings.Settings.clickhouse_url})")
    parser.add_argument("--database", help=f"ClickHouse database (default: CLICKHOUSE_DATABASE or {settings.Settings.clickhouse_database})")
    parser.add_argument("--migrations-dir", type=Path, default=MIGRATIONS_DIR, help="directory of the ClickHouse files (default: sql/clickhouse/migrations)")
    parser.add_argument("--postgres-migrations-dir", type=Path, default=POSTGRES_MIGRATIONS_DIR, help="directory of the PostgreSQL files (default: sql/postgres/migrations)")
    parser.add_argument("--dry-run", action="store_true", help="print the pending migrations' statements without applying anything")
    args = parser.parse_args(argv)
    try:
        config = settings.load()
    except settings.SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.only != "postgres":
        url = args.url or config.clickhouse_url
        try:
            client = clickhouse.connect(config, url=url)
        except ClientError as exc:
            print(f"error: cannot reach ClickHouse at {url}: {exc}", file=sys.stderr)
            return 1
        try:
            migrate(client, args.database or config.clickhouse_database, config.retention_months, args.migrations_dir, args.dry_run)
        except (MigrationError, ClientError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            client.close()
    if args.only != "clickhouse":
        try:
            conn = psycopg.connect(config.postgres_conninfo(), connect_timeout=10)
        except psycopg.Error as exc:
            print(f"error: cannot reach PostgreSQL at {config.postgres_url} as {config.postgres_user}: {exc}", file=sys.stderr)
            return 1
        try:
            migrate_postgres(conn, config.postgres_api_user, args.postgres_migrations_dir, args.dry_run)
        except (MigrationError, psycopg.Error) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
