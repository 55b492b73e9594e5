"""deploy/monitoring: the alert rules pass promtool's checks and their unit tests (each alert firing and not),
and the Grafana dashboard is a valid dashboard whose every query parses, returns data from series shaped like
mcgw's and names only metrics mcgw exports."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.e2e.testbed.build import prometheus_release, promtool_version
from tests.monitoring import (
    ALERT_TESTS,
    ALERTS,
    DASHBOARD_SCHEMA,
    alert_rules,
    dashboard,
    dashboard_queries,
    exported_metric_names,
    metric_names,
    panels,
    run_promtool,
    substitute,
)


def test_promtool_is_the_pinned_release() -> None:
    result = run_promtool(["--version"])
    assert result.returncode == 0, result.stderr
    assert f"version {prometheus_release(promtool_version())} " in result.stdout


# -- alert rules --------------------------------------------------------------------------------------------

def test_the_alert_rules_pass_promtool_check_with_lint_fatal() -> None:
    result = run_promtool(["check", "rules", "--lint=all", "--lint-fatal", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_the_alert_rules_unit_tests_pass() -> None:
    result = run_promtool(["test", "rules", str(ALERT_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_wrong_expectation_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests compare the alerts' labels and text: one changed word is a failure."""
    rules = tmp_path / "alerts.yaml"
    rules.write_text(ALERTS.read_text().replace("severity: critical", "severity: page", 1))
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    tests["rule_files"] = [str(rules)]
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = run_promtool(["test", "rules", str(tmp_path / "alerts_test.yaml")])
    assert result.returncode != 0
    assert 'severity="page"' in result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never seen firing in alerts_test.yaml"
    assert names - silent == set(), "alerts never seen silent in alerts_test.yaml"


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


# -- the Grafana dashboard ----------------------------------------------------------------------------------

def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DASHBOARD_SCHEMA.read_text())
    return loaded


def schema_errors(board: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema())
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(board)]


def test_the_dashboard_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


def test_the_dashboard_is_valid_against_the_schema() -> None:
    assert schema_errors(dashboard()) == []


def _without_grid_position(board: dict[str, Any]) -> None:
    del board["panels"][1]["gridPos"]


def _misspelt_key(board: dict[str, Any]) -> None:
    board["panels"][1]["fieldConfig"]["defualts"] = board["panels"][1]["fieldConfig"].pop("defaults")


def _panel_past_the_grid(board: dict[str, Any]) -> None:
    board["panels"][1]["gridPos"]["w"] = 25


def _variable_without_query(board: dict[str, Any]) -> None:
    del board["templating"]["list"][1]["query"]


def _no_templating(board: dict[str, Any]) -> None:
    del board["templating"]


@pytest.mark.parametrize("break_it", [_without_grid_position, _misspelt_key, _panel_past_the_grid,
                                      _variable_without_query, _no_templating])
def test_the_schema_rejects_what_grafana_would_not_take(break_it: Any) -> None:
    board = copy.deepcopy(dashboard())
    break_it(board)
    assert schema_errors(board) != []


