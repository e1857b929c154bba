"""monitoring/prometheus/alerts.yml: promtool accepts the rules and their unit tests (alerts_test.yml) pass, each alert
has a firing and a quiet case, and every metric the rules name is one Flink, udfs/ or the loader really exports, so
renaming a counter fails here instead of silencing an alert."""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from telemetry.settings import REPO_ROOT

RULES = REPO_ROOT / "monitoring" / "prometheus" / "alerts.yml"
RULE_TESTS = REPO_ROOT / "monitoring" / "prometheus" / "alerts_test.yml"
LOADER_METRICS = REPO_ROOT / "services" / "loader" / "metrics.py"
QUOTA_METRICS = REPO_ROOT / "services" / "quota" / "prom.py"
# How Flink 2.2's Prometheus reporter names a metric an operator registers: the logical scope, then each add_group()
# name, then the metric's own name (measured on a 2.2.1 mini-cluster: ..._events_dlq, ..._dlq_reason_not_json).
OPERATOR_SCOPE = ("flink", "taskmanager", "job", "task", "operator")
# Flink's and the Kafka connector's own metrics the rules use. numRestarts and numberOfFailedCheckpoints were read off
# the same mini-cluster's reporter; pendingRecords is the source's records-lag gauge (connector 5.0,
# KafkaSourceReaderMetrics.maybeAddRecordsLagMetric), on the operator scope.
FLINK_BUILTIN = {
    "flink_jobmanager_job_numRestarts",
    "flink_jobmanager_job_numberOfFailedCheckpoints",
    "flink_taskmanager_job_task_operator_pendingRecords",
    "flink_taskmanager_job_task_operator_numLateRecordsDropped",  # Flink SQL's window operators
}
METRIC_NAME = re.compile(r"\b(?:flink|telemetry)_[A-Za-z0-9_]+\b")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is needed: run `make system-deps` (Debian package prometheus)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


# --- registered metric names, read from the code -----------------------------------------------------------------


def _group(node: ast.expr, groups: dict[str, tuple[str, ...]]) -> tuple[str, ...] | None:
    """The add_group() path an expression stands for: () for the operator's group, None if it is not a group."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "get_metrics_group":
            return ()
        if node.func.attr == "add_group" and node.args and isinstance(node.args[0], ast.Constant):
            parent = _group(node.func.value, groups)
            # add_group(key, value): the key is a scope component, the value a label
            return None if parent is None else (*parent, str(node.args[0].value))
    return groups.get(ast.unparse(node))


def _names(node: ast.expr, scope: ast.AST, module: ModuleType) -> list[str]:
    """A metric's name: a constant; an f-string over a loop of constants (expanded); anything else is chosen per
    record and stands for any name ("*")."""
    if isinstance(node, ast.Constant):
        return [str(node.value)]
    if isinstance(node, ast.JoinedStr):
        loops = {c.target.id: c.iter for c in ast.walk(scope)
                 if isinstance(c, ast.comprehension) and isinstance(c.target, ast.Name)}
        names = [""]
        for part in node.values:
            if isinstance(part, ast.Constant):
                names = [n + str(part.value) for n in names]
                continue
            value = part.value if isinstance(part, ast.FormattedValue) else None
            loop = loops.get(value.id) if isinstance(value, ast.Name) else None
            if not isinstance(loop, (ast.Tuple, ast.List)):
                return ["*"]
            options = [str(e.value) if isinstance(e, ast.Constant) else str(getattr(module, e.id))
                       for e in loop.elts if isinstance(e, (ast.Constant, ast.Name))]
            names = [n + o for n in names for o in options]
        return names
    return ["*"]


def operator_metrics() -> set[str]:
    """The Prometheus names of every metric udfs/ registers on its operators' metric groups."""
    found: set[str] = set()
    for path in sorted((REPO_ROOT / "udfs").glob("*.py")):
        module = importlib.import_module(f"udfs.{path.stem}")
        for cls in [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)]:
            groups: dict[str, tuple[str, ...]] = {}
            for node in ast.walk(cls):  # breadth first: open()'s assignments in the order they run
                if isinstance(node, ast.Assign) and len(node.targets) == 1:
                    group = _group(node.value, groups)
                    if group is not None:
                        groups[ast.unparse(node.targets[0])] = group
            for node in ast.walk(cls):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args
                        and node.func.attr in ("counter", "gauge", "meter", "distribution")):
                    group = _group(node.func.value, groups)
                    if group is not None:
                        found |= {"_".join((*OPERATOR_SCOPE, *group, name)) for name in _names(node.args[0], cls, module)}
    return found


