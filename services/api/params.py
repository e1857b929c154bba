"""Request parameters shared by the endpoints: the time range, granularity, grouping, pagination, and the tenants a
request covers, each checked with an error that names the parameter."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import Enum

from services.api.problems import Problem, bad_parameter, forbidden

EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
DEFAULT_SPAN = timedelta(hours=24)
FUTURE_SLACK = timedelta(days=1)
MAX_OFFSET = 1_000_000
# Identifiers the platform uses (tenant / department / project / user / model / checkpoint ids): printable, no quotes
# or control characters. Queries are parameterised anyway; this only turns garbage into a clear 400.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@/+=\-]{0,199}")


class Granularity(str, Enum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


# usage table per granularity, the length of its windows in seconds, and the bucket expression over window_start
# (a time: toStartOfMonth alone gives a Date, which the answers do not write)
USAGE_SOURCE: dict[Granularity, tuple[str, int, str]] = {
    Granularity.MINUTE: ("usage_1m", 60, "window_start"),
    Granularity.HOUR: ("usage_1h", 3600, "window_start"),
    Granularity.DAY: ("usage_1d", 86400, "window_start"),
    Granularity.MONTH: ("usage_1d", 86400, "toDateTime(toStartOfMonth(window_start), 'UTC')"),
}


class Dimension(str, Enum):
    DEPARTMENT = "department"
    PROJECT = "project"
    USER = "user"
    MODEL = "model"
    MODEL_VERSION = "model_version"
    CHECKPOINT = "checkpoint"


DIMENSION_COLUMNS: dict[Dimension, str] = {
    Dimension.DEPARTMENT: "department_id", Dimension.PROJECT: "project_id", Dimension.USER: "user_id",
    Dimension.MODEL: "model", Dimension.MODEL_VERSION: "model_version", Dimension.CHECKPOINT: "checkpoint_id",
}


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @property
    def span(self) -> timedelta:
        return self.end - self.start

    def json(self) -> dict[str, str]:
        return {"from": iso(self.start), "to": iso(self.end)}


def iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(name: str, text: str) -> datetime:
    """An ISO 8601 instant with its offset (2026-03-01T10:00:00Z), or a date (2026-03-01, midnight UTC)."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), timezone.utc)
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise bad_parameter(name, f"{name}={text[:64]!r} is not an ISO 8601 time; use e.g. 2026-03-01T10:00:00Z") from None
    if value.tzinfo is None:
        raise bad_parameter(name, f"{name}={text[:64]!r} has no time zone; add Z or an offset such as +01:00")
    return value.astimezone(timezone.utc)


def time_range(start: str | None, end: str | None, max_range: timedelta, now: datetime | None = None) -> TimeRange:
    """[from, to): to defaults to now (rounded up to the next 10 s window boundary, so repeated requests share an
    answer), from to a day before to; refuses a reversed, ancient or future range, and one longer than the role may
    read (403, not 400: the request is fine, the role is not allowed it)."""
    now = now or datetime.now(timezone.utc)
    until = parse_time("to", end) if end else _window_ceiling(now)
    since = parse_time("from", start) if start else until - min(DEFAULT_SPAN, max_range)
    if since < EARLIEST:
        raise bad_parameter("from", f"from={iso(since)} is before {iso(EARLIEST)}: no data is that old")
    if until > now + FUTURE_SLACK:
        raise bad_parameter("to", f"to={iso(until)} is more than a day in the future")
    if since >= until:
        raise bad_parameter("from", f"from={iso(since)} must be before to={iso(until)}")
    if until - since > max_range:
        raise forbidden("range-exceeds-role-limit",
                        f"the range {iso(since)} .. {iso(until)} spans {(until - since).days} days; this role may read "
                        f"at most {max_range.days} days per request: narrow from / to", "from")
    return TimeRange(since, until)


def _window_ceiling(moment: datetime) -> datetime:
    seconds = moment.timestamp()
    return datetime.fromtimestamp(-(-seconds // 10) * 10, timezone.utc)


def identifier(name: str, value: str) -> str:
    if not _ID.fullmatch(value):
        raise bad_parameter(name, f"{name}={value[:64]!r} is not an identifier (letters, digits and _.:@/+=-, "
                                  "at most 200 characters)")
    return value


def page(limit: int | None, offset: int | None, max_rows: int, default: int = 100) -> tuple[int, int]:
    limit = default if limit is None else limit
    offset = 0 if offset is None else offset
    if not 1 <= limit <= max_rows:
        raise bad_parameter("limit", f"limit={limit} must be from 1 to {max_rows}")
    if not 0 <= offset <= MAX_OFFSET:
        raise bad_parameter("offset", f"offset={offset} must be from 0 to {MAX_OFFSET}")
    return limit, offset


def scoped_tenants(asked: list[str] | None, granted: tuple[str, ...]) -> list[str]:
    """The tenants a request covers: those asked for, each within the grant (403 naming the first that is not),
    else all the grant holds."""
    if not asked:
        return list(granted)
    outside = [t for t in asked if t not in granted]
    if outside:
        raise forbidden("tenant-not-permitted", f"tenant {outside[0][:64]!r} is not among this caller's tenants",
                        "tenant")
    return list(dict.fromkeys(asked))


def not_found(detail: str) -> Problem:
    return Problem(404, "not-found", "Not found", detail)
