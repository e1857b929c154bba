"""Grafana's cost and usage alert rules, checked without Grafana (it cannot run here: its evaluator is not run): the
provisioning files' structure, each rule's SQL (macros expanded) on the dev ClickHouse holding known prices and rows,
and a re-implementation of the rule's reduce and threshold steps deciding which instances fire and which do not."""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import clickhouse_connect
import pytest
import yaml
from clickhouse_connect.driver.client import Client

from telemetry.prices import load, read_catalogue
from telemetry.settings import REPO_ROOT
from tests.support.databases import migrated_database

GRAFANA = REPO_ROOT / "monitoring" / "grafana"
ALERTING = GRAFANA / "provisioning" / "alerting"
RULES_DOC = yaml.safe_load((ALERTING / "cost-usage-alerts.yml").read_text())
CONTACTS_DOC = yaml.safe_load((ALERTING / "contact-points.yml").read_text())
DATASOURCES = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text())
RULES: list[dict[str, Any]] = [rule for group in RULES_DOC["groups"] for rule in group["rules"]]
UIDS = [rule["uid"] for rule in RULES]

# What Grafana 12 accepts (ngalert models) and what the evaluator below implements.
NO_DATA_STATES = {"NoData", "Alerting", "OK", "KeepLast"}
EXEC_ERR_STATES = {"Error", "Alerting", "OK", "KeepLast"}
REDUCERS = {"last", "max", "min", "mean", "sum", "count"}
REDUCE_MODES = {"", "dropNN", "replaceNN"}
EVALUATORS = {"gt", "lt"}
# the ClickHouse plugin's `format` (sqlutil.FormatQueryOption) and the queryType its editor pairs with it
FORMATS = {0: "timeseries", 1: "table"}
SEVERITIES = {"critical", "warning", "info"}
TEAMS = {"finance", "platform"}
MACRO = re.compile(r"\$__(\w+)(?:\(([^()]*)\))?")
TEMPLATE = re.compile(r"\{\{(.*?)\}\}")

# "Now" of the evaluations: recent (inside the fact tables' TTL), at :40 so that every window starts mid-hour and the
# rules' hour buckets are tested at their edges. Prices start well before the 8 days the spend-spike rule looks back.
NOW = (datetime.now(timezone.utc) - timedelta(days=3)).replace(minute=40, second=0, microsecond=0)
PRICES_FROM = (NOW - timedelta(days=30)).replace(minute=0)
PRICES = [  # one currency; no '*' for tokens_out_1k or vm_hour, so other models and VM types are unpriced
    ("tokens_in_1k", "*", 0.001), ("tokens_out_1k", "m1", 0.002), ("gpu_hour", "*", 2.0), ("cpu_hour", "*", 0.05),
    ("transfer_gb", "*", 0.01), ("vm_hour", "NV6", 2.0), ("vm_hour", "NC6s_v3", 3.0), ("vm_hour", "D8s_v5", 1.0),
]
GPU_HOUR = next(p for k, item, p in PRICES if (k, item) == ("gpu_hour", "*"))


def ago(hours: float = 0, minutes: float = 0) -> datetime:
    return NOW - timedelta(hours=hours, minutes=minutes)


def seconds(duration: str) -> int:
    """A Grafana duration (30s, 5m, 1h) in seconds."""
    match = re.fullmatch(r"(\d+)(s|m|h|d)", duration)
    assert match, f"unreadable duration {duration!r}"
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def queries(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in rule["data"] if d["datasourceUid"] != "__expr__"]


def expressions(rule: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["refId"]: d["model"] for d in rule["data"] if d["datasourceUid"] == "__expr__"}


def threshold_of(rule: dict[str, Any]) -> float:
    (condition,) = expressions(rule)[rule["condition"]]["conditions"]
    return float(condition["evaluator"]["params"][0])


# ---------------------------------------------------------------------------------------------------------------
# Structure of the provisioning files


