"""A backend port's appProtocol (GEP-1911): h2c backends get HTTP/2 with prior knowledge, for Services and
ServiceImports alike; WebSocket over TLS without a BackendTLSPolicy, another kubernetes.io/ name, a port that
is not TCP, and WebSocket to a GRPCRoute are UnsupportedProtocol; any other value keeps HTTP/1.1."""

from __future__ import annotations

import time
from typing import Any

import pytest
from google.protobuf import json_format

from mcgw import ir
from mcgw.objects.model import AnyObject, parse_object
from mcgw.runtime.incremental import McsInput
from mcgw.runtime.pipeline import ClusterOutput, ClusterTranslator, translate_cluster
from mcgw.semantics.mcs.exports import compute_mcs
from tests.envoy_validate import validate
from tests.mcgw.manifests import V1, public_gateway

H2C_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def _objects(app_protocol: str | None, *, exported: bool = False, protocol: str = "TCP",
             kind: str = "HTTPRoute") -> list[AnyObject]:
    port: dict[str, Any] = {"name": "http", "port": 8081, "targetPort": 3001, "protocol": protocol}
    if app_protocol is not None:
        port["appProtocol"] = app_protocol
    backend_ref: dict[str, Any] = {"name": "echo", "port": 8081}
    if exported:
        backend_ref |= {"group": "multicluster.x-k8s.io", "kind": "ServiceImport"}
    documents = [
        *public_gateway(),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": "infra",
                                                             "creationTimestamp": "2026-01-01T00:00:00Z"},
         "spec": {"ports": [port]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "echo-1", "namespace": "infra", "labels": {"kubernetes.io/service-name": "echo"}},
         "addressType": "IPv4", "ports": [{"name": "http", "port": 3001}],
         "endpoints": [{"addresses": ["198.18.1.10"], "conditions": {"ready": True}}]},
        {"apiVersion": V1, "kind": kind, "metadata": {"name": "echo", "namespace": "infra", "generation": 1},
         "spec": {"parentRefs": [{"name": "public"}], "rules": [{"backendRefs": [backend_ref]}]}},
    ]
    if exported:
        documents.append({"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport",
                          "metadata": {"name": "echo", "namespace": "infra",
                                       "creationTimestamp": "2026-01-01T00:00:00Z"}})
    return [parse_object(document, "test") for document in documents]


def _translate(objects: list[AnyObject], exported: bool = False) -> ClusterOutput:
    mcs = McsInput(compute_mcs({"east": objects}, {}, time.time()).view.services, {}) if exported else None
    return translate_cluster("east", objects, mcs=mcs)


def _backend(output: ClusterOutput) -> ir.BackendIR:
    (gateway,) = output.gateways
    ir.validate(gateway)
    (backend,) = gateway.http[0].virtual_hosts[0].routes[0].backends
    return backend


def _clusters(output: ClusterOutput) -> list[dict[str, Any]]:
    return [json_format.MessageToDict(m) for messages in output.resources.values() for m in messages
            if m.DESCRIPTOR.name == "Cluster"]


def _resolved_refs(output: ClusterOutput, kind: str = "HTTPRoute") -> dict[str, Any]:
    conditions = output.statuses()[kind]["infra/echo"]["parents"][0]["conditions"]
    found: dict[str, Any] = next(c for c in conditions if c["type"] == "ResolvedRefs")
    return found


@pytest.mark.parametrize("exported", [False, True], ids=["Service", "ServiceImport"])
def test_an_h2c_port_gets_an_http2_cluster_that_envoy_accepts(exported: bool) -> None:
    output = _translate(_objects("kubernetes.io/h2c", exported=exported), exported)
    backend = _backend(output)
    assert backend.valid
    assert backend.h2c
    assert backend.kind == ("ServiceImport" if exported else "Service")
    (cluster,) = _clusters(output)
    options = cluster["typedExtensionProtocolOptions"][H2C_OPTIONS]
    assert options["explicitHttpConfig"] == {"http2ProtocolOptions": {}}
    if exported:  # its active health checks speak HTTP/2 too: an h2c-only backend would fail HTTP/1.1 probes
        assert cluster["healthChecks"][0]["httpHealthCheck"]["codecClientType"] == "HTTP2"
    validate([m for messages in output.resources.values() for m in messages])


@pytest.mark.parametrize("app_protocol", [None, "kubernetes.io/ws", "example.com/custom", "http"])
def test_other_app_protocols_keep_http1_and_resolve(app_protocol: str | None) -> None:
    output = _translate(_objects(app_protocol))
    backend = _backend(output)
    assert backend.valid
    assert not backend.h2c
    assert "typedExtensionProtocolOptions" not in _clusters(output)[0]
    assert _resolved_refs(output)["status"] == "True"


