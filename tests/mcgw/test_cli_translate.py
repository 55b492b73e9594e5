"""``mcgw translate``: what a user sees for a good directory and for each kind of bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "translate"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcgw", "translate", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=False)


@pytest.fixture
def clusterset_dir(tmp_path: Path) -> Path:
    target = tmp_path / "clusterset"
    shutil.copytree(EXAMPLE, target)
    return target


def test_translate_prints_statuses_and_envoy_resources_per_cluster() -> None:
    result = _run("-f", str(EXAMPLE), "-o", "json")
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert set(output) == {"east", "west"}
    east = output["east"]
    route_conditions = east["status"]["HTTPRoute"]["shop/shop"]["parents"][0]["conditions"]
    assert [(cond["type"], cond["reason"]) for cond in route_conditions] == [
        ("Accepted", "Accepted"), ("ResolvedRefs", "BackendNotFound")]
    resources = east["xds"]["infra/public"]
    assert [listener["name"] for listener in resources["listeners"]] == ["infra/public/8080"]
    assert {c["name"] for c in resources["clusters"]} == {"service/shop/cart/80"}  # shared by every rule
    # west has a Gateway without routes: a listener with no virtual host answers 404 to everything.
    assert output["west"]["xds"]["infra/public"]["routes"][0].get("virtualHosts", []) == []


def test_cluster_filter_and_yaml_output() -> None:
    result = _run("-f", str(EXAMPLE), "--cluster", "west")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("west:\n")
    unknown = _run("-f", str(EXAMPLE), "--cluster", "north")
    assert unknown.returncode == 2
    assert "no cluster 'north'" in unknown.stderr
    assert "east, west" in unknown.stderr


def test_a_refused_object_is_left_out_and_the_rest_translated(clusterset_dir: Path) -> None:
    bad = clusterset_dir / "east" / "zz-bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: ok, namespace: a}\n---\n"
                   "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: broken}\n"
                   "spec: {gatewayClassName: mcgw, listeners: [{name: http, port: eighty, protocol: HTTP}]}\n")
    result = _run("-f", str(clusterset_dir), "-o", "json")
    assert result.returncode == 2
    assert f"{bad} document 2: Gateway 'broken': spec.listeners.0.port" in result.stderr
    assert "left out" in result.stderr
    output = json.loads(result.stdout)
    assert "default/broken" not in output["east"]["xds"]  # the refused Gateway is not translated
    assert output["east"]["xds"]["infra/public"]["listeners"]  # the cluster's other Gateway is


def test_a_kind_mcgw_does_not_read_is_listed_and_the_rest_translated(clusterset_dir: Path) -> None:
    extra = clusterset_dir / "east" / "other.yaml"
    extra.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n---\n"
                     "apiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {name: tls}\n")
    result = _run("-f", str(clusterset_dir), "-o", "json")
    assert result.returncode == 0, result.stderr
    assert f"{extra} document 1: unsupported kind 'Deployment', skipped" in result.stderr
    assert f"{extra} document 2: 'ListenerSet' of gateway.networking.k8s.io is not served by mcgw, skipped" \
        in result.stderr
    assert json.loads(result.stdout)["east"]["xds"]["infra/public"]["listeners"]


def test_clusterset_file_must_match_directories(clusterset_dir: Path) -> None:
    (clusterset_dir / "clusterset.yaml").write_text("clusters:\n  - {name: east}\n")
    result = _run("-f", str(clusterset_dir))
    assert result.returncode == 2
    assert "directories not listed as clusters: west" in result.stderr
    (clusterset_dir / "clusterset.yaml").write_text("clusters:\n  - {name: east, failoverOrder: [moon]}\n"
                                                    "  - {name: west}\n")
    result = _run("-f", str(clusterset_dir))
    assert result.returncode == 2
    assert "failoverOrder names unknown clusters moon" in result.stderr


def test_duplicate_objects_are_an_error_naming_both_places(clusterset_dir: Path) -> None:
    copy = clusterset_dir / "east" / "zz-copy.yaml"
    copy.write_text((clusterset_dir / "east" / "gateway.yaml").read_text())
    result = _run("-f", str(clusterset_dir))
    assert result.returncode == 2
    assert f"{copy} document 1: GatewayClass mcgw is also defined in" in result.stderr
    assert "gateway.yaml document 1" in result.stderr


def test_translate_shows_each_service_imports_levels_and_weights(tmp_path: Path) -> None:
    target = tmp_path / "failover"
    shutil.copytree(REPO / "examples" / "failover", target)
    (target / "east" / "policy.yaml").write_text("""\
apiVersion: mcgw.io/v1alpha2
kind: FailoverPolicy
metadata: {name: cart, namespace: shop}
spec:
  targetRefs: [{group: multicluster.x-k8s.io, kind: ServiceImport, name: cart}]
  levels:
    - clusters: [{local: true, weight: 3}, {name: central, weight: 1}]
  exclude: [{region: us-west}]
  spillover: {mode: Gradual, minHealthyPercent: 50}
""")
    result = _run("-f", str(target), "--cluster", "east", "-o", "json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)["east"]["xds"]["infra/public"]["failover"]["serviceimport/shop/cart/80"]
    assert shown == {
        "spillover": "Gradual: a level keeps all its traffic down to 50% healthy endpoints",
        "levels": [{"priority": 0, "clusters": [
            {"cluster": "central", "zone": "", "endpoints": 2, "healthy": 1, "draining": 1, "weight": 100,
             "share": "25%"},
            {"cluster": "east", "zone": "", "endpoints": 2, "healthy": 1, "draining": 1, "weight": 300,
             "share": "75%"}]}]}
