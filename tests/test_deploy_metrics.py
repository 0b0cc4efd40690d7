"""What deploy/ ships for monitoring (issue 17, item 2): the Grafana dashboard and the Prometheus alert
rules. Checked without Grafana or Prometheus running:

- the dashboard: valid JSON, the shape Grafana's dashboard schema requires of what it uses (a subset of
  the schema, as a JSON Schema here), every panel with targets whose expressions name metrics this
  service exports, variables defined; with promtool installed, every expression also parses as PromQL;
- the alert rules: `promtool check rules` when promtool is installed (Debian's package `prometheus`
  has it: `apt-get install prometheus`), and always a YAML schema test of groups, rules, expr, for,
  labels and annotations, and that their metrics exist;
- a scraped exposition: `promtool check metrics` (its linter) when promtool is installed.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from router.core import metrics as m
from router.core.metrics import Bounds
from router.core.tenants import Tenant
from router.core.topology import Names
from router.metrics import MetricsRegistry

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "contact-router.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
SCRAPE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROMTOOL = shutil.which("promtool")


def promtool() -> str:
    """The tool, or a failure that says how to get it: scripts/test installs it (scripts/test-tools)."""
    if PROMTOOL is None:
        pytest.fail("promtool is not installed: run scripts/test-tools (apt-get install prometheus)")
    return PROMTOOL


# What the dashboard uses of Grafana's dashboard schema (grafana/grafana kinds/dashboard), as JSON Schema.
_DATASOURCE = {
    "type": "object",
    "required": ["type", "uid"],
    "properties": {"type": {"const": "prometheus"}, "uid": {"type": "string"}},
}
_GRID = {
    "type": "object",
    "required": ["h", "w", "x", "y"],
    "properties": {
        "h": {"type": "integer", "minimum": 1},
        "w": {"type": "integer", "minimum": 1, "maximum": 24},
        "x": {"type": "integer", "minimum": 0, "maximum": 23},
        "y": {"type": "integer", "minimum": 0},
    },
}
_TARGET = {
    "type": "object",
    "required": ["refId", "expr", "datasource"],
    "properties": {
        "refId": {"type": "string", "pattern": "^[A-Z]$"},
        "expr": {"type": "string", "minLength": 1},
        "legendFormat": {"type": "string"},
        "datasource": _DATASOURCE,
    },
}
_PANEL = {
    "type": "object",
    "required": ["id", "type", "title", "gridPos"],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "type": {"enum": ["row", "timeseries", "stat", "gauge", "table", "bargauge"]},
        "title": {"type": "string", "minLength": 1},
        "gridPos": _GRID,
        "datasource": _DATASOURCE,
        "targets": {"type": "array", "items": _TARGET},
        "fieldConfig": {
            "type": "object",
            "required": ["defaults", "overrides"],
            "properties": {"defaults": {"type": "object"}, "overrides": {"type": "array"}},
        },
        "options": {"type": "object"},
    },
    "if": {"properties": {"type": {"const": "row"}}},
    "then": {"required": ["collapsed", "panels"]},
    "else": {
        "required": ["targets", "datasource", "fieldConfig"],
        "properties": {"targets": {"minItems": 1}},
    },
}
DASHBOARD_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "panels", "templating", "time"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "editable": {"type": "boolean"},
        "graphTooltip": {"enum": [0, 1, 2]},
        "refresh": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "time": {
            "type": "object",
            "required": ["from", "to"],
            "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
        },
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {
                "list": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "type"],
                        "properties": {
                            "name": {"type": "string", "pattern": "^[a-z_]+$"},
                            "type": {"enum": ["datasource", "query", "custom", "interval", "constant"]},
                        },
                    },
                }
            },
        },
        "panels": {"type": "array", "minItems": 1, "items": _PANEL},
    },
}

# Everything the issue asks the board to show.
ON_THE_BOARD = {
    m.CONTACTS_RECEIVED,
    m.CONTACTS_ROUTED,
    m.ROUTING_LATENCY,
    m.DEAD_LETTERS,
    m.MAIL_IGNORED,
    m.TRANSFERS,
    m.TRANSFER_REFUSALS,
    m.CALLBACKS_OPEN,
    m.DEADLINE_WARNINGS,
    m.DEADLINE_BREACHES,
    m.CONSUMER_ATTACHED,
    m.QUEUE_MESSAGES,
    m.DEPENDENCY_PING,
}
_METRIC = re.compile(r"\b(contact_router_[a-z_]+)")


def exported_names() -> set[str]:
    """Every series name the service exports: histograms as _bucket, _sum and _count."""
    out: set[str] = set()
    for f in m.FAMILIES:
        if f.kind == "histogram":
            out |= {f"{f.name}_bucket", f"{f.name}_sum", f"{f.name}_count"}
        else:
            out.add(f.name)
    return out


def metrics_in(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def family_of(series_name: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", series_name)


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def targets(board: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in board["panels"] if p["type"] != "row" for t in p["targets"]]


def test_the_dashboard_is_a_grafana_dashboard_whose_panels_name_metrics_that_exist() -> None:
    board = dashboard()
    errors = [
        f"{e.json_path}: {e.message}" for e in Draft202012Validator(DASHBOARD_SCHEMA).iter_errors(board)
    ]
    assert not errors, errors
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in board["panels"]:
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
        refs = [t["refId"] for t in p.get("targets", [])]
        assert len(refs) == len(set(refs)), p["title"]
    exported = exported_names()
    used: set[str] = set()
    defined = {v["name"] for v in board["templating"]["list"]}
    for title, target in targets(board):
        names = metrics_in(target["expr"])
        assert names, (title, target["expr"])
        assert names <= exported, (title, names - exported)
        used |= names
        for var in re.findall(r"\$(?!__)\{?([a-z_]+)", target["expr"]):
            assert var in defined, (title, var)
    assert target["datasource"]["uid"] == "${datasource}"
    shown = {family_of(n) for n in used}
    assert {f.name for f in ON_THE_BOARD} <= shown, {f.name for f in ON_THE_BOARD} - shown


def test_the_alert_rules_have_the_shape_prometheus_loads_and_name_metrics_that_exist() -> None:
    """The YAML schema test (what `promtool check rules` checks of the structure, and more)."""
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert set(doc) == {"groups"} and isinstance(doc["groups"], list) and doc["groups"]
    exported = exported_names() | {"up"}
    alerts: dict[str, dict[str, Any]] = {}
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and isinstance(group["name"], str)
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"[A-Z][A-Za-z]+", rule["alert"]), rule["alert"]
            assert rule["alert"] not in alerts, f"{rule['alert']} twice"
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            if "for" in rule:
                assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
            names = set(re.findall(r"\b(contact_router_[a-z_]+|up)\b(?=\s*[{\[(=<>!)]|\s*$)", rule["expr"]))
            assert names and names <= exported, (rule["alert"], names - exported)
            alerts[rule["alert"]] = rule
    # What the issue asks for: router down, consumer not attached, queue growing, breaches, dead letters.
    assert "up{" in alerts["ContactRouterProcessDown"]["expr"]
    assert "contact_router_consumer_attached" in alerts["ContactRouterNoRouterConsuming"]["expr"]
    assert "router.contacts" in alerts["ContactRouterQueueGrowing"]["expr"]
    assert "contact_router_deadline_breaches_total" in alerts["ContactRouterDeadlineBreachesRising"]["expr"]
    assert "contact_router_dead_letters_total" in alerts["ContactRouterDeadLetters"]["expr"]
    scrape = yaml.safe_load(SCRAPE.read_text(encoding="utf-8"))
    assert [j["job_name"] for j in scrape["scrape_configs"]] == ["contact-router"]  # the alerts' job


def test_the_alert_rules_and_the_scrape_config_pass_promtool() -> None:
    rules = subprocess.run([promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = subprocess.run([promtool(), "check", "config", str(SCRAPE)], capture_output=True, text=True)
    assert config.returncode == 0, config.stdout + config.stderr


def test_every_dashboard_expression_parses_as_promql(tmp_path: Path) -> None:
    """Each target as a recording rule, its Grafana variables filled in the way Grafana does."""
    records = []
    for i, (_, target) in enumerate(targets(dashboard())):
        expr = target["expr"].replace("$__rate_interval", "1m")
        expr = re.sub(r"\$\{?[a-z_]+\}?", ".*", expr)
        records.append({"record": f"dashboard:target_{i}", "expr": expr})
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_a_scraped_exposition_passes_promtool_check_metrics(tenants: dict[str, Tenant]) -> None:
    registry = MetricsRegistry(Bounds.of(tenants), Names(), "serve")
    rec = registry.recorder
    rec.received("ommen", "mail")
    rec.routed("ommen", "mail", "kcc", "routed", 0.2)
    rec.dead_lettered("ommen.mail", "invalid contact: body", "router")
    body, _ = await registry.exposition()
    proc = await asyncio.create_subprocess_exec(
        promtool(), "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    out, err = await proc.communicate(body)
    assert proc.returncode == 0, (out + err).decode()