def test_rule_groups_and_rules_have_what_grafana_requires():
    assert RULES_DOC["apiVersion"] == 1
    for group in RULES_DOC["groups"]:
        assert group["orgId"] == 1 and group["name"] and group["folder"] and group["rules"]
        assert 10 <= seconds(group["interval"]) <= 3600
    assert len(set(UIDS)) == len(UIDS), "rule uids repeat"
    titles = [rule["title"] for rule in RULES]
    assert len(set(titles)) == len(titles), "rule titles repeat (Grafana requires unique titles per folder)"
    for rule in RULES:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", rule["uid"]), rule["uid"]
        assert rule["noDataState"] in NO_DATA_STATES and rule["execErrState"] in EXEC_ERR_STATES, rule["uid"]
        seconds(rule["for"])
        labels = rule["labels"]
        assert labels["severity"] in SEVERITIES and labels["team"] in TEAMS, rule["uid"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["uid"]
        # provisioning runs titles and labels through os.ExpandEnv: a '$' there would be silently replaced
        assert "$" not in rule["title"] + "".join(map(str, labels.values())), rule["uid"]


@pytest.mark.parametrize("rule", RULES, ids=UIDS)
def test_queries_and_expressions_reference_what_exists(rule: dict[str, Any]):
    provisioned = {d["uid"]: d["type"] for d in DATASOURCES["datasources"]}
    defined: list[str] = []
    for item in rule["data"]:
        ref, model = item["refId"], item["model"]
        assert model["refId"] == ref and ref not in defined, ref
        if item["datasourceUid"] == "__expr__":
            assert model["datasource"] == {"type": "__expr__", "uid": "__expr__"}, ref
            # an expression reads a query or expression defined above it
            assert model["expression"] in defined, f"{ref} reads {model['expression']}, not defined before it"
            if model["type"] == "reduce":
                assert model["reducer"] in REDUCERS and model.get("settings", {}).get("mode", "") in REDUCE_MODES, ref
            else:
                assert model["type"] == "threshold", f"{ref}: {model['type']} is not evaluated by this test"
                (condition,) = model["conditions"]
                evaluator = condition["evaluator"]
                assert evaluator["type"] in EVALUATORS and isinstance(evaluator["params"][0], (int, float)), ref
        else:
            assert item["datasourceUid"] == "clickhouse", f"{ref}: queries go to the provisioned ClickHouse"
            assert provisioned["clickhouse"] == model["datasource"]["type"] and model["datasource"]["uid"] == "clickhouse"
            assert model["editorType"] == "sql" and model["rawSql"].strip(), ref
            assert FORMATS[model["format"]] == model["queryType"], ref
            window = item["relativeTimeRange"]
            assert window["from"] > window["to"] >= 0, ref
            # the rule's time range is the only clock: now() in SQL would ignore it (and Grafana's preview)
            assert not re.search(r"\bnow(64)?\s*\(", model["rawSql"], re.IGNORECASE), ref
        defined.append(ref)
    assert expressions(rule)[rule["condition"]]["type"] == "threshold", "the condition is the threshold expression"


@pytest.mark.parametrize("rule", RULES, ids=UIDS)
def test_threshold_is_the_number_the_description_states(rule: dict[str, Any]):
    """The file's comments say to change both; this keeps them from drifting apart."""
    value = threshold_of(rule)
    spelled = {f"{value:g}"} | ({str(int(value)), f"{int(value):,}"} if value.is_integer() else set())
    found = set(re.findall(r"(?<![\w.,])\d+(?:,\d{3})*(?:\.\d+)?(?!\w|\.\d)", rule["annotations"]["description"]))
    assert spelled & found, f"{rule['uid']}: threshold {value:g} is not written in its description"


@pytest.mark.parametrize("rule", RULES, ids=UIDS)
def test_annotation_templates_read_existing_expressions(rule: dict[str, Any]):
    for text in rule["annotations"].values():
        assert text.count("{{") == text.count("}}") == len(TEMPLATE.findall(text)), text
        for ref in re.findall(r"\$values\.(\w+)", text):
            assert ref in expressions(rule), f"{rule['uid']}: $values.{ref} is no expression of the rule"
        # $labels.x are checked against the query's columns in the ClickHouse tests below


def test_contact_point_is_a_webhook_from_the_environment_and_every_team_is_routed():
    assert CONTACTS_DOC["apiVersion"] == 1
    names = set()
    for point in CONTACTS_DOC["contactPoints"]:
        names.add(point["name"])
        for receiver in point["receivers"]:
            assert receiver["uid"] and receiver["type"] == "webhook"
            assert receiver["settings"]["url"] == "${ALERT_WEBHOOK_URL}", "the endpoint comes from Grafana's environment"
            for key, value in receiver["settings"].items():
                if re.search(r"password|token|secret|credential", key, re.IGNORECASE):
                    assert re.fullmatch(r"\$\{[A-Z0-9_]+\}", str(value)), f"{key}: secrets only as ${{VAR}} references"
    (policy,) = CONTACTS_DOC["policies"]
    assert policy["receiver"] in names
    routed = set()
    for route in policy["routes"]:
        assert route["receiver"] in names
        for label, op, value in route["object_matchers"]:
            if label == "team" and op == "=":
                routed.add(value)
        seconds(route.get("repeat_interval", policy["repeat_interval"]))
    assert {rule["labels"]["team"] for rule in RULES} <= routed


# ---------------------------------------------------------------------------------------------------------------
# Grafana's steps, re-implemented: macros, the data frames of a query, reduce and threshold

Labels = frozenset[tuple[str, str]]
Series = list[tuple[datetime, float | None]]


def expand_macros(sql: str, start: datetime, end: datetime) -> str:
    """The ClickHouse plugin's macros (pkg/macros/macros.go) for the range start..end."""
    s, e = int(start.timestamp()), int(end.timestamp())

    def macro(match: re.Match[str]) -> str:
        name, arg = match.group(1), (match.group(2) or "").strip()
        expansions = {
            "fromTime": f"toDateTime({s})",
            "toTime": f"toDateTime({e})",
            "fromTime_ms": f"fromUnixTimestamp64Milli({s * 1000})",
            "toTime_ms": f"fromUnixTimestamp64Milli({e * 1000})",
            "timeFilter": f"{arg} >= toDateTime({s}) AND {arg} <= toDateTime({e})",
            "timeFilter_ms": f"{arg} >= fromUnixTimestamp64Milli({s * 1000}) AND {arg} <= fromUnixTimestamp64Milli({e * 1000})",
        }
        assert name in expansions, f"macro $__{name} is not expanded here"
        return expansions[name]

    expanded = MACRO.sub(macro, sql)
    assert "$" not in expanded, f"unexpanded variable in {expanded}"
    return expanded


def kind(clickhouse_type: str) -> str:
    """How the plugin types a column in its data frame: number, string or time."""
    base = clickhouse_type
    while wrapped := re.fullmatch(r"(?:Nullable|LowCardinality)\((.*)\)", base):
        base = wrapped.group(1)
    if re.match(r"U?Int\d+$|Float\d+$|Decimal", base):
        return "number"
    if re.match(r"String$|FixedString", base):
        return "string"
    if base.startswith(("DateTime", "Date")):
        return "time"
    return base


@dataclass(frozen=True)
class Frame:
    """A query's result as Grafana alerting sees it: labelled numbers (table) or labelled series (time series)."""

    columns: dict[str, str]  # name -> kind
    values: dict[Labels, float | Series]

    @property
    def label_names(self) -> set[str]:
        return {name for name, k in self.columns.items() if k == "string"}


def to_frame(names: list[str], types: list[str], rows: list[tuple[Any, ...]], fmt: int) -> Frame:
    columns = dict(zip(names, (kind(t) for t in types)))
    numeric = [n for n, k in columns.items() if k == "number"]
    # Grafana's SSE takes a table as numbers only with exactly one numeric column and otherwise strings; a time
    # series needs its time column, and one numeric column keeps one series per label set.
    assert len(numeric) == 1, f"one numeric column, got {columns}"
    times = [n for n, k in columns.items() if k == "time"]
    assert set(columns.values()) <= {"number", "string", "time"}, columns
    assert len(times) == (1 if fmt == 0 else 0), f"format {fmt} with time columns {times}"
    labels_of = [n for n, k in columns.items() if k == "string"]
    values: dict[Labels, Any] = {}
    for row in rows:
        record = dict(zip(names, row))
        labels = frozenset((n, record[n]) for n in labels_of)
        value = record[numeric[0]]
        value = None if value is None else float(value)
        if fmt == 1:
            assert labels not in values, f"two rows with the labels {dict(labels)}: Grafana rejects the result"
            values[labels] = math.nan if value is None else value
        else:
            values.setdefault(labels, []).append((record[times[0]], value))
    if fmt == 0:
        # the plugin turns a long time series wide (LongToWide, no fill mode): every series gets every time of the
        # frame, null where its label set had no row; only the reduce's mode keeps those nulls from mattering
        times_all = sorted({t for points in values.values() for t, _ in points})
        values = {labels: [(t, dict(points).get(t)) for t in times_all] for labels, points in values.items()}
    return Frame(columns, values)


def reduce(value: float | Series, reducer: str, mode: str) -> float:
    """Grafana's reduce: a number passes unchanged; a series drops (dropNN) or replaces (replaceNN) null and NaN,
    else any such point makes the result NaN (strict)."""
    if isinstance(value, float):
        return value
    points = [v for _, v in value]
    missing = [v is None or math.isnan(v) for v in points]
    if mode == "dropNN":
        points = [v for v, m in zip(points, missing) if not m]
    elif mode == "replaceNN":
        points = [0.0 if m else v for v, m in zip(points, missing)]
    elif any(missing):
        return math.nan
    if reducer == "count":
        return float(len(points))
    if not points:
        return math.nan
    return {"last": points[-1], "max": max(points), "min": min(points), "mean": sum(points) / len(points),
            "sum": sum(points)}[reducer]


def threshold(value: float, evaluator: dict[str, Any]) -> bool:
    """Grafana's threshold: strict comparisons; NaN never fires."""
    limit = float(evaluator["params"][0])
    return {"gt": value > limit, "lt": value < limit}[evaluator["type"]]


@dataclass(frozen=True)
class Evaluation:
    frame: Frame
    reduced: dict[Labels, float]
    firing: set[Labels]


def evaluate(rule: dict[str, Any], client: Client, now: datetime = NOW) -> Evaluation:
    """Run the rule's data in order, as Grafana does: its query on ClickHouse over its relative time range, then its
    reduce and threshold expressions on the results."""
    (query,) = queries(rule)
    window = query["relativeTimeRange"]
    sql = expand_macros(query["model"]["rawSql"], now - timedelta(seconds=window["from"]), now - timedelta(seconds=window["to"]))
    # the columns from DESCRIBE: a result without rows may come back without its header
    described = client.query(f"DESCRIBE ({sql})").result_rows
    frame = to_frame([row[0] for row in described], [row[1] for row in described], client.query(sql).result_rows,
                     query["model"]["format"])
    results: dict[str, dict[Labels, Any]] = {query["refId"]: frame.values}
    for ref, model in expressions(rule).items():
        source = results[model["expression"]]
        if model["type"] == "reduce":
            results[ref] = {labels: reduce(v, model["reducer"], model.get("settings", {}).get("mode", ""))
                            for labels, v in source.items()}
        else:
            (condition,) = model["conditions"]
            results[ref] = {labels: threshold(v, condition["evaluator"]) for labels, v in source.items()}
    firing = {labels for labels, fires in results[rule["condition"]].items() if fires}
    return Evaluation(frame, results[expressions(rule)[rule["condition"]]["expression"]], firing)


def series(*values: float | None) -> Series:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return [(start + timedelta(hours=i), v) for i, v in enumerate(values)]


def test_reduce_and_threshold_follow_grafanas_semantics():
    points = series(3.0, None, 7.0, math.nan, 5.0)
    assert [reduce(points, r, "dropNN") for r in ("last", "max", "mean")] == [5.0, 7.0, 5.0]
    assert reduce(points, "mean", "replaceNN") == pytest.approx(3.0)
    assert math.isnan(reduce(points, "max", ""))  # strict: a null point makes the result NaN
    assert math.isnan(reduce(series(None), "last", "dropNN"))
    assert reduce(42.0, "mean", "dropNN") == 42.0  # a number from a table passes unchanged
    gt, lt = {"type": "gt", "params": [5]}, {"type": "lt", "params": [5]}
    assert (threshold(5.0, gt), threshold(5.1, gt), threshold(4.9, lt), threshold(5.0, lt)) == (False, True, True, False)
    assert not threshold(math.nan, gt) and not threshold(math.nan, lt)


# ---------------------------------------------------------------------------------------------------------------
# Every rule on the dev ClickHouse: rows that should fire it, and rows that should not


@pytest.fixture(scope="module")
def admin(clickhouse_server: str) -> Iterator[Client]:
    c = clickhouse_connect.get_client(dsn=clickhouse_server)
    yield c
    c.close()


@pytest.fixture(scope="module")
def database(admin: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path: Path = tmp_path_factory.mktemp("prices") / "prices.yaml"
    start = PRICES_FROM.strftime("%Y-%m-%dT%H:%M:%SZ")
    path.write_text("version: 1\ncurrency: USD\nprices:\n" + "".join(
        f'  - {{kind: {k}, item: "{item}", unit_price: {p}, valid_from: {start}}}\n' for k, item, p in PRICES))
    with migrated_database(admin, "alerts") as name:
        load(admin, name, read_catalogue(path), say=lambda _: None)
        yield name


@pytest.fixture(scope="module")
def grafana(clickhouse_server: str, database: str) -> Iterator[Client]:
    """The client Grafana's data source would be: bound to the database, as its defaultDatabase."""
    c = clickhouse_connect.get_client(dsn=clickhouse_server, database=database)
    yield c
    c.close()


USAGE_DIMS = ["window_start", "tenant_id", "department_id", "project_id", "user_id", "model", "model_version",
              "checkpoint_id", "checkpoint_version"]
FACT_COLUMNS = ["task_id", "attempt", "status", "tenant_id", "department_id", "project_id", "user_id", "base_model",
                "model_version", "checkpoint_id", "node_id", "host_name", "vm_type", "queued_at", "started_at",
                "finished_at", "gpu_seconds", "cpu_seconds", "version"]


@dataclass
class Rows:
    """What a scenario holds: usage_10s rows (the rollups follow by materialized view) and task facts. insert()
    replaces the previous scenario's rows."""

    usage: list[dict[str, Any]]
    facts: list[list[Any]]

    def insert(self, client: Client, database: str) -> None:
        for table in ("task_facts", "usage_10s", "usage_1m", "usage_1h", "usage_1d"):
            client.command(f"TRUNCATE TABLE {database}.{table}")
        if self.usage:
            metrics = sorted({k for row in self.usage for k in row} - set(USAGE_DIMS))
            rows = [[row.get(c, "") for c in USAGE_DIMS] + [row.get(m, 0) for m in metrics] for row in self.usage]
            client.insert(f"{database}.usage_10s", rows, column_names=USAGE_DIMS + metrics)
        if self.facts:
            client.insert(f"{database}.task_facts", self.facts, column_names=FACT_COLUMNS)


def use(at: datetime, department: str = "d1", user: str = "alice", model: str = "m1", **metrics: float) -> dict[str, Any]:
    """One usage_10s row (its 10 s window holds `at`)."""
    window = at.replace(second=at.second - at.second % 10, microsecond=0)
    return {"window_start": window, "tenant_id": "t1", "department_id": department, "project_id": "p1",
            "user_id": user, "model": model, "model_version": "v1", "checkpoint_id": "ck1",
            "checkpoint_version": "1", **metrics}


def spend(at: datetime, amount: float, department: str) -> dict[str, Any]:
    """Usage costing `amount` in cost_usage_1h: allocated GPU-seconds at the gpu_hour price."""
    return use(at, department, wkf_gpu_seconds=amount / GPU_HOUR * 3600)


_task_ids = itertools.count()


def run(node: str, vm_type: str, start: datetime, minutes: float, status: str = "finished", model: str = "m1",
        checkpoint: str = "ck1") -> list[Any]:
    """One task attempt on a node (a task fact as the loader writes it)."""
    end = start + timedelta(minutes=minutes)
    return [f"task-{next(_task_ids)}", 1, status, "t1", "d1", "p1", "alice", model, "v1", checkpoint, node,
            f"host-{node}", vm_type, start, start, end, 0.0, 0.0, 1]


def duty_cycle(node: str, vm_type: str, start: datetime, runs: int, busy: float, gap: float) -> list[list[Any]]:
    """`runs` attempts of `busy` minutes each, `gap` minutes apart (under 15: the node stays observed between)."""
    return [run(node, vm_type, start + timedelta(minutes=i * (busy + gap)), busy) for i in range(runs)]


def labels(**pairs: str) -> Labels:
    return frozenset(pairs.items())


@dataclass(frozen=True)
class Scenario:
    rows: Callable[[], Rows]
    values: dict[Labels, float]  # every instance the query returns, with its reduced value
    firing: set[Labels]


def _budget(over: float) -> Rows:
    today = ago(minutes=30)  # the hour of NOW: always in NOW's UTC day
    yesterday = NOW.replace(hour=0, minute=0) - timedelta(hours=1)
    return Rows([spend(today, over, "d-over"), spend(today, 800, "d-under"), spend(yesterday, 800, "d-under")], [])


def _tokens(alice_late: int) -> Rows:
    return Rows([
        use(ago(minutes=50), user="alice", tokens_in=1_500_000), use(ago(minutes=10), user="alice", tokens_out=alice_late),
        # bob's earlier million is 70 minutes old: outside the hour
        use(ago(minutes=30), user="bob", tokens_in=1_900_000), use(ago(minutes=70), user="bob", tokens_in=1_000_000),
    ], [])


def _spike(last_day: float) -> Rows:
    rows = []
    for day in range(1, 8):  # the 7 days before the last 24 h
        at = ago(hours=24 * day + 12)
        rows += [spend(at, 50, "d-spike"), spend(at, 50, "d-steady"), spend(at, 1, "d-tiny")]
    # d-tiny averages 1 a day: under the 20 a day the rule requires, whatever its last day
    return Rows(rows + [spend(ago(hours=2), last_day, "d-spike"), spend(ago(hours=3), 90, "d-steady"),
                        spend(ago(hours=2), 100, "d-tiny")], [])


def _idle(nv6_runs: int, nv6_gap: float) -> Rows:
    start = ago(hours=5, minutes=40)  # the first whole hour of the 6 h window
    return Rows([], [
        *duty_cycle("n1", "NV6", start, nv6_runs, busy=10, gap=nv6_gap),  # over 10 of VM cost either way
        *duty_cycle("n2", "NC6s_v3", start, 20, busy=10, gap=4),  # 76 of 276 minutes idle: 27.5 %
        *duty_cycle("n3", "D8s_v5", start, 4, busy=10, gap=10),  # half idle, but 70 minutes at 1.0 an hour: under 10
        *duty_cycle("n4", "NC6s_v3", ago(hours=12), 9, busy=10, gap=10),  # half idle, 12 h ago: outside the window
    ])


def _failed(ck1_failed: int) -> Rows:
    facts, node = [], iter(range(100))
    for checkpoint, failed in (("ck1", ck1_failed), ("ck2", 1)):  # five 1-hour attempts each, one VM-hour = 2.0
        for i in range(5):
            facts.append(run(f"f{next(node)}", "NV6", ago(hours=10), 60, "failed" if i < failed else "finished",
                             checkpoint=checkpoint))
    facts += [run(f"f{next(node)}", "NV6", ago(hours=30), 60, "failed", checkpoint="ck2") for _ in range(3)]  # > 24 h
    facts.append(run(f"f{next(node)}", "NV6", ago(hours=5), 30, "failed", model="m2", checkpoint="ck3"))  # 1.0 < 5
    return Rows([], facts)


def _unpriced(hours_ago: float) -> Rows:
    return Rows(
        # m9 has no tokens_out_1k price; two hours apart from ZZ9's, so each series has a null in the other's hour
        [use(ago(hours=hours_ago - 2), model="m9", tokens_in=1000, tokens_out=500),
         use(ago(hours=1), model="m1", tokens_in=1000, tokens_out=500)],
        # ZZ9 has no vm_hour price: one vm_activity_1h row and one cost_tasks row in the same hour
        [run("z1", "ZZ9", ago(hours=hours_ago, minutes=40), 30), run("n1", "NV6", ago(hours=2), 30)],
    )


def _idle_pct(busy: float, gap: float, runs: int) -> float:
    return 100 * (runs - 1) * gap / (runs * busy + (runs - 1) * gap)


SCENARIOS: dict[str, dict[str, Scenario]] = {
    "cost-department-daily-budget": {
        "fires": Scenario(lambda: _budget(1200), {labels(tenant_id="t1", department_id="d-over"): 1200,
                                                  labels(tenant_id="t1", department_id="d-under"): 800},
                          {labels(tenant_id="t1", department_id="d-over")}),
        "quiet": Scenario(lambda: _budget(999), {labels(tenant_id="t1", department_id="d-over"): 999,
                                                 labels(tenant_id="t1", department_id="d-under"): 800}, set()),
    },
    "usage-user-tokens-1h": {
        "fires": Scenario(lambda: _tokens(600_000),
                          {labels(tenant_id="t1", department_id="d1", user_id="alice"): 2_100_000,
                           labels(tenant_id="t1", department_id="d1", user_id="bob"): 1_900_000},
                          {labels(tenant_id="t1", department_id="d1", user_id="alice")}),
        "quiet": Scenario(lambda: _tokens(400_000),
                          {labels(tenant_id="t1", department_id="d1", user_id="alice"): 1_900_000,
                           labels(tenant_id="t1", department_id="d1", user_id="bob"): 1_900_000}, set()),
    },
    "cost-spend-spike": {
        "fires": Scenario(lambda: _spike(150), {labels(tenant_id="t1", department_id="d-spike"): 3.0,
                                                labels(tenant_id="t1", department_id="d-steady"): 1.8},
                          {labels(tenant_id="t1", department_id="d-spike")}),
        "quiet": Scenario(lambda: _spike(95), {labels(tenant_id="t1", department_id="d-spike"): 1.9,
                                               labels(tenant_id="t1", department_id="d-steady"): 1.8}, set()),
    },
    "cost-vm-idle-share": {
        "fires": Scenario(lambda: _idle(17, 10), {labels(vm_type="NV6"): _idle_pct(10, 10, 17),
                                              labels(vm_type="NC6s_v3"): _idle_pct(10, 4, 20)},
                          {labels(vm_type="NV6")}),
        "quiet": Scenario(lambda: _idle(24, 4), {labels(vm_type="NV6"): _idle_pct(10, 4, 24),
                                             labels(vm_type="NC6s_v3"): _idle_pct(10, 4, 20)}, set()),
    },
    "cost-failed-run-share": {
        "fires": Scenario(lambda: _failed(2), {labels(base_model="m1", checkpoint_id="ck1"): 40.0,
                                               labels(base_model="m1", checkpoint_id="ck2"): 20.0},
                          {labels(base_model="m1", checkpoint_id="ck1")}),
        "quiet": Scenario(lambda: _failed(1), {labels(base_model="m1", checkpoint_id="ck1"): 20.0,
                                               labels(base_model="m1", checkpoint_id="ck2"): 20.0}, set()),
    },
    "cost-unpriced-usage": {
        "fires": Scenario(lambda: _unpriced(5), {labels(missing_price="tokens_out_1k:m9"): 1.0,
                                                 labels(missing_price="vm_hour:ZZ9"): 2.0},
                          {labels(missing_price="tokens_out_1k:m9"), labels(missing_price="vm_hour:ZZ9")}),
        # the same gaps 30 h ago: outside the 24 h the rule looks at
        "quiet": Scenario(lambda: _unpriced(30), {}, set()),
    },
}


def test_every_rule_has_a_firing_and_a_quiet_scenario():
    assert set(SCENARIOS) == set(UIDS)
    assert all(set(cases) == {"fires", "quiet"} for cases in SCENARIOS.values())


CASES = [(rule, case) for rule in RULES for case in ("fires", "quiet")]


@pytest.mark.parametrize(("rule", "case"), CASES, ids=[f"{rule['uid']}-{case}" for rule, case in CASES])
def test_rule_on_clickhouse(rule: dict[str, Any], case: str, admin: Client, grafana: Client, database: str):
    scenario = SCENARIOS[rule["uid"]][case]
    scenario.rows().insert(admin, database)
    evaluation = evaluate(rule, grafana)
    # the columns the rule needs: the labels its annotations name, none clashing with the rule's own labels
    used = {name for text in rule["annotations"].values() for name in re.findall(r"\$labels\.(\w+)", text)}
    assert used <= evaluation.frame.label_names | set(rule["labels"]), used - evaluation.frame.label_names
    assert not evaluation.frame.label_names & set(rule["labels"]), "query labels clash with the rule's labels"
    assert evaluation.reduced == pytest.approx(scenario.values), "instances and their reduced values"
    assert evaluation.firing == scenario.firing


def test_every_rule_runs_on_an_empty_database_and_stays_quiet(admin: Client, grafana: Client, database: str):
    """No rows: no instances, so Grafana's noDataState applies (OK for all of them)."""
    Rows([], []).insert(admin, database)
    for rule in RULES:
        evaluation = evaluate(rule, grafana)
        assert evaluation.reduced == {} and rule["noDataState"] == "OK", rule["uid"]