def loader_metrics(path: Path = LOADER_METRICS) -> set[str]:
    """Every series name a service's /metrics renders (the loader's services/loader/metrics.py registry, or another
    registry of telemetry/promtext.py's types)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("Metric", "Histogram")
                and node.args and isinstance(node.args[0], ast.Constant)):
            name = str(node.args[0].value)
            found |= {name} if node.func.id == "Metric" else {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return found


def exported(name: str, known: set[str]) -> bool:
    return name in known or any(k.endswith("*") and name.startswith(k[:-1]) for k in known)


# --- tests -------------------------------------------------------------------------------------------------------


def test_promtool_accepts_the_rules_and_their_unit_tests_pass():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_a_rule_with_a_broken_expression_fails_the_check(tmp_path: Path):
    text = RULES.read_text()
    broken = tmp_path / "alerts.yml"
    broken.write_text(text.replace("sum by (job_name) (flink_taskmanager_job_task_operator_pendingRecords) > 100000",
                                   "sum by (job_name) (flink_taskmanager_job_task_operator_pendingRecords > 100000", 1))
    assert broken.read_text() != text
    result = promtool("check", "rules", str(broken))
    assert result.returncode != 0 and "TelemetryKafkaConsumerLag" in result.stdout + result.stderr, result.stdout


def test_every_alert_has_a_firing_and_a_quiet_test_case():
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"] for case in test.get("alert_rule_test", [])]
    for rule in rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c.get("exp_alerts") for c in mine), f"{rule['alert']}: no test case where it fires"
        assert any(not c.get("exp_alerts") for c in mine), f"{rule['alert']}: no test case where it stays quiet"
    assert {c["alertname"] for c in cases} <= {r["alert"] for r in rules()}, "a test case names an alert that is gone"


def test_every_alert_says_how_long_how_bad_and_what_to_do():
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names)), names
    for rule in rules():
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{rule['alert']}: no `for`"
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_every_metric_the_rules_and_their_tests_name_is_exported():
    operator, loader = operator_metrics(), loader_metrics()
    # the parsers must see the code's counters at all, or every name below would look unknown for the wrong reason
    assert {"flink_taskmanager_job_task_operator_events_in", "flink_taskmanager_job_task_operator_enrichment_status_ok",
            "flink_taskmanager_job_task_operator_dlq_reason_*"} <= operator, operator
    assert "telemetry_loader_insert_errors_total" in loader, loader
    quota = loader_metrics(QUOTA_METRICS)
    assert "telemetry_quota_exceeded_total" in quota, quota
    known = operator | loader | quota | FLINK_BUILTIN
    for rule in rules():
        assert "__name__" not in rule["expr"], f"{rule['alert']}: name metrics explicitly, so this test can check them"
        used = set(METRIC_NAME.findall(rule["expr"]))
        assert used, rule["alert"]
        unknown = {m for m in used if not exported(m, known)}
        assert not unknown, f"{rule['alert']} uses {unknown}, which neither Flink, udfs/ nor the loader export"
    series = {s["series"].split("{")[0] for t in yaml.safe_load(RULE_TESTS.read_text())["tests"] for s in t["input_series"]}
    assert not {s for s in series if not exported(s, known)}, "alerts_test.yml feeds series no one exports"
