"""The one way a tool or service opens ClickHouse: the settings' URL and login, as the writer or the read-only
reader (settings.clickhouse_login), over clickhouse-connect's HTTP interface."""

from __future__ import annotations

from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from telemetry.settings import Settings


def connect(settings: Settings, reader: bool = False, url: str | None = None, **kwargs: Any) -> Client:
    """A client of settings.clickhouse_url (or url), logged in as the writer, or as the reader."""
    user, password = settings.clickhouse_login(reader)
    return clickhouse_connect.get_client(dsn=url or settings.clickhouse_url, username=user, password=password, **kwargs)