def test_panels_have_unique_ids_and_ref_ids_and_do_not_overlap() -> None:
    board = dashboard()
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in panels(board):
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                 for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_the_dashboard_has_what_an_operator_filters_and_reads() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert {"datasource", "cluster", "gateway", "service"} <= set(variables)
    assert all(variables[name]["includeAll"] and variables[name]["multi"] for name in ("cluster", "gateway", "service"))
    exprs = " ".join(expr for _, expr in dashboard_queries(board))
    for metric in ("mcgw_upstream_requests_total", "mcgw_upstream_errors_total", "mcgw_upstream_serving_priority",
                   "mcgw_failovers_total", "mcgw_cluster_available", "xds_nacks_total", "xds_streams"):
        assert metric in exprs, metric
    stacked = [panel for panel in panels(board)
               if "mcgw_upstream_requests_total" in str(panel.get("targets"))
               and panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {}).get("stacking", {})
               .get("mode") == "normal"]
    assert stacked, "no stacked panel of requests per source cluster and priority"
    assert any("source_cluster" in t["expr"] and "priority" in t["expr"] for p in stacked for t in p["targets"])
    assert any("mcgw_upstream_serving_priority" in a.get("expr", "") for a in board["annotations"]["list"])


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """promtool parses each query (Grafana's variables filled in) as the expression of a recording rule."""
    queries = dashboard_queries(dashboard())
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": substitute(expr)} for i, (_, expr) in enumerate(queries)]}]}
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    result = run_promtool(["check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_a_broken_query_fails_the_parse_check(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"record": "dashboard:broken", "expr": "sum by (cluster) (rate(mcgw_upstream_requests_total[5m])"}]}]}))
    assert run_promtool(["check", "rules", str(path)]).returncode != 0


def test_the_dashboard_and_alerts_name_only_metrics_mcgw_exports() -> None:
    exported = exported_metric_names()
    queries = dashboard_queries(dashboard()) + [(rule["alert"], rule["expr"]) for rule in alert_rules()]
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        assert names <= exported, f"{where}: {sorted(names - exported)} not exported by mcgw"


def test_the_metric_name_reader_sees_through_functions_groupings_and_matchers() -> None:
    expr = ('sum by (service, priority) (rate(a_total{x=~"b_total|$c"}[$__rate_interval] offset 1m)) / on (service) '
            'group_left(source) max without (le) (c_bucket) > bool 0.5 or absent(d)')
    assert metric_names(expr) == {"a_total", "c_bucket", "d"}


# Series named and labelled as mcgw exports them, so every dashboard query has something to return.
_GATEWAY = 'cluster="east",gateway="shop/web",service="shop/cart:80"'
_SERIES = {
    f'mcgw_upstream_requests_total{{{_GATEWAY},source_cluster="east",priority="0"}}': "0+60x20",
    f'mcgw_upstream_requests_total{{{_GATEWAY},source_cluster="west",priority="1"}}': "0+6x20",
    f'mcgw_upstream_errors_total{{{_GATEWAY},source_cluster="east",priority="0"}}': "0+1x20",
    f'mcgw_upstream_errors_total{{{_GATEWAY},source_cluster="west",priority="1"}}': "0x20",
    f'mcgw_upstream_requests_in_flight{{{_GATEWAY},source_cluster="east",priority="0"}}': "3x20",
    f'mcgw_upstream_serving_priority{{{_GATEWAY}}}': "0x9 1x11",
    f'mcgw_failovers_total{{{_GATEWAY}}}': "1x9 2x11",
    'mcgw_ready': "1x20",
    'mcgw_cluster_available{cluster="east"}': "1x20",
    'mcgw_cluster_available{cluster="west"}': "0x20",
    'mcgw_mcs_lost_clusters{state="kept"}': "1x20",
    'mcgw_mcs_lost_clusters{state="withdrawn"}': "0x20",
    'mcgw_mcs_ready_endpoints{service="shop/cart",source_cluster="east"}': "2x20",
    'xds_nacks_total{type="cds"}': "0x9 1x11",
    'xds_streams{mode="sotw"}': "2x20",
}


def test_the_test_series_are_named_as_mcgw_exports_them() -> None:
    assert {re.sub(r"\{.*", "", series) for series in _SERIES} <= exported_metric_names()


def test_every_dashboard_query_returns_data_from_mcgw_shaped_series(tmp_path: Path) -> None:
    """Evaluated by promtool's engine at the moment the priority changes: a query that names a missing metric,
    or divides two sides whose labels never match, returns nothing and fails."""
    queries = dashboard_queries(dashboard())
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": series, "values": values} for series, values in _SERIES.items()],
            "promql_expr_test": [
                {"expr": f"count({substitute(expr)}) > bool 0", "eval_time": "10m",
                 "exp_samples": [{"labels": "{}", "value": 1}]}
                for _, expr in queries],
        }],
    }
    path = tmp_path / "dashboard_test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = run_promtool(["test", "rules", str(path)])
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
