"""A task's events from the raw Parquet lake (LAKE_URI: a local path or s3://bucket/prefix), for drill-down.

The lake is partitioned topic= / date= / hour=, so only the task topics' hours an attempt spans are read; rows are
matched on the event's task_id and the caller's tenants. Bounded: at most MAX_HOURS partitions per topic and
MAX_EVENTS events per task.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs

from pipeline.routing import TASK_TOPICS
from telemetry.settings import Settings

MAX_HOURS = 48
MAX_EVENTS = 1000
_COLUMNS = ["event_id", "event_name", "ts", "tenant_id", "node_id", "host_name", "payload"]


def filesystem(settings: Settings) -> tuple[fs.FileSystem, str]:
    uri = settings.effective_lake_uri
    if uri.startswith("s3://"):
        access, secret = settings.s3_credentials()
        endpoint = settings.s3_endpoint
        s3 = fs.S3FileSystem(access_key=access, secret_key=secret, endpoint_override=endpoint.split("://", 1)[1],
                             scheme=endpoint.split("://", 1)[0], region="us-east-1", connect_timeout=3, request_timeout=10)
        return s3, uri.removeprefix("s3://").rstrip("/")
    return fs.LocalFileSystem(), uri.removeprefix("file://").rstrip("/")


def hours(first: datetime, last: datetime) -> list[datetime]:
    hour = first.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    out = []
    while hour <= last and len(out) < MAX_HOURS:
        out.append(hour)
        hour += timedelta(hours=1)
    return out


def task_events(settings: Settings, task_id: str, tenants: list[str], first: datetime, last: datetime) -> list[dict[str, Any]]:
    """The lake's events of task_id (and of its tenants only) in the hours [first, last], oldest first."""
    filesystem_, root = filesystem(settings)
    needle = json.dumps(task_id)
    found: list[dict[str, Any]] = []
    for topic in sorted(TASK_TOPICS):
        for hour in hours(first, last):
            directory = f"{root}/topic={topic}/date={hour:%Y-%m-%d}/hour={hour:%H}"
            selector = fs.FileSelector(directory, allow_not_found=True)
            for info in filesystem_.get_file_info(selector):
                name = info.path.rsplit("/", 1)[-1]
                if info.type != fs.FileType.File or name.startswith((".", "_")):
                    continue  # in-progress part files and the success marker
                table = pq.read_table(info.path, columns=_COLUMNS, filesystem=filesystem_)
                mask = pc.and_(pc.match_substring(table["payload"], needle),
                               pc.is_in(table["tenant_id"], value_set=pa.array(tenants)))
                for row in table.filter(mask).to_pylist():
                    payload = json.loads(row["payload"])
                    if payload.get("task_id") == task_id:
                        found.append({"topic": topic, **row, "payload": payload})
                if len(found) >= MAX_EVENTS:
                    break
    found.sort(key=lambda e: (e["ts"], e["event_id"]))
    return found[:MAX_EVENTS]
