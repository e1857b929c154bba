"""Grafana dashboards' ClickHouse queries as Grafana and its ClickHouse plugin send them: template variables and the
plugin's macros expanded for a time range. Grafana cannot run here; tests/monitoring and benchmarks/bench_history.py
send the expanded SQL to ClickHouse themselves.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Iterator

# A variable reference: ${name}, ${name:format}, $name or [[name]]; $__... are Grafana's and the plugin's macros.
VARIABLE_REF = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)|\[\[(\w+)(?::(\w+))?\]\]")
MACRO = re.compile(r"\$__(\w+)(?:\(([^()]*)\))?")
ALL = "$__all"


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def grafana_regex_escape(value: str) -> str:
    """Grafana's escaping of a value for the :regex format."""
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m.group(0), value)


def expand_variables(text: str, selected: dict[str, list[str]], variables: dict[str, dict[str, Any]]) -> str:
    """Template variables replaced by the selected values; ALL stands for every option (or the allValue)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3) or match.group(4)
        fmt = match.group(2) or match.group(5)
        if name.startswith("__"):
            return match.group(0)  # a macro, expanded afterwards
        chosen = selected[name]
        if chosen == [ALL] and variables[name].get("allValue"):
            return variables[name]["allValue"]  # Grafana passes a custom all value unformatted
        values = variables[name]["options"] if chosen == [ALL] else chosen
        if fmt == "singlequote":
            return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
        if fmt == "regex":
            escaped = [grafana_regex_escape(v) for v in values]
            return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
        raise AssertionError(f"variable {name} used with format {fmt!r}: use :singlequote in SQL, :regex in PromQL")

    return VARIABLE_REF.sub(value, text)


def expand_clickhouse_macros(sql: str, start: datetime, end: datetime, interval_s: int) -> str:
    """The ClickHouse plugin's macros (pkg/macros/macros.go) for the range start..end."""
    lo, hi = int(start.timestamp()), int(end.timestamp())

    def macro(match: re.Match[str]) -> str:
        name, arg = match.group(1), (match.group(2) or "").strip()
        expansions = {
            "fromTime": f"toDateTime({lo})",
            "toTime": f"toDateTime({hi})",
            "fromTime_ms": f"fromUnixTimestamp64Milli({lo * 1000})",
            "toTime_ms": f"fromUnixTimestamp64Milli({hi * 1000})",
            "timeFilter": f"{arg} >= toDateTime({lo}) AND {arg} <= toDateTime({hi})",
            "timeFilter_ms": f"{arg} >= fromUnixTimestamp64Milli({lo * 1000}) AND {arg} <= "
                             f"fromUnixTimestamp64Milli({hi * 1000})",
            "timeInterval": f"toStartOfInterval(toDateTime({arg}), INTERVAL {interval_s} second)",
            "interval_s": str(interval_s),
        }
        assert name in expansions, f"macro $__{name} is not one the ClickHouse plugin expands here"
        return expansions[name]

    return MACRO.sub(macro, sql)
