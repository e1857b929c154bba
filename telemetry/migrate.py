"""Apply the ClickHouse schema: the ordered files in sql/clickhouse/migrations, each once, recorded in <database>.schema_migrations.

`python -m telemetry.migrate [--dry-run] [--url URL]`; an edited file that was already applied is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as ClientError

from telemetry import clickhouse, settings
from telemetry.sqltext import split_statements

MIGRATIONS_DIR = settings.REPO_ROOT / "sql" / "clickhouse" / "migrations"
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

        def fill(match: re.Match[str]) -> str:
            try:
                return values[match.group(1)]
            except KeyError:
                raise MigrationError(f"{self.name}: unknown placeholder {match.group()} (known: {', '.join(sorted(values))})") from None

        return split_statements(_PLACEHOLDER.sub(fill, self.text))


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


def migrate(
    client: Client,
    database: str,
    retention_months: int,
    directory: Path = MIGRATIONS_DIR,
    dry_run: bool = False,
    say: Callable[[str], None] = print,
) -> list[Migration]:
    """Apply (or with dry_run only list) the pending migrations in order; returns them."""
    if not _IDENTIFIER.fullmatch(database):
        raise MigrationError(f"database name {database!r} must be a plain identifier")
    values = {"database": database, "retention_months": str(retention_months)}
    migrations = discover(directory)
    todo = pending(migrations, applied_migrations(client, database))
    if not todo:
        say(f"database {database} is up to date: {len(migrations)} migrations applied, nothing to do")
        return []
    # Every file is rendered before anything runs, so a bad placeholder stops the run with nothing applied
    planned = [(migration, migration.statements(values)) for migration in todo]
    if dry_run:
        for migration, statements in planned:
            say(f"-- would apply {migration.name}")
            for statement in statements:
                say(statement + ";")
        return todo
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(_LEDGER_DDL.format(database=database))
    for migration, statements in planned:
        for number, statement in enumerate(statements, 1):
            try:
                client.command(statement)
            except ClientError as exc:
                # Files are written with IF NOT EXISTS, so after a fix the whole file can simply run again
                raise MigrationError(f"{migration.name}: statement {number} of {len(statements)} failed: {exc}") from exc
        client.insert(
            f"{database}.schema_migrations",
            [[migration.version, migration.name, migration.sha256, datetime.now(timezone.utc)]],
            column_names=["version", "name", "sha256", "applied_at"],
        )
        say(f"applied {migration.name} ({len(statements)} statement{'' if len(statements) == 1 else 's'})")
    say(f"database {database}: applied {len(todo)} migrations, {len(migrations)} in total")
    return todo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m telemetry.migrate",
        description="Apply the pending ClickHouse migrations (sql/clickhouse/migrations/NNNN_*.sql) in order through "
        "clickhouse-connect, recording each (version, name, sha256, applied_at) in <database>.schema_migrations. "
        "Running it again is a no-op; a file changed after it was applied is refused. {{database}} and "
        "{{retention_months}} in the files come from the options below and RETENTION_MONTHS (default 12). "
        "Credentials: CLICKHOUSE_USER, CLICKHOUSE_PASSWORD.",
    )
    parser.add_argument("--url", help=f"ClickHouse HTTP URL (default: CLICKHOUSE_URL or {settings.Settings.clickhouse_url})")
    parser.add_argument("--database", help=f"target database (default: CLICKHOUSE_DATABASE or {settings.Settings.clickhouse_database})")
    parser.add_argument("--migrations-dir", type=Path, default=MIGRATIONS_DIR, help="directory of the migration files (default: sql/clickhouse/migrations)")
    parser.add_argument("--dry-run", action="store_true", help="print the pending migrations' statements without applying anything")
    args = parser.parse_args(argv)
    try:
        config = settings.load()
    except settings.SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
