"""DateTime64(3) text, the one way the job writes a time for ClickHouse: from Python (datetime_text) and from Flink
SQL (datetime_sql) alike. JSONEachRow reads a bare number as seconds, so times travel as this text.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

SQL_PATTERN = "yyyy-MM-dd HH:mm:ss.SSS"
# DateTime64's range: a Kafka timestamp can be any 64-bit number, and a DLQ row carrying it must still load.
_MIN_MS = -2208988800000  # 1900-01-01
_MAX_MS = 10413791999999  # 2299-12-31 23:59:59.999
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def datetime_text(ms: int) -> str:
    """Epoch ms as DateTime64(3) text, clamped to DateTime64's range."""
    moment = _EPOCH + timedelta(milliseconds=min(max(ms, _MIN_MS), _MAX_MS))
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def datetime_sql(epoch_ms: str) -> str:
    """Flink SQL: an epoch-ms expression as the same text (the job's event times are validated to lie in range).
    The job sets table.local-time-zone to UTC, which TO_TIMESTAMP_LTZ and DATE_FORMAT follow."""
    return f"DATE_FORMAT(TO_TIMESTAMP_LTZ({epoch_ms}, 3), '{SQL_PATTERN}')"
