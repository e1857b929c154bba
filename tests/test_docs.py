"""Generated documentation stays current with the code it mirrors."""

from dev import readme_tables


def test_readme_tables_are_current():
    text = readme_tables.README.read_text()
    assert readme_tables.render(text) == text, "README.md is stale: run `python -m dev.readme_tables`"


def test_render_replaces_a_stale_table():
    stale = "<!-- topics:begin -->\n| old |\n<!-- topics:end -->\n<!-- settings:begin -->\n<!-- settings:end -->\n"
    fresh = readme_tables.render(stale)
    assert "| old |" not in fresh and "`xumi_load`" in fresh and "`KAFKA_DIRECT_URL`" in fresh
