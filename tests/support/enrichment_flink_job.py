"""Flink-side callables of tests/udfs/test_enrichment.py, in a module the Python workers can import (pytest
imports test modules under names the workers' PYTHONPATH cannot resolve). Each notes the pid it ran in."""

from __future__ import annotations

import json
import os

from pyflink.common import Row
from pyflink.common.watermark_strategy import TimestampAssigner

from schemas import parse_ts, ts_to_millis
from udfs.enrichment import PrometheusEnrichment
from udfs.lifecycle import to_fact, to_row


class NotePid(PrometheusEnrichment):
    async def async_invoke(self, value: Row) -> list[Row]:
        (row,) = await super().async_invoke(value)
        return [to_row({**to_fact(row), "error_message": f"async-pid={os.getpid()}"})]


def mark_map_pid(row: Row) -> Row:
    return to_row({**to_fact(row), "job_version": f"map-pid={os.getpid()}"})


def task_id(line: str) -> str:
    return json.loads(line)["task_id"]


class EventTime(TimestampAssigner):
    def extract_timestamp(self, value: str, record_timestamp: int) -> int:
        return ts_to_millis(parse_ts(json.loads(value)["ts"]))
