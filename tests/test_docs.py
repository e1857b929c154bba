"""Generated documentation stays current with the code it mirrors."""

from dev import readme_tables
from services.api import openapi


def test_readme_tables_are_current():
    text = readme_tables.README.read_text()
    assert readme_tables.render(text) == text, "README.md is stale: run `python -m dev.readme_tables`"


def test_render_replaces_a_stale_table():
    stale = "".join(f"<!-- {name}:begin -->\n| old |\n<!-- {name}:end -->\n" for name in readme_tables.TABLES)
    fresh = readme_tables.render(stale)
    assert "| old |" not in fresh and "`xumi_load`" in fresh and "`KAFKA_DIRECT_URL`" in fresh
    assert "| `financial_director` |" in fresh and "`range-exceeds-role-limit`" in fresh


def test_the_committed_openapi_spec_is_current():
    assert openapi.SPEC.read_text() == openapi.render(), "services/api/openapi.json is stale: run `python -m services.api.openapi`"


def test_the_openapi_spec_documents_every_endpoint_and_the_bearer_problem_format():
    import json

    spec = json.loads(openapi.render())
    assert {"/health", "/metrics", "/v1/usage", "/v1/costs", "/v1/metrics/minute", "/v1/errors/top", "/v1/retention/d1",
            "/v1/tasks/{task_id}", "/v1/access", "/v1/privacy/erasures"} <= set(spec["paths"])
    assert "Authorization: Bearer" in spec["info"]["description"]
