"""The pinned versions of the test bed's Go-built parts agree with each other."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _requires(go_mod: Path) -> dict[str, str]:
    text = go_mod.read_text()
    return dict(re.findall(r"^\s*(?:require\s+)?([\w./-]+)\s+(v[\w.+-]+)\s*$", text, re.M))


def test_crd_pins_match_go_module() -> None:
    pins = yaml.safe_load((REPO / "crds" / "upstream.yaml").read_text())
    required = _requires(REPO / "hack" / "crds" / "go.mod")
    for pin in pins.values():
        assert required[pin["module"]] == pin["version"], pin["module"]


def test_kube_staging_modules_replaced_at_matching_release() -> None:
    go_mod = (REPO / "hack" / "kube" / "go.mod").read_text()
    kube = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes (v1\.(\d+)\.(\d+))\b", go_mod, re.M)
    assert kube, "hack/kube/go.mod must require k8s.io/kubernetes directly"
    staging = f"v0.{kube.group(2)}.{kube.group(3)}"
    replaces = re.findall(r"^\s+(k8s\.io/[\w-]+) => (k8s\.io/[\w-]+) (v\S+)$", go_mod, re.M)
    assert len(replaces) >= 30
    for old, new, version in replaces:
        assert old == new
        assert version == staging, f"{old} is replaced at {version}, kubernetes {kube.group(1)} needs {staging}"


def test_conformance_suite_matches_gateway_api_crds() -> None:
    """The suite checks the installed CRDs' bundle version; it must test the version the test bed installs."""
    pins = yaml.safe_load((REPO / "crds" / "upstream.yaml").read_text())
    required = _requires(REPO / "hack" / "conformance" / "go.mod")
    crds = pins["gateway-api"]["version"]
    assert required["sigs.k8s.io/gateway-api/conformance"] == crds
    assert required["sigs.k8s.io/gateway-api"] == crds


def test_helm_speaks_the_test_bed_kubernetes_version() -> None:
    """helm's client-go is the minor release of the kube-apiserver its rendered output is checked against."""
    helm = (REPO / "hack" / "helm" / "go.mod").read_text()
    assert re.search(r"^require helm\.sh/helm/v4 v4\.\d+\.\d+$", helm, re.M), "hack/helm must require helm directly"
    client_go = re.search(r"^\s+k8s\.io/client-go v0\.(\d+)\.\d+\b", helm, re.M)
    kube_mod = (REPO / "hack" / "kube" / "go.mod").read_text()
    kube = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes v1\.(\d+)\.\d+\b", kube_mod, re.M)
    assert client_go, "hack/helm/go.mod lists no k8s.io/client-go"
    assert kube, "hack/kube/go.mod lists no k8s.io/kubernetes"
    assert client_go.group(1) == kube.group(1)