@pytest.mark.parametrize("exported", [False, True], ids=["Service", "ServiceImport"])
def test_websocket_over_tls_is_an_unsupported_protocol(exported: bool) -> None:
    """mcgw has no BackendTLSPolicy, so it cannot speak wss upstream: the backend is unusable (500)."""
    output = _translate(_objects("kubernetes.io/wss", exported=exported), exported)
    condition = _resolved_refs(output)
    assert (condition["status"], condition["reason"]) == ("False", "UnsupportedProtocol")
    assert "kubernetes.io/wss" in condition["message"]
    assert not _backend(output).valid
    assert _clusters(output) == []


@pytest.mark.parametrize("exported", [False, True], ids=["Service", "ServiceImport"])
def test_a_kubernetes_standard_protocol_mcgw_does_not_speak_is_unsupported(exported: bool) -> None:
    """KEP-3726 reserves kubernetes.io/ for its standard protocols: one mcgw does not know is not HTTP/1.1."""
    output = _translate(_objects("kubernetes.io/quic", exported=exported), exported)
    condition = _resolved_refs(output)
    assert (condition["status"], condition["reason"]) == ("False", "UnsupportedProtocol")
    assert "appProtocol kubernetes.io/quic" in condition["message"]
    assert not _backend(output).valid
    assert _clusters(output) == []


@pytest.mark.parametrize("exported", [False, True], ids=["Service", "ServiceImport"])
def test_a_port_that_is_not_tcp_is_unsupported_for_http(exported: bool) -> None:
    output = _translate(_objects(None, exported=exported, protocol="UDP"), exported)
    condition = _resolved_refs(output)
    assert (condition["status"], condition["reason"]) == ("False", "UnsupportedProtocol")
    assert "port 8081 is UDP, not TCP: HTTPRoutes reach their backends over TCP" in condition["message"]
    assert not _backend(output).valid


@pytest.mark.parametrize("app_protocol", ["kubernetes.io/ws", "kubernetes.io/wss"])
def test_a_grpcroute_to_a_websocket_port_is_unsupported(app_protocol: str) -> None:
    output = _translate(_objects(app_protocol, kind="GRPCRoute"))
    condition = _resolved_refs(output, "GRPCRoute")
    assert (condition["status"], condition["reason"]) == ("False", "UnsupportedProtocol")
    assert "a GRPCRoute speaks gRPC over HTTP/2" in condition["message"]
    assert not _backend(output).valid


@pytest.mark.parametrize("app_protocol", [None, "kubernetes.io/h2c", "example.com/custom"])
def test_a_grpcroute_speaks_http2_to_other_ports(app_protocol: str | None) -> None:
    output = _translate(_objects(app_protocol, kind="GRPCRoute"))
    assert _resolved_refs(output, "GRPCRoute")["status"] == "True"
    backend = _backend(output)
    assert backend.valid
    assert backend.grpc
    (cluster,) = _clusters(output)
    assert cluster["typedExtensionProtocolOptions"][H2C_OPTIONS]["explicitHttpConfig"] == {"http2ProtocolOptions": {}}


def test_an_app_protocol_change_reaches_the_cluster_incrementally() -> None:
    translator = ClusterTranslator("east")
    for app_protocol in [None, "kubernetes.io/h2c", "kubernetes.io/wss", "kubernetes.io/h2c", "kubernetes.io/quic",
                         None]:
        objects = _objects(app_protocol)
        incremental, full = translator.translate(objects), _translate(objects)
        assert incremental.gateways == full.gateways
        assert incremental.statuses() == full.statuses()
        assert _clusters(incremental) == _clusters(full)



def test_every_listener_lets_websocket_upgrades_through_and_detects_the_codec() -> None:
    """Upgrades pass on every route, with or without kubernetes.io/ws; HTTP/2 with prior knowledge is
    accepted downstream (the codec is detected), so h2c clients reach h2c backends."""
    output = _translate(_objects("kubernetes.io/ws"))
    (listener,) = [json_format.MessageToDict(m) for messages in output.resources.values() for m in messages
                   if m.DESCRIPTOR.name == "Listener"]
    manager = listener["filterChains"][0]["filters"][0]["typedConfig"]
    assert manager["upgradeConfigs"] == [{"upgradeType": "websocket"}]
    assert manager.get("codecType", "AUTO") == "AUTO"
