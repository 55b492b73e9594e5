"""GRPCRoute end to end through the pipeline: what Envoy is told for gRPC requests and backends.

The golden cases (testdata/routes/grpcroute, testdata/xds/grpcroute) hold the statuses and the whole
output; these tests name the behaviours one by one.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from google.protobuf import json_format

from mcgw import ir
from mcgw.objects.model import AnyObject, parse_object
from mcgw.runtime.incremental import McsInput
from mcgw.runtime.pipeline import ClusterOutput, translate_cluster
from mcgw.semantics.mcs.exports import compute_mcs
from tests.envoy_validate import validate
from tests.mcgw.manifests import V1, public_gateway

HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def _objects(*, exported: bool = False, matches: list[dict[str, Any]] | None = None,
             http_route_too: bool = False) -> list[AnyObject]:
    backend_ref: dict[str, Any] = {"name": "echo", "port": 8081}
    if exported:
        backend_ref |= {"group": "multicluster.x-k8s.io", "kind": "ServiceImport"}
    rule: dict[str, Any] = {"backendRefs": [backend_ref]}
    if matches is not None:
        rule["matches"] = matches
    documents = [
        *public_gateway(),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": "infra",
                                                             "creationTimestamp": "2026-01-01T00:00:00Z"},
         "spec": {"ports": [{"name": "grpc", "port": 8081, "targetPort": 3001}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "echo-1", "namespace": "infra", "labels": {"kubernetes.io/service-name": "echo"}},
         "addressType": "IPv4", "ports": [{"name": "grpc", "port": 3001}],
         "endpoints": [{"addresses": ["198.18.1.10"], "conditions": {"ready": True}}]},
        {"apiVersion": V1, "kind": "GRPCRoute", "metadata": {"name": "echo", "namespace": "infra", "generation": 1},
         "spec": {"parentRefs": [{"name": "public"}], "hostnames": ["grpc.example.com"], "rules": [rule]}},
    ]
    if http_route_too:
        documents.append({"apiVersion": V1, "kind": "HTTPRoute",
                          "metadata": {"name": "echo", "namespace": "infra", "generation": 1},
                          "spec": {"parentRefs": [{"name": "public"}], "hostnames": ["web.example.com"],
                                   "rules": [{"backendRefs": [{"name": "echo", "port": 8081}]}]}})
    if exported:
        documents.append({"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport",
                          "metadata": {"name": "echo", "namespace": "infra",
                                       "creationTimestamp": "2026-01-01T00:00:00Z"}})
    return [parse_object(document, "test") for document in documents]


def _translate(objects: list[AnyObject], exported: bool = False) -> ClusterOutput:
    mcs = McsInput(compute_mcs({"east": objects}, {}, time.time()).view.services, {}) if exported else None
    output = translate_cluster("east", objects, mcs=mcs)
    for gateway in output.gateways:
        assert not ir.validate(gateway)
    validate([m for messages in output.resources.values() for m in messages])  # real Envoy accepts it
    return output


def _messages(output: ClusterOutput, kind: str) -> list[dict[str, Any]]:
    return [json_format.MessageToDict(m) for messages in output.resources.values() for m in messages
            if m.DESCRIPTOR.name == kind]


def _grpc_routes(output: ClusterOutput) -> list[dict[str, Any]]:
    (table,) = _messages(output, "RouteConfiguration")
    (vhost,) = [v for v in table["virtualHosts"] if "grpc.example.com" in v["domains"]]
    routes: list[dict[str, Any]] = vhost["routes"]
    return routes


@pytest.mark.parametrize(("method", "expected"), [
    ({"service": "pkg.Echo", "method": "Say"}, {"path": "/pkg.Echo/Say"}),
    ({"service": "pkg.Echo"}, {"pathSeparatedPrefix": "/pkg.Echo"}),
    ({"method": "Say"}, {"safeRegex": {"regex": "/[^/]+/Say"}}),
    ({"type": "RegularExpression", "service": "pkg\\..*", "method": "S.*"}, {"safeRegex": {"regex": "/pkg\\..*/S.*"}}),
], ids=["service-and-method", "service", "method", "regex"])
def test_a_method_match_is_a_match_on_the_path(method: dict[str, Any], expected: dict[str, Any]) -> None:
    (route,) = _grpc_routes(_translate(_objects(matches=[{"method": method}])))
    match = {k: v for k, v in route["match"].items() if k != "headers"}
    assert match == expected


def test_a_rule_without_matches_takes_every_grpc_request() -> None:
    (route,) = _grpc_routes(_translate(_objects()))
    assert route["match"] == {"prefix": "/"}


def test_grpc_backends_speak_http2_on_a_cluster_apart_from_the_http_routes() -> None:
    """The HTTPRoute to the same Service port keeps HTTP/1.1; the GRPCRoute's cluster speaks HTTP/2."""
    clusters = {c["name"]: c for c in _messages(_translate(_objects(http_route_too=True)), "Cluster")}
    assert set(clusters) == {"service/infra/echo/8081", "service/infra/echo/8081/grpc"}
    grpc = clusters["service/infra/echo/8081/grpc"]
    assert grpc["typedExtensionProtocolOptions"][HTTP_OPTIONS]["explicitHttpConfig"] == {"http2ProtocolOptions": {}}
    assert "typedExtensionProtocolOptions" not in clusters["service/infra/echo/8081"]


def test_a_service_import_backend_fails_over_with_grpc_health_checks_and_retries_unavailable() -> None:
    output = _translate(_objects(exported=True), exported=True)
    (cluster,) = _messages(output, "Cluster")
    assert cluster["name"].endswith("/grpc")
    (check,) = cluster["healthChecks"]
    assert "grpcHealthCheck" in check
    assert "httpHealthCheck" not in check
    (route,) = _grpc_routes(output)
    retry_on = route["route"]["retryPolicy"]["retryOn"].split(",")
    assert {"unavailable", "reset", "refused-stream", "connect-failure"} <= set(retry_on)


def test_grpc_routes_have_no_route_timeout_so_long_streams_live() -> None:
    """Envoy's default route timeout (15 s) would end every longer stream; the client's deadline governs."""
    (route,) = _grpc_routes(_translate(_objects()))
    assert route["route"]["timeout"] == "0s"
