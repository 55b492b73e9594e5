"""Gateway parameters: how a Gateway's EnvoyProxy merges over its class's, and what the Envoys get."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2

from mcgw.objects.model import EnvoyProxy, Gateway, GatewayClass, parse_object
from mcgw.provisioning import ProxySettings, settings_from
from mcgw.semantics.gateway.parameters import (
    BOOTSTRAP_FIELDS,
    RESERVED_BOOTSTRAP_FIELDS,
    class_parameters,
    gateway_parameters,
)


def _proxy(name: str, spec: dict[str, Any]) -> EnvoyProxy:
    proxy = parse_object({"apiVersion": "mcgw.io/v1alpha1", "kind": "EnvoyProxy",
                          "metadata": {"name": name, "namespace": "infra"}, "spec": spec}, name)
    assert isinstance(proxy, EnvoyProxy)
    return proxy


def _resolve(class_spec: dict[str, Any] | None, gateway_spec: dict[str, Any] | None) -> ProxySettings:
    proxies = {}
    class_ref = gateway_ref = None
    if class_spec is not None:
        proxies[("infra", "defaults")] = _proxy("defaults", class_spec)
        class_ref = {"group": "mcgw.io", "kind": "EnvoyProxy", "name": "defaults", "namespace": "infra"}
    if gateway_spec is not None:
        proxies[("infra", "own")] = _proxy("own", gateway_spec)
        gateway_ref = {"group": "mcgw.io", "kind": "EnvoyProxy", "name": "own"}
    gateway_class = parse_object({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                                  "metadata": {"name": "mcgw"},
                                  "spec": {"controllerName": "mcgw.io/gateway-controller",
                                           **({"parametersRef": class_ref} if class_ref else {})}}, "class")
    gateway = parse_object({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
                            "metadata": {"name": "gw", "namespace": "infra"},
                            "spec": {"gatewayClassName": "mcgw", "listeners": [
                                {"name": "http", "port": 80, "protocol": "HTTP"}],
                                **({"infrastructure": {"parametersRef": gateway_ref}} if gateway_ref else {})}},
                           "gateway")
    assert isinstance(gateway_class, GatewayClass)
    assert isinstance(gateway, Gateway)
    defaults, problem = class_parameters(gateway_class, proxies)
    assert problem is None
    merged, problem = gateway_parameters(gateway, defaults, proxies)
    assert problem is None
    return settings_from(merged)


def test_without_parameters_mcgw_defaults_apply() -> None:
    settings = _resolve(None, None)
    assert settings == ProxySettings()
    assert (settings.image, settings.replicas, settings.service_type) == ("envoyproxy/envoy:v1.40.0", 1,
                                                                          "LoadBalancer")


def test_the_gateway_overrides_its_class_field_by_field() -> None:
    settings = _resolve({"image": "class/envoy:1", "replicas": 2, "logLevel": "warning",
                         "service": {"type": "NodePort", "annotations": {"a": "1"}}},
                        {"logLevel": "debug", "service": {"externalTrafficPolicy": "Local"}})
    assert settings.image == "class/envoy:1"
    assert settings.replicas == 2
    assert settings.log_level == "debug"
    # service merges field by field: the class's type and annotations stay, the Gateway adds its policy.
    assert (settings.service_type, dict(settings.service_annotations), settings.external_traffic_policy) == (
        "NodePort", {"a": "1"}, "Local")


def test_replicas_and_autoscaling_are_one_choice() -> None:
    scaled = _resolve({"replicas": 3}, {"autoscaling": {"maxReplicas": 6}})
    assert scaled.autoscaling is not None
    assert (scaled.autoscaling.min_replicas, scaled.autoscaling.max_replicas) == (1, 6)
    fixed = _resolve({"autoscaling": {"minReplicas": 2, "maxReplicas": 6}}, {"replicas": 4})
    assert fixed.autoscaling is None
    assert fixed.replicas == 4


def test_resources_replace_the_defaults_and_quantities_are_strings() -> None:
    settings = _resolve({"resources": {"limits": {"cpu": 2, "memory": "1Gi"}}}, None)
    assert settings.resources == {"limits": {"cpu": "2", "memory": "1Gi"}}


def test_the_bootstrap_fields_are_envoys() -> None:
    proto = {field.name for field in bootstrap_pb2.Bootstrap.DESCRIPTOR.fields}
    assert proto == BOOTSTRAP_FIELDS | RESERVED_BOOTSTRAP_FIELDS


def test_envoyproxies_are_read_from_files_and_watched_like_every_registered_kind(tmp_path: Path) -> None:
    from mcgw.objects.kinds import BY_NAME
    from mcgw.providers.files.manifests import read_manifest_file

    assert BY_NAME["EnvoyProxy"].path == "/apis/mcgw.io/v1alpha1/envoyproxies"
    assert BY_NAME["EnvoyProxy"].gateway_layer  # a change re-evaluates the classes and Gateways naming it
    path = tmp_path / "proxy.yaml"
    path.write_text("apiVersion: mcgw.io/v1alpha1\nkind: EnvoyProxy\nmetadata: {name: p, namespace: infra}\n"
                    "spec: {replicas: 2, logLevel: debug}\n")
    (proxy,) = read_manifest_file(path).objects
    assert isinstance(proxy, EnvoyProxy)
    assert (proxy.spec.replicas, proxy.spec.log_level) == (2, "debug")
