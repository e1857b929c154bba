"""Exports on the running API (real PostgreSQL, the dev ClickHouse engine): each dataset as CSV and Parquet, for the
roles whose metric types hold it and their tenants only, with pseudonyms for roles without identity, DLQ records without
their content, totals equal to the JSON endpoints' to the last decimal, every export in the access log before its first
byte, and clear problems for what cannot be exported."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api import permissions
from services.api.exports import DATASETS
from services.api.privacy import is_pseudonym
from tests.support.fixtures_api import Api

PATH = "/v1/exports/{}"


def export(api: Api, token: str, dataset: str, **params: Any) -> requests.Response:
    return api.get(PATH.format(dataset), token, params)


def span(api: Api) -> dict[str, str]:
    return {"from": api.data.start.isoformat(), "to": api.data.end.isoformat()}


def rows_of(response: requests.Response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.content.decode())))


@pytest.mark.parametrize("role", list(permissions.ROLES))
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_each_role_exports_what_its_metric_types_hold_for_its_tenant_only(api: Api, role: str, dataset: str) -> None:
    token = api.tokens[(role, 1)]
    before = api.access_log_size()
    response = export(api, token, dataset, **span(api))
    if DATASETS[dataset].metric not in permissions.ROLES[role].metrics:
        assert response.status_code == 403 and response.json()["code"] == "metric-not-permitted", response.text
    else:
        rows = rows_of(response)
        assert rows, f"{dataset}: the test data should give rows"
        if "tenant_id" in rows[0]:
            assert {r["tenant_id"] for r in rows} == {api.tenant(1)}
        text = response.content.decode()
        other = api.data.tenants[0]
        assert other.tenant_id not in text and f"{other.code}-user" not in text
        assert response.headers["content-disposition"].startswith("attachment; filename=")
    assert api.access_log_size() == before + 1  # the record is committed before the first byte leaves
    record = api.last_records()[0]
    assert (record["role"], record["status"], record["endpoint"]) == (role, response.status_code, PATH.format("{dataset}"))
    assert record.get("streamed", False) == (response.status_code == 200)


def test_usage_and_cost_totals_equal_the_json_answers_to_the_last_decimal(api: Api) -> None:
    fd = api.tokens[("financial_director", 0)]
    for dataset, path, column, granularity in (("usage", "/v1/usage", "credits", "day"),
                                               ("costs", "/v1/costs", "total_cost", "hour")):
        exported = rows_of(export(api, fd, dataset, granularity=granularity, **span(api)))
        answer = api.get(path, fd, {"granularity": granularity, "limit": 500, **span(api)}).json()["data"]
        assert exported and answer
        assert sum(Decimal(r[column]) for r in exported) == sum(Decimal(r[column]) for r in answer), dataset
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["window_start"]) for r in exported)


def test_parquet_holds_the_same_rows_as_csv_with_exact_decimals(api: Api) -> None:
    fd = api.tokens[("financial_director", 0)]
    as_csv = rows_of(export(api, fd, "usage", granularity="hour", **span(api)))
    response = export(api, fd, "usage", granularity="hour", format="parquet", **span(api))
    assert response.status_code == 200 and response.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(response.content))
    assert table.num_rows == len(as_csv)
    assert str(table.schema.field("credits").type) == "decimal128(38, 6)"
    assert sum(table.column("credits").to_pylist()) == sum(Decimal(r["credits"]) for r in as_csv)
    assert sorted(table.column("user_id").to_pylist()) == sorted(r["user_id"] for r in as_csv)


def test_people_are_shown_as_the_role_may_see_them_and_rejected_records_without_content(api: Api) -> None:
    td, admin = api.tokens[("pipeline_td", 0)], api.tokens[("admin", 0)]
    pseudonymous = rows_of(export(api, td, "usage", **span(api)))
    named = rows_of(export(api, admin, "usage", **span(api)))
    assert pseudonymous and all(is_pseudonym(r["user_id"]) for r in pseudonymous)
    assert {r["user_id"] for r in named} == set(api.data.tenants[0].users)
    # the same pseudonyms as the JSON answers give, so an export and the API's drill-down agree
    answer = api.get("/v1/usage", td, {"group_by": "user", **span(api)}).json()["data"]
    assert {r["user_id"] for r in pseudonymous} == {r["user_id"] for r in answer}
    for token in (td, admin):  # a rejected record may be any tenant's: its content is nobody's to export
        dlq = rows_of(export(api, token, "dlq", **span(api)))
        assert dlq and not {"payload", "message"} & set(dlq[0]) and {"topic", "kafka_offset", "payload_sha256"} <= set(dlq[0])


def test_a_range_with_no_rows_gives_the_header_and_an_empty_parquet_file(api: Api) -> None:
    fd = api.tokens[("financial_director", 0)]
    quiet = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}
    response = export(api, fd, "costs", **quiet)
    assert response.status_code == 200 and response.content.decode().startswith('"window_start","tenant_id"')
    assert rows_of(response) == []
    table = pq.read_table(io.BytesIO(export(api, fd, "costs", format="parquet", **quiet).content))
    assert table.num_rows == 0 and "total_cost" in table.schema.names


@pytest.mark.parametrize("params, status, code, parameter", [
    ({"from": "2024-01-01T00:00:00Z", "to": "2025-06-01T00:00:00Z"}, 403, "range-exceeds-role-limit", "from"),
    ({"format": "xlsx"}, 400, "bad-parameter", "format"),
    ({"granularity": "week"}, 400, "bad-parameter", "granularity"),
    ({"tenant": "another"}, 403, "tenant-not-permitted", "tenant"),
])
def test_what_cannot_be_exported_is_a_clear_problem(api: Api, params: dict[str, str], status: int, code: str,
                                                    parameter: str) -> None:
    response = export(api, api.tokens[("financial_director", 0)], "usage", **params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["code"], problem.get("parameter")) == (code, parameter), problem
    unknown = export(api, api.tokens[("admin", 0)], "salaries")
    assert unknown.status_code == 400 and unknown.json()["parameter"] == "dataset"
    assert export(api, api.tokens[("admin", 0)], "tasks", granularity="hour").json()["parameter"] == "granularity"


_NAMES = ["from", "to", "granularity", "format", "tenant", "dataset"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dataset=st.one_of(st.sampled_from(list(DATASETS)), st.text(min_size=1, max_size=30).filter(lambda t: "/" not in t)),
       params=st.lists(st.tuples(st.one_of(st.sampled_from(_NAMES), st.text(max_size=10)),
                                 st.one_of(st.text(max_size=60), st.sampled_from(["csv", "parquet", "day", "minute",
                                                                                  "2026-03-01", "9999-12-31"]))),
                       max_size=5))
def test_generated_hostile_export_requests_never_crash_or_leak(api: Api, dataset: str, params: list[tuple[str, str]]) -> None:
    response = requests.get(api.url + "/v1/exports/" + requests.utils.quote(dataset, safe=""), params=params,
                            headers={"Authorization": f"Bearer {api.tokens[('admin', 0)]}"}, timeout=60)
    assert response.status_code in (200, 400, 403, 404), response.text
    if response.status_code == 200:
        assert api.data.tenants[1].tenant_id not in response.content.decode("utf-8", "replace")
    else:
        assert response.headers["content-type"] == "application/problem+json"


@given(start=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 1, 1)),
       length=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=400)),
       months=st.booleans())
def test_chunks_tile_the_range_and_no_window_crosses_a_cut(start: Any, length: Any, months: bool) -> None:
    from datetime import timezone

    from services.api.exports import chunks

    start = start.replace(tzinfo=timezone.utc)
    cuts = list(chunks(start, start + length, months))
    assert cuts[0][0] == start and cuts[-1][1] == start + length
    assert all(a < b for a, b in cuts) and all(cuts[i][1] == cuts[i + 1][0] for i in range(len(cuts) - 1))
    for _, upper in cuts[:-1]:  # every inner cut is a midnight (the first of a month): whole windows on each side
        assert upper.hour == upper.minute == upper.second == upper.microsecond == 0 and (not months or upper.day == 1)
