"""ClickHouse: the dev server (telemetry.clickhouse_dev, chdb behind ClickHouse's HTTP interface) on the port
of CLICKHOUSE_URL, its chdb session under <state>/clickhouse/data. Production points the same client at a
real ClickHouse server.
"""

from __future__ import annotations

import os
import sys

from telemetry.settings import REPO_ROOT
from telemetry.stack.process import Launch, Port, Service, http_ok, local_port


class ClickHouse(Service):
    name = "clickhouse"
    processes = ("clickhouse",)
    start_timeout = 60.0  # importing chdb and opening its session takes a few seconds on a cold cache

    @property
    def port(self) -> int:
        return local_port(self.settings.clickhouse_url, "CLICKHOUSE_URL")

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ports(self) -> list[Port]:
        return [Port(self.port, "ClickHouse HTTP (dev server)", "CLICKHOUSE_URL")]

    def launches(self) -> list[Launch]:
        # the server is part of this repository: make it importable whatever the caller's PYTHONPATH
        pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        argv = [sys.executable, "-m", "telemetry.clickhouse_dev", "--host", "127.0.0.1", "--port", str(self.port)]
        return [Launch("clickhouse", [*argv, "--path", str(self.dir / "data")], {"PYTHONPATH": pythonpath})]

    def healthy(self) -> bool:
        return http_ok(f"{self.url()}/ping")
