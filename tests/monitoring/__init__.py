"""deploy/monitoring's alert rules and Grafana dashboard, checked with the real promtool (built by the test
bed from the pinned prometheus module, hack/promtool) and against what mcgw really exports."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from tests.e2e.testbed.build import cached_promtool, promtool_binary

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"
ALERTS = MONITORING / "alerts.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
HERE = Path(__file__).resolve().parent
ALERT_TESTS = HERE / "alerts_test.yaml"
DASHBOARD_SCHEMA = HERE / "grafana-dashboard.schema.json"


def promtool() -> Path:
    return cached_promtool() or promtool_binary()


def run_promtool(args: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool()), *args], capture_output=True, text=True, cwd=cwd, check=False,
                          timeout=120)


def alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        rules.extend(group["rules"])
    return rules


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested ones too (a collapsed row keeps its panels inside)."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every query the dashboard runs: panel targets, annotations, variables."""
    queries = [(f"panel {panel['title']!r} {target['refId']}", target["expr"])
               for panel in panels(board) for target in panel.get("targets", []) if "expr" in target]
    queries += [(f"annotation {a['name']!r}", a["expr"]) for a in board["annotations"]["list"] if "expr" in a]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            queries.append((f"variable {variable['name']!r}", label_values_selector(query)))
    return queries


def label_values_selector(query: str) -> str:
    """The series selector of Grafana's ``label_values(selector, label)`` variable query."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", query, re.S)
    if not match:
        raise ValueError(f"not a label_values(selector, label) query: {query!r}")
    return match.group(1)


# What Grafana puts in place of its variables when it runs a query; one value per variable, as a repeated
# panel or a single selection has.
GRAFANA_VALUES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h",
                  "cluster": "east", "gateway": "shop/web", "service": "shop/cart:80"}


def substitute(expr: str, values: dict[str, str] = GRAFANA_VALUES) -> str:
    """``expr`` with Grafana's ``$name`` and ``${name}`` variables replaced, as Prometheus would receive it."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"the dashboard uses ${name}, which neither it nor Grafana defines")
        return values[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


# -- metric names in PromQL ---------------------------------------------------------------------------------

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
             "offset", "atan2", "start", "end", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects: identifiers left once strings, label matchers, ranges, grouping
    label lists, numbers and durations are gone, and that are neither functions, aggregations nor keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, called = match.group(1), match.group(2)
        if called or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def exported_metric_names() -> set[str]:
    """The sample names mcgw's /metrics can carry, read from the real collectors it registers."""
    from mcgw.admin.metrics import ControllerMetrics, TrafficCollector
    from mcgw.runtime.mcs_metrics import McsMetrics
    from mcgw.runtime.traffic import TrafficTracker
    from xdsserver.metrics import XdsMetrics

    registry = CollectorRegistry()
    ControllerMetrics(registry)
    McsMetrics(registry)
    XdsMetrics(registry)
    registry.register(TrafficCollector(TrafficTracker(), time.time))
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count",
                                                                               "_created"),
                "summary": ("", "_sum", "_count", "_created"), "info": ("_info",)}
    return {family.name + suffix for family in registry.collect() for suffix in suffixes[family.type]}
