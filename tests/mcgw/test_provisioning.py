"""Provisioning's rendering: the objects that run a Gateway's Envoys, from the Gateway and its settings.

Golden cases in ``testdata/provisioning`` (the ConfigMap's bootstrap is shown parsed, so that a change to
it reads as YAML); the tests below pin what the goldens cannot show on their own: what changes with
the listeners and what does not, names, and that real Envoy accepts the bootstrap.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcgw.app.config import split_listen
from mcgw.dataplane.bootstrap import read_template
from mcgw.objects.model import EnvoyProxy, Gateway, parse_object
from mcgw.provisioning import (
    XDS_CREDENTIALS_DIR,
    ProxySettings,
    Target,
    gateway_label_value,
    object_name,
    provisioned_tls,
    render_credentials,
    render_gateway,
    settings_from,
)
from mcgw.provisioning.bootstrap import XdsTarget
from mcgw.provisioning.ca import CertificateAuthority, spiffe_uri
from mcgw.provisioning.render import CONFIG_DIR
from tests.envoy_validate import validate_bootstrap
from tests.mcgw import golden

TESTDATA = Path(__file__).parent / "testdata" / "provisioning"


def _settings(parameters: dict[str, Any] | None) -> ProxySettings:
    """The settings an EnvoyProxy with this spec gives (``None``: no parameters)."""
    if parameters is None:
        return settings_from(None)
    proxy = parse_object({"apiVersion": "mcgw.io/v1alpha1", "kind": "EnvoyProxy",
                          "metadata": {"name": "p", "namespace": "infra"}, "spec": parameters}, "case")
    assert isinstance(proxy, EnvoyProxy)
    return settings_from(proxy.spec)


def _target(case: dict[str, Any]) -> Target:
    host, port = split_listen(case["xds"])
    tls = None if case.get("insecure") else provisioned_tls(host)  # mTLS unless the case runs xds.insecure
    return Target(case["cluster"], XdsTarget(host, port, tls=tls), read_template(),
                  tuple(ipaddress.ip_network(p) for p in case.get("pools", [])))


def _readable(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    shown = copy.deepcopy(objects)
    for obj in shown:
        if obj["kind"] == "ConfigMap":
            obj["data"] = {key: yaml.safe_load(value) for key, value in obj["data"].items()}
    return shown


def _render(documents: list[Any]) -> Any:
    case = documents[0]["case"]
    (gateway,) = [parse_object(doc, "case") for doc in documents[1:]]
    assert isinstance(gateway, Gateway)
    return _readable(render_gateway(_target(case), gateway, _settings(case.get("parameters"))))


@pytest.mark.parametrize("case", golden.cases(TESTDATA), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_rendering_golden(case: Path, update_golden: bool) -> None:
    golden.check(case, _render, update_golden)


def _gateway(listeners: list[dict[str, Any]], **spec: Any) -> Gateway:
    parsed = parse_object({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                           "metadata": {"name": "public", "namespace": "infra", "uid": "u-1"},
                           "spec": {"gatewayClassName": "mcgw", "listeners": listeners, **spec}}, "test")
    assert isinstance(parsed, Gateway)
    return parsed


TARGET = Target("east", XdsTarget("198.18.0.1", 18000), read_template())


def _by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in objects}


def test_changing_listeners_changes_only_the_service() -> None:
    before = _by_kind(render_gateway(TARGET, _gateway([{"name": "http", "port": 80, "protocol": "HTTP"}]),
                                     ProxySettings()))
    after = _by_kind(render_gateway(TARGET, _gateway([{"name": "http", "port": 80, "protocol": "HTTP"},
                                                      {"name": "alt", "port": 8080, "protocol": "HTTP"}]),
                                    ProxySettings()))
    assert [p["port"] for p in after["Service"]["spec"]["ports"]] == [80, 8080]
    # The pod template (so the pods), the bootstrap and everything else stay exactly as they were.
    assert {kind: obj for kind, obj in after.items() if kind != "Service"} == \
        {kind: obj for kind, obj in before.items() if kind != "Service"}
    assert after["Service"]["metadata"]["annotations"] != before["Service"]["metadata"]["annotations"]


def test_a_settings_change_rolls_the_pods_and_a_bootstrap_change_does_too() -> None:
    gateway = _gateway([{"name": "http", "port": 80, "protocol": "HTTP"}])
    base = _by_kind(render_gateway(TARGET, gateway, ProxySettings()))["Deployment"]["spec"]["template"]
    image = _by_kind(render_gateway(TARGET, gateway, ProxySettings(image="envoy:other")))["Deployment"]
    moved = Target("east", XdsTarget("198.18.0.2", 18000), read_template())
    xds = _by_kind(render_gateway(moved, gateway, ProxySettings()))["Deployment"]["spec"]["template"]
    assert image["spec"]["template"] != base
    # Envoy reads the bootstrap only at start: a new xDS address must restart the pods.
    assert xds["metadata"]["annotations"]["mcgw.io/bootstrap-hash"] != \
        base["metadata"]["annotations"]["mcgw.io/bootstrap-hash"]


@pytest.mark.parametrize("name", ["a", "public", "a.b", "a-b", "x" * 58, "x" * 59, "x" * 253,
                                  "1st-gateway", "gw.example.com"])
def test_object_names_are_service_names(name: str) -> None:
    generated = object_name(name)
    assert len(generated) <= 63
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", generated)
    label = gateway_label_value(name)
    assert len(label) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", label)


def test_names_of_different_gateways_differ() -> None:
    names = ["a.b", "a-b", "x" * 59, "x" * 60, "x" * 253, "x" * 252 + "y"]
    assert len({object_name(n) for n in names}) == len(names)
    assert len({gateway_label_value(n) for n in ["x" * 64, "x" * 65, "x" * 63]}) == 3
    assert object_name("public") == "mcgw-public"
    assert gateway_label_value("public") == "public"


def test_without_a_uid_there_is_no_owner_reference() -> None:
    parsed = parse_object({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                           "metadata": {"name": "public", "namespace": "infra"},
                           "spec": {"gatewayClassName": "mcgw",
                                    "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}, "test")
    assert isinstance(parsed, Gateway)
    assert all("ownerReferences" not in obj["metadata"] for obj in render_gateway(TARGET, parsed, ProxySettings()))


@pytest.mark.parametrize("case", golden.cases(TESTDATA), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_envoy_accepts_the_bootstrap_with_the_pod_arguments(case: Path, tmp_path: Path) -> None:
    documents = [doc for doc in yaml.safe_load_all(case.read_text()) if doc is not None]
    gateway = parse_object(documents[1], "case")
    assert isinstance(gateway, Gateway)
    objects = _by_kind(render_gateway(_target(documents[0]["case"]), gateway,
                                      _settings(documents[0]["case"].get("parameters"))))
    # The pod's files as its volumes lay them out, under tmp_path: the ConfigMap (bootstrap, SDS files) and
    # the credentials Secret, so Envoy reads the SDS files and the certificates they name.
    def in_pod(text: str) -> str:
        return text.replace(CONFIG_DIR, f"{tmp_path}{CONFIG_DIR}").replace(XDS_CREDENTIALS_DIR,
                                                                           f"{tmp_path}{XDS_CREDENTIALS_DIR}")

    for file_name, text in objects["ConfigMap"]["data"].items():
        (tmp_path / CONFIG_DIR.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (tmp_path / CONFIG_DIR.lstrip("/") / file_name).write_text(in_pod(text))
    credentials = CertificateAuthority.generate().issue_client(
        spiffe_uri("mcgw", "east", "infra", "public"), dt.timedelta(hours=1))
    secret = render_credentials(gateway, credentials)
    (tmp_path / XDS_CREDENTIALS_DIR.lstrip("/")).mkdir(parents=True)
    for file_name, value in secret["data"].items():
        (tmp_path / XDS_CREDENTIALS_DIR.lstrip("/") / file_name).write_bytes(base64.b64decode(value))
    bootstrap = yaml.safe_load(in_pod(objects["ConfigMap"]["data"]["bootstrap.yaml"]))
    xds = next(c for c in bootstrap["static_resources"]["clusters"] if c["name"] == "mcgw-xds")
    if xds["type"] == "STRICT_DNS":  # validation resolves nothing, but keep it off the network anyway
        xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"][
            "address"] = "localhost"
    result = validate_bootstrap(bootstrap)
    assert result.returncode == 0, result.stdout + result.stderr
    args = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]
    node = args[args.index("--service-node") + 1]
    assert node == f"{gateway.metadata.namespace}/{gateway.metadata.name}/$(POD_NAME)"
    assert args[args.index("--service-cluster") + 1] == documents[0]["case"]["cluster"]
