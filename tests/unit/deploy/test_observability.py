"""deploy/observability: alert rules, their unit tests and the scrape config checked by
`promtool` (from Debian's `prometheus` package: `make promtool`, run by `make test`; skipped
where it cannot be installed), the dashboard's queries valid PromQL, every metric they name
exported by the code, and a runbook section in docs/operations.md for every alert."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[3]
OBSERVABILITY = ROOT / "deploy" / "observability"
ALERTS = OBSERVABILITY / "alerts.yaml"
ALERT_TESTS = OBSERVABILITY / "alerts.test.yaml"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
RUNBOOK = ROOT / "docs" / "operations.md"
METRIC = re.compile(r"\b(dxtalent_[a-z0-9_]+)")
#: modules that define the services' metrics (importing them registers every one)
METRIC_MODULES = (
    "dxtalent_infra.metrics",
    "dxtalent_enrollment.intake",
    "dxtalent_certification.handler",
)
#: Grafana's variables, replaced by values PromQL accepts
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$consumer": ".*"}

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is missing: `make promtool` installs Debian's prometheus package (root)",
)


def _promtool(*args: str, cwd: Path = OBSERVABILITY) -> str:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def _dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def _as_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def _exported_metric_names() -> set[str]:
    """The sample names the services expose: counters as `_total`, histograms as `_bucket`,
    `_count` and `_sum`, gauges as they are."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    names: set[str] = set()
    for family in REGISTRY.collect():
        if not family.name.startswith("dxtalent_"):
            continue
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}{s}" for s in ("_bucket", "_count", "_sum")}
        else:
            names.add(family.name)
    return names


@needs_promtool
def test_alert_rules_are_valid() -> None:
    assert f"SUCCESS: {len(_alert_rules())} rules found" in _promtool(
        "check", "rules", "alerts.yaml"
    )


@needs_promtool
def test_every_alert_passes_its_unit_tests() -> None:
    assert "SUCCESS" in _promtool("test", "rules", "alerts.test.yaml")


@needs_promtool
def test_the_scrape_config_is_valid() -> None:
    _promtool("check", "config", "prometheus.yaml")


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Each panel's query as a recording rule, which `promtool check rules` parses."""
    rules = [
        {"record": f"dashboard:query_{i}", "expr": _as_promql(expr)}
        for i, expr in enumerate(_dashboard_exprs())
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    _promtool("check", "rules", str(path), cwd=tmp_path)


def test_every_alert_is_unit_tested_firing() -> None:
    """Each alert appears in alerts.test.yaml with an evaluation where it fires."""
    doc = yaml.safe_load(ALERT_TESTS.read_text(encoding="utf-8"))
    firing = {
        case["alertname"]
        for test in doc["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in _alert_rules()} <= firing


def test_every_alert_has_a_runbook_section() -> None:
    """`runbook_url` points at a heading of docs/operations.md named after the alert."""
    headings = {
        line.lstrip("#").strip()
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for rule in _alert_rules():
        assert rule["alert"] in headings, rule["alert"]
        assert rule["annotations"]["runbook_url"] == (f"docs/operations.md#{rule['alert'].lower()}")
        assert rule["labels"]["severity"] in {"page", "ticket"}


def test_every_metric_the_dashboard_and_alerts_name_is_exported() -> None:
    named = {m for expr in _dashboard_exprs() for m in METRIC.findall(expr)}
    named |= {m for rule in _alert_rules() for m in METRIC.findall(rule["expr"])}
    exported = _exported_metric_names()
    assert named, "no dxtalent_ metric found in the dashboard or the alerts"
    assert named <= exported, sorted(named - exported)
    # and the dashboard shows every metric the services export
    shown = {m for expr in _dashboard_exprs() for m in METRIC.findall(expr)}
    families = {re.sub(r"_(total|bucket|count|sum)$", "", m) for m in exported}
    assert families <= {re.sub(r"_(total|bucket|count|sum)$", "", m) for m in shown}
