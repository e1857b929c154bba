"""A fresh ClickHouse database with every migration in sql/clickhouse/migrations applied, for a test to own and drop."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Iterator

from clickhouse_connect.driver.client import Client

from telemetry.migrate import migrate


@contextmanager
def migrated_database(client: Client, prefix: str) -> Iterator[str]:
    """Yields the name of a new database <prefix>_<random> holding the current schema; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    migrate(client, name, retention_months=12, say=lambda _: None)
    try:
        yield name
    finally:
        client.command(f"DROP DATABASE IF EXISTS {name} SYNC")
