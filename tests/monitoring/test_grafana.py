"""Grafana provisioning and dashboards, checked without Grafana (it cannot run here): their structure, then every
panel query sent the way Grafana sends it (variables and macros expanded) to the dev ClickHouse holding the session's
real job output, priced with the example catalogue, and to a Prometheus holding the series the panels read.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

import clickhouse_connect
import pytest
import requests
import yaml

from pipeline import sketch
from services.loader.metrics import LoaderMetrics
from telemetry.settings import REPO_ROOT
from dev import grafana_sql
from dev.grafana_sql import ALL, VARIABLE_REF, expand_variables, panels
from dev.stack.prometheus import SCRAPE_INTERVAL
from tests.conftest import DevClickHouse
from tests.support.fixtures_job import SEED, SIM_START, simulated_nodes
from tests.support.fixtures_prometheus import HISTORY, PrometheusHistory, serve_history
from telemetry import topics

GRAFANA = REPO_ROOT / "monitoring" / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCES = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text())
PROVIDERS = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "dashboards.yml").read_text())
PRICES = REPO_ROOT / "sql" / "clickhouse" / "prices" / "example.yaml"
CLICKHOUSE_TYPE = "grafana-clickhouse-datasource"
ROLE_VARIABLES = ("tenant", "department", "project")

# The dashboards' time range in the test: the hour holding the simulated run (its events span seconds).
START = datetime.fromisoformat(SIM_START.replace("Z", "+00:00")).replace(minute=0, second=0)
END = START + timedelta(hours=1)
# Grafana's $__interval for a 1 h range at ~1000 data points rounds to 5 s; a panel's min interval raises it.
AUTO_INTERVAL_S = 5


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def seconds(duration: str) -> int:
    """A Grafana / Prometheus duration (5s, 1m, 1h) in seconds."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", duration)
    assert match, f"unreadable duration {duration!r}"
    return int(match.group(1)) * {"ms": 0, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def datasource(uid: str) -> dict[str, Any]:
    return next(d for d in DATASOURCES["datasources"] if d["uid"] == uid)


@dataclass(frozen=True)
class Target:
    """One query of one panel."""

    board: str  # file stem
    panel: dict[str, Any]
    target: dict[str, Any]

    @property
    def uid(self) -> str:
        return (self.target.get("datasource") or self.panel["datasource"])["uid"]

    @property
    def text(self) -> str:
        return self.target.get("rawSql") or self.target.get("expr") or ""

    def interval_s(self) -> int:
        floor = seconds(datasource(self.uid).get("jsonData", {}).get("timeInterval", "1s"))
        return max(AUTO_INTERVAL_S, floor, seconds(self.panel.get("interval", "0s")))

    def __str__(self) -> str:
        slug = re.sub(r"\W+", "-", self.panel["title"].lower()).strip("-")
        return f"{self.board}:{self.panel['id']}{self.target['refId']}:{slug}"


TARGETS = [Target(path.stem, panel, target) for path in DASHBOARD_FILES for panel in panels(load(path))
           for target in panel.get("targets", [])]


# ---------------------------------------------------------------------------------------------------------------
# Variables and macros, expanded the way Grafana and the ClickHouse plugin do


def expand_clickhouse_macros(sql: str, interval_s: int) -> str:
    """The ClickHouse plugin's macros for the range START..END of the test."""
    return grafana_sql.expand_clickhouse_macros(sql, START, END, interval_s)


def expand_prometheus_globals(expr: str, interval_s: int, scrape_s: int) -> str:
    """Grafana's $__interval, $__rate_interval (max(interval + scrape, 4 x scrape)) and $__range."""
    rate_s = max(interval_s + scrape_s, 4 * scrape_s)
    range_s = int((END - START).total_seconds())
    for name, value in (("$__rate_interval", f"{rate_s}s"), ("$__interval", f"{interval_s}s"),
                        ("$__range", f"{range_s}s")):
        expr = expr.replace(name, value)
    assert "$__" not in expr, f"a Grafana variable this test does not expand: {expr}"
    return expr


# ---------------------------------------------------------------------------------------------------------------
# Structure: provisioning and dashboards


def test_provisioning_defines_clickhouse_and_prometheus_from_the_environment():
    sources = {d["uid"]: d for d in DATASOURCES["datasources"]}
    assert set(sources) == {"clickhouse", "prometheus"}
    clickhouse, prometheus = sources["clickhouse"], sources["prometheus"]
    assert clickhouse["type"] == CLICKHOUSE_TYPE and clickhouse["jsonData"]["protocol"] == "http"
    for key in ("host", "port", "defaultDatabase"):
        assert re.fullmatch(r"\$\{CLICKHOUSE_[A-Z]+\}", str(clickhouse["jsonData"][key])), key
    # the read-only user (panels run whatever SQL they hold); its password only ever as a reference to Grafana's
    # environment, and only where Grafana encrypts it
    assert clickhouse["jsonData"]["username"] == "${CLICKHOUSE_READER_USER}"
    assert clickhouse["secureJsonData"] == {"password": "${CLICKHOUSE_READER_PASSWORD}"}
    assert "password" not in json.dumps(clickhouse["jsonData"]).lower()
    assert prometheus["type"] == "prometheus" and prometheus["url"] == "${PROMETHEUS_URL}"
    (provider,) = PROVIDERS["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_four_role_dashboards_with_unique_uids():
    assert {p.stem for p in DASHBOARD_FILES} == {"pipeline-td", "admin", "financial", "pipeline-health"}
    uids = [load(p)["uid"] for p in DASHBOARD_FILES]
    assert len(set(uids)) == len(uids) and all(uids)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_dashboard_has_the_role_filters_and_the_time_picker(path: Path):
    board = load(path)
    assert board["title"] and board["description"] and not board.get("timepicker", {}).get("hidden")
    assert board["time"]["from"] and board["time"]["to"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    for name in ROLE_VARIABLES:
        var = variables[name]
        assert var["type"] == "query" and var["multi"] and var["includeAll"], name
        assert var["datasource"]["uid"] == "clickhouse" and var["query"]["rawSql"], name
    ids = [p["id"] for p in panels(board)]
    assert len(set(ids)) == len(ids), "panel ids repeat"


# A span view reads the daily rollups only for a step that is a whole number of days: over a year, a time series
# must ask for at most one point a day (Grafana's interval: the range / maxDataPoints, rounded).
YEAR_POINTS = 365


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_time_series_over_span_views_ask_for_a_point_a_day_over_a_year(path: Path):
    for panel in panels(load(path)):
        sql = " ".join(t.get("rawSql") or "" for t in panel.get("targets", []))
        if panel.get("type") == "timeseries" and re.search(r"\b\w+_span\(", sql):
            assert panel.get("maxDataPoints", 1000) <= YEAR_POINTS, f"{path.stem}: {panel['title']}"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_every_panel_and_variable_uses_a_provisioned_datasource(path: Path):
    provisioned = {d["uid"]: d["type"] for d in DATASOURCES["datasources"]}
    board = load(path)
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for ref in [panel["datasource"], *(t.get("datasource", panel["datasource"]) for t in panel["targets"])]:
            assert provisioned.get(ref["uid"]) == ref["type"], (panel["title"], ref)
    for var in board["templating"]["list"]:
        assert provisioned.get(var["datasource"]["uid"]) == var["datasource"]["type"], var["name"]


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_every_variable_a_query_uses_is_defined_before_and_formatted_for_its_language(path: Path):
    board = load(path)
    defined: dict[str, dict[str, Any]] = {}
    texts: list[tuple[str, str, str]] = []  # (where, language, text)
    for var in board["templating"]["list"]:
        texts.append((f"variable {var['name']}", "sql", var["query"]["rawSql"]))
        # a variable's query may only use the variables above it: Grafana resolves them in order
        check_references(*texts[-1], defined)
        defined[var["name"]] = var
    for panel in panels(board):
        for target in panel.get("targets", []):
            language = "sql" if "rawSql" in target else "promql"
            check_references(panel["title"], language, target.get("rawSql") or target["expr"], defined)


def check_references(where: str, language: str, text: str, defined: dict[str, dict[str, Any]]) -> None:
    for match in VARIABLE_REF.finditer(text):
        name = match.group(1) or match.group(3) or match.group(4)
        fmt = match.group(2) or match.group(5)
        if name.startswith("__"):
            continue
        assert name in defined, f"{where}: ${name} is not a variable of this dashboard (or is defined below)"
        # multi-value variables need a format that keeps the list valid in the language; a custom all value
        # (.*) is passed unformatted, so it only fits a regex
        want = "regex" if language == "promql" or defined[name].get("allValue") else "singlequote"
        why = " (its custom all value is passed unformatted: it fits a regex only)" if defined[name].get("allValue") else ""
        assert fmt == want, f"{where}: ${name} in {language} must be written ${{{name}:{want}}}{why}"


def test_loader_series_the_panels_read_are_ones_the_loader_exports():
    metrics = LoaderMetrics()
    for family in (metrics.rows, metrics.batches, metrics.replayed, metrics.rejected, metrics.errors):
        family.inc("usage_10s")
    metrics.latency.observe("usage_10s", value=0.1)
    metrics.lag.set(topics.clickhouse_topic("usage_10s"), "0", value=1)
    exported = {line.split("{")[0].split(" ")[0] for line in metrics.render().splitlines() if not line.startswith("#")}
    used = {name for t in TARGETS for name in re.findall(r"telemetry_loader_\w+", t.text)}
    assert used and used <= exported, used - exported
    synthetic = {sample.split("{")[0] for s in LOADER_SERIES for sample, _ in samples(s, "", range(1))}
    assert used <= synthetic, used - synthetic


def test_flink_series_the_panels_read_are_the_jobs_counters_or_flinks_own():
    """The job's counters as the reporter names them: flink_taskmanager_job_task_operator_ + metric group path +
    name (udfs/route.py, udfs/enrichment.py); the rest are Flink's own job and task metrics."""
    route, enrichment = ((REPO_ROOT / "udfs" / f).read_text() for f in ("route.py", "enrichment.py"))
    used = {name for t in TARGETS for name in re.findall(r"flink_\w+", t.text)}
    synthetic = {s.name for s in FLINK_SERIES}
    assert used and used <= synthetic, used - synthetic
    for name in used:
        suffix = name.removeprefix("flink_taskmanager_job_task_operator_")
        if suffix.startswith("events_"):
            assert f'counter("{suffix}")' in route, name
        elif suffix.startswith("enrichment_status_"):
            assert 'add_group("enrichment")' in enrichment and 'counter(f"status_{status}")' in enrichment, name


# ---------------------------------------------------------------------------------------------------------------
# Prometheus history: Flink and loader series as the reporter and /metrics export them. Synthetic, because the
# session's job runs on a mini-cluster without the reporter and its loader runs --once unscraped; a second job run
# on the stack's session cluster, scraped by the stack's Prometheus, would double the slowest part of the suite.
# Names and labels follow Flink's Prometheus reporter (counters exported as gauges, metric group variables as
# labels) and services/loader/metrics.py; the two tests above hold the panels to those names.


@dataclass(frozen=True)
class Series:
    name: str
    kind: str  # OpenMetrics type: gauge | counter (samples *_total) | histogram (samples *_bucket etc.)
    labels: tuple[dict[str, str], ...]
    rate: float  # growth per second (counters, and Flink counters exported as gauges); 0: a level that moves


JOB = {"job_id": "3f1c9e0a7b2d4c6e8f0a1b2c3d4e5f60", "job_name": "telemetry", "host": "localhost"}
TASK = {**JOB, "tm_id": "127_0_0_1:36125-2f0c1a", "subtask_index": "0", "task_attempt_num": "0"}
SOURCE_TASK = {**TASK, "task_name": "Source:_kafka____validate_and_route",
               "task_id": "cbc357ccb763df2852fee8c4fc7d55f2"}
ENRICH_TASK = {**TASK, "task_name": "prometheus_enrichment", "task_id": "9dd63673dd41ea021b896d5203f3ba7c"}
ROUTE = {**SOURCE_TASK, "operator_name": "validate_and_route", "operator_id": "a3a1e6c1c4f2c2b9d7e6f5a4b3c2d1e0"}
KAFKA_SOURCE = {**SOURCE_TASK, "operator_name": "Source:_kafka", "operator_id": "bc764cd8ddf7a0cff126f51c16239658"}
ENRICH = {**ENRICH_TASK, "operator_name": "prometheus_enrichment", "operator_id": "6cdc5bb954874d922eaee11a8e7ca5be"}
WINDOW_TASK = {**TASK, "task_name": "GlobalWindowAggregate_15_", "task_id": "5e0b2f3c9a8d7e6f5a4b3c2d1e0f9a8b"}
WINDOW = {**WINDOW_TASK, "operator_name": "GlobalWindowAggregate_15_", "operator_id": "7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d"}
OP = "flink_taskmanager_job_task_operator"
FLINK_SERIES = (
    Series("flink_jobmanager_job_lastCheckpointDuration", "gauge", (JOB,), 0.0),
    Series("flink_jobmanager_job_numberOfCompletedCheckpoints", "gauge", (JOB,), 0.5),
    Series("flink_jobmanager_job_numberOfFailedCheckpoints", "gauge", (JOB,), 0.001),
    Series("flink_taskmanager_job_task_backPressuredTimeMsPerSecond", "gauge", (SOURCE_TASK, ENRICH_TASK), 0.0),
    Series("flink_taskmanager_job_task_busyTimeMsPerSecond", "gauge", (SOURCE_TASK, ENRICH_TASK), 0.0),
    Series(f"{OP}_pendingRecords", "gauge", (KAFKA_SOURCE,), 0.0),
    Series(f"{OP}_events_in", "gauge", (ROUTE,), 10_000.0),
    Series(f"{OP}_events_valid", "gauge", (ROUTE,), 9_900.0),
    Series(f"{OP}_events_dlq", "gauge", (ROUTE,), 100.0),
    Series(f"{OP}_events_late", "gauge", (ROUTE,), 2.0),
    Series(f"{OP}_events_corrections", "gauge", (ROUTE,), 5.0),
    Series(f"{OP}_numLateRecordsDropped", "gauge", (WINDOW,), 0.0),  # Flink SQL's window operators; stays 0
    *(Series(f"{OP}_enrichment_status_{s}", "gauge", (ENRICH,), r)
      for s, r in (("ok", 20.0), ("partial", 1.0), ("unavailable", 0.5), ("skipped", 0.1))),
)
TABLES = tuple({"table": t} for t in ("usage_10s", "task_facts", "audit_log", "dlq_events"))
LOADER_SERIES = (
    Series("telemetry_loader_rows_inserted", "counter", TABLES, 5_000.0),
    Series("telemetry_loader_insert_errors", "counter", TABLES, 0.01),
    Series("telemetry_loader_rows_rejected", "counter", TABLES, 0.02),
    Series("telemetry_loader_insert_seconds", "histogram", TABLES, 5.0),
    Series("telemetry_loader_lag_records", "gauge", tuple({"topic": topics.clickhouse_topic("usage_10s"), "partition": str(p)}
                                                           for p in range(3)), 0.0),
)
# name prefix -> the job and instance labels the stack's scrape configuration would add (first match wins)
SCRAPE_JOBS = {"flink_jobmanager": ("flink-jobmanager", "127.0.0.1:9249"),
               "flink_": ("flink-taskmanager", "127.0.0.1:9250"),
               "telemetry_loader": ("telemetry-loader", "127.0.0.1:9465")}


def pipeline_openmetrics() -> str:
    """FLINK_SERIES and LOADER_SERIES over the test range (and 10 minutes either side), one sample per scrape of the
    local stack's Prometheus, with the job / instance labels its scrape configuration adds."""
    step = seconds(SCRAPE_INTERVAL)
    first, last = int(START.timestamp()) - 600, int(END.timestamp()) + 600
    times = range(first, last + 1, step)
    lines: list[str] = []
    for series in (*FLINK_SERIES, *LOADER_SERIES):
        job, instance = next(v for k, v in SCRAPE_JOBS.items() if series.name.startswith(k))
        lines.append(f"# TYPE {series.name} {series.kind}")
        for labels in series.labels:
            text = ",".join(f'{k}="{v}"' for k, v in {**labels, "job": job, "instance": instance}.items())
            for sample, value in samples(series, text, times):
                lines += [f"{sample} {value(t)!r} {t}" for t in times]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def samples(series: Series, labels: str, times: range) -> list[tuple[str, Any]]:
    """(sample name with labels, value at time t) of one series; every series is contiguous, as promtool wants."""
    def grow(rate: float) -> Callable[[int], float]:  # a counter from 0
        return lambda t: rate * (t - times[0])

    if series.kind == "counter":
        return [(f"{series.name}_total{{{labels}}}", grow(series.rate))]
    if series.kind == "histogram":  # inserts at `rate` per second, half under 50 ms, all under 250 ms
        buckets = [("0.05", 0.5), ("0.25", 1.0), ("+Inf", 1.0)]
        return [*((f'{series.name}_bucket{{{labels},le="{le}"}}', grow(series.rate * share))
                  for le, share in buckets),
                (f"{series.name}_count{{{labels}}}", grow(series.rate)),
                (f"{series.name}_sum{{{labels}}}", grow(series.rate * 0.06))]
    if series.rate:
        return [(f"{series.name}{{{labels}}}", grow(series.rate))]
    return [(f"{series.name}{{{labels}}}", lambda t: 100.0 + (t // 60) % 7 * 10)]  # a level that moves


def node_extras_openmetrics(nodes: list[str]) -> str:
    """node_exporter series the Admin dashboard reads beyond those enrichment needs (fixtures_prometheus): boot
    time, root file system and up, over the same HISTORY."""
    lines = []
    for name, labels, value in (
        ("node_boot_time_seconds", "", lambda i: float(HISTORY[0] - 86_400 * (1 + i % 5))),
        ("node_filesystem_size_bytes", ',mountpoint="/",fstype="ext4"', lambda i: 512e9),
        ("node_filesystem_avail_bytes", ',mountpoint="/",fstype="ext4"', lambda i: 512e9 - 5e9 * (1 + i % 50)),
        ("up", ',job="node-exporter"', lambda i: 1.0),
    ):
        lines.append(f"# TYPE {name} gauge")
        for i, node in enumerate(nodes):
            lines += [f'{name}{{node="{node}"{labels}}} {value(i)!r} {t}' for t in HISTORY]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusHistory]:
    """A Prometheus whose history holds the simulated nodes' series (the ones the job enriched from) and the
    pipeline's own: extra blocks created next to the ones serve_history creates (Prometheus merges them)."""
    work = tmp_path_factory.mktemp("grafana-prometheus")
    nodes = simulated_nodes(SEED)
    extra = pipeline_openmetrics().removesuffix("# EOF\n") + node_extras_openmetrics([n.name for n in nodes])
    (work / "pipeline.om").write_text(extra + "# EOF\n")
    promtool = shutil.which("promtool") or pytest.fail("promtool not on PATH: run `make system-deps`")
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(work / "pipeline.om"),
                    str(work / "data")], check=True, capture_output=True, timeout=300)
    with serve_history(work, nodes) as history:
        yield history


# ---------------------------------------------------------------------------------------------------------------
# Every panel query against the real data


@pytest.fixture(scope="module")
def clickhouse(clickhouse_loaded: tuple[Any, str], clickhouse_dev: DevClickHouse) -> Iterator[Any]:
    """A client on the session's job-output database (every migration, the cost model too), with the example
    price catalogue loaded, as the datasource's defaultDatabase would be; logged in as the read-only user, as
    Grafana's data source is."""
    _, database = clickhouse_loaded
    loaded = subprocess.run([sys.executable, "-m", "telemetry.prices", "--url", clickhouse_dev.writer, "--database",
                             database, "load", str(PRICES)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    client = clickhouse_connect.get_client(dsn=clickhouse_dev.reader, database=database)
    yield client
    client.close()


def run_sql(client: Any, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    result = client.query(sql)
    return list(result.column_names), result.result_rows


@pytest.fixture(scope="module")
def selections(clickhouse: Any) -> dict[str, dict[str, Any]]:
    """Per dashboard: its variables with their options (each variable's query run as Grafana runs it, with the
    variables above it at All), and two selections: all, and one busy tenant / department / project."""
    _, rows = run_sql(clickhouse, "SELECT tenant_id, department_id, project_id FROM task_facts FINAL "
                                  "GROUP BY ALL ORDER BY count() DESC, tenant_id, department_id, project_id LIMIT 1")
    one = dict(zip(ROLE_VARIABLES, map(list, zip(*rows))))
    out = {}
    for path in DASHBOARD_FILES:
        variables: dict[str, dict[str, Any]] = {}
        everything: dict[str, list[str]] = {}
        for var in load(path)["templating"]["list"]:
            sql = expand_variables(var["query"]["rawSql"], everything, variables)
            _, rows = run_sql(clickhouse, expand_clickhouse_macros(sql, AUTO_INTERVAL_S))
            variables[var["name"]] = {**var, "options": [str(r[0]) for r in rows]}
            assert variables[var["name"]]["options"], f"{path.stem}: variable {var['name']} has no options"
            everything[var["name"]] = [ALL]
        single = {**everything, **one}
        for name in everything.keys() - one.keys():  # e.g. the VM: the first one of that project
            sql = expand_variables(variables[name]["query"]["rawSql"], single, variables)
            single[name] = [str(run_sql(clickhouse, expand_clickhouse_macros(sql, AUTO_INTERVAL_S))[1][0][0])]
        out[path.stem] = {"variables": variables, "all": everything, "one": single}
    return out


def query_prometheus(url: str, target: Target, expr: str) -> list[dict[str, Any]]:
    params = {"query": expr}
    if target.target.get("instant"):
        endpoint, params["time"] = "query", END.timestamp()
    else:
        endpoint = "query_range"
        params.update(start=START.timestamp(), end=END.timestamp(), step=target.interval_s())
    response = requests.get(f"{url}/api/v1/{endpoint}", params=params, timeout=30)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", f"{expr}\n{body}"
    return [s for s in body["data"]["result"] if s.get("values") or s.get("value")]


@pytest.mark.stack
@pytest.mark.parametrize("target", TARGETS, ids=str)
def test_panel_query_returns_rows(target: Target, selections, clickhouse, prometheus):
    """With every tenant / department / project (All) the panel has data; with one busy project the query still
    runs (it may rightly come back empty for a project without, say, failures)."""
    setup = selections[target.board]
    for name, selected in (("all", setup["all"]), ("one", setup["one"])):
        text = expand_variables(target.text, selected, setup["variables"])
        if target.uid == "clickhouse":
            columns, rows = run_sql(clickhouse, expand_clickhouse_macros(text, target.interval_s()))
            if target.target["format"] == 0 and rows:  # the plugin's time series: time first
                assert columns[0] == "time" and isinstance(rows[0][0], datetime), columns
        else:
            scrape_s = seconds(datasource("prometheus")["jsonData"]["timeInterval"])
            rows = query_prometheus(prometheus.url, target, expand_prometheus_globals(text, target.interval_s(),
                                                                                      scrape_s))
        if name == "all":
            assert rows, f"{target}: no rows with every tenant selected\n{text}"


@pytest.mark.stack
def test_sketch_quantiles_in_sql_are_the_sketch_modules(clickhouse, selections):
    """The latency quantiles the Pipeline TD dashboard computes in SQL equal pipeline.sketch.quantile over the
    same merged buckets."""
    target = next(t for t in TARGETS if t.board == "pipeline-td" and "latency by model" in t.panel["title"])
    setup = selections["pipeline-td"]
    sql = expand_variables(target.text, setup["all"], setup["variables"])
    columns, rows = run_sql(clickhouse, expand_clickhouse_macros(sql, target.interval_s()))
    got = {r[:3]: dict(zip(columns[4:], r[4:])) for r in rows}
    _, merged = run_sql(clickhouse, "SELECT model, model_version, if(checkpoint_id = '', '(base)', checkpoint_id), "
                                    "sumMap(latency_hist) FROM usage_1m GROUP BY 1, 2, 3 HAVING sum(requests) > 0")
    assert len(got) == len(merged) > 1
    for *key, hist in merged:
        want = {f"p{round(q * 100)}": sketch.quantile(hist, q) for q in (0.5, 0.95, 0.99)}
        assert got[tuple(key)] == pytest.approx(want, rel=1e-9), key
