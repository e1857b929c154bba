"""Regenerates the tables in README.md that mirror code (environment variables, Kafka topics, the API's permission
matrix and error codes).

`python -m dev.readme_tables` rewrites them in place; `--check` exits 1 naming each stale table.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Callable

from services.api import permissions, problems
from telemetry import settings, topics

README = settings.REPO_ROOT / "README.md"


def topics_table() -> str:
    lines = ["| topic | partitions | role | family / table | carries |", "| --- | --- | --- | --- | --- |"]
    for t in topics.CATALOGUE:
        target = t.family or (f"table {t.table}" if t.table else "")
        lines.append(f"| `{t.name}` | {t.partitions} | {t.role.value} | {target} | {t.description} |")
    return "\n".join(lines)


def problems_table() -> str:
    lines = ["| code | status and meaning |", "| --- | --- |"]
    lines += [f"| `{code}` | {meaning} |" for code, meaning in problems.CODES.items()]
    return "\n".join(lines)


TABLES: dict[str, Callable[[], str]] = {"settings": settings.markdown_table, "topics": topics_table,
                                        "permissions": permissions.markdown_table, "problems": problems_table}


def render(text: str) -> str:
    """Replace the body of every `<!-- NAME:begin -->...<!-- NAME:end -->` block with its generated table."""
    for name, make in TABLES.items():
        pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README.md lacks the <!-- {name}:begin --> / <!-- {name}:end --> markers")
        text = pattern.sub(lambda m: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev.readme_tables", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if README.md is stale")
    args = parser.parse_args(argv)
    current = README.read_text()
    fresh = render(current)
    if args.check:
        if fresh != current:
            print("README.md tables are stale: run `python -m dev.readme_tables`")
            return 1
        return 0
    Path(README).write_text(fresh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
