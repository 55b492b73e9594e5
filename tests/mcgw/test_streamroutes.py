"""TCPRoute and UDPRoute end to end through the pipeline: listeners, statuses and what Envoy is told.

The golden cases (testdata/routes/streamroutes, testdata/xds/streamroutes) hold the whole output; these
tests name the behaviours one by one. Every output is checked by a real Envoy.
"""

from __future__ import annotations

import time
from typing import Any

from google.protobuf import json_format

from mcgw import ir
from mcgw.objects.model import AnyObject, parse_object
from mcgw.runtime.incremental import McsInput
from mcgw.runtime.pipeline import ClusterOutput, translate_cluster
from mcgw.semantics.mcs.exports import compute_mcs
from tests.envoy_validate import validate
from tests.mcgw.manifests import V1, public_gateway

TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


def _service(name: str, port: int = 5432) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "infra",
                                                             "creationTimestamp": "2026-01-01T00:00:00Z"},
         "spec": {"ports": [{"name": "db", "port": port, "targetPort": 3000}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": f"{name}-1", "namespace": "infra", "labels": {"kubernetes.io/service-name": name}},
         "addressType": "IPv4", "ports": [{"name": "db", "port": 3000}],
         "endpoints": [{"addresses": ["198.18.1.10"], "conditions": {"ready": True}}]},
    ]


def _route(kind: str, name: str, refs: list[dict[str, Any]], created: str = "2026-01-01T00:00:00Z",
           **parent: Any) -> dict[str, Any]:
    return {"apiVersion": V1, "kind": kind,
            "metadata": {"name": name, "namespace": "infra", "generation": 1, "creationTimestamp": created},
            "spec": {"parentRefs": [{"name": "public", **parent}], "rules": [{"backendRefs": refs}]}}


def _objects(*extra: dict[str, Any], listeners: list[dict[str, Any]] | None = None) -> list[AnyObject]:
    documents = public_gateway()
    documents[1]["spec"]["listeners"] = listeners if listeners is not None else [
        {"name": "http", "port": 80, "protocol": "HTTP"},
        {"name": "db", "port": 5432, "protocol": "TCP"},
        {"name": "dns", "port": 80, "protocol": "UDP"},
    ]
    documents += [*_service("db"), *_service("dns", 53), *extra]
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


def _listeners(output: ClusterOutput) -> dict[str, dict[str, Any]]:
    return {listener["name"]: listener for listener in _messages(output, "Listener")}


def _tcp_proxy(listener: dict[str, Any]) -> dict[str, Any]:
    (chain,) = listener["filterChains"]
    (proxy,) = chain["filters"]
    assert proxy["typedConfig"]["@type"] == TCP_PROXY
    config: dict[str, Any] = proxy["typedConfig"]
    return config


def _listener_status(output: ClusterOutput, name: str) -> dict[str, Any]:
    (gateway,) = output.evaluation.gateways.values()
    (listener,) = [item for item in gateway.listeners if item.name == name]
    return {"kinds": listener.supported_kinds, "attached": listener.attached_routes,
            "conditions": {cond.type: (cond.status, cond.reason) for cond in listener.conditions}}


def _route_conditions(output: ClusterOutput, kind: str, name: str) -> dict[str, tuple[str, str]]:
    result = output.evaluation.routes[(kind, "infra", name)]
    (conditions,) = result.parent_conditions
    return {cond.type: (cond.status, cond.reason) for cond in conditions}


def test_tcp_and_udp_listeners_are_programmed_and_a_udp_one_shares_an_http_port_number() -> None:
    output = _translate(_objects())
    for name, kind in (("db", "TCPRoute"), ("dns", "UDPRoute")):
        status = _listener_status(output, name)
        assert status["kinds"] == [("gateway.networking.k8s.io", kind)]
        assert status["conditions"]["Programmed"] == ("True", "Programmed")
        assert status["conditions"]["Conflicted"] == ("False", "NoConflicts")
    assert _listener_status(output, "http")["conditions"]["Conflicted"] == ("False", "NoConflicts")


def test_a_tcp_route_forwards_every_connection_weighted_across_its_backends() -> None:
    output = _translate(_objects(*_service("replica"), _route("TCPRoute", "db", [
        {"name": "db", "port": 5432, "weight": 3}, {"name": "replica", "port": 5432, "weight": 1}])))
    proxy = _tcp_proxy(_listeners(output)["infra/public/5432"])
    assert proxy["weightedClusters"]["clusters"] == [
        {"name": "service/infra/db/5432/tcp", "weight": 3}, {"name": "service/infra/replica/5432/tcp", "weight": 1}]
    assert _listener_status(output, "db")["attached"] == 1
    assert _route_conditions(output, "TCPRoute", "db")["Accepted"] == ("True", "Accepted")


def test_only_the_oldest_tcp_route_on_a_listener_is_served_though_both_are_accepted_and_counted() -> None:
    output = _translate(_objects(*_service("replica"),
                                 _route("TCPRoute", "newer", [{"name": "replica", "port": 5432}],
                                        created="2026-01-02T00:00:00Z"),
                                 _route("TCPRoute", "older", [{"name": "db", "port": 5432}])))
    assert _tcp_proxy(_listeners(output)["infra/public/5432"])["cluster"] == "service/infra/db/5432/tcp"
    assert _listener_status(output, "db")["attached"] == 2
    assert _route_conditions(output, "TCPRoute", "newer")["Accepted"] == ("True", "Accepted")


def test_a_udp_route_gets_a_udp_listener_with_the_udp_proxy_and_weights_by_session() -> None:
    output = _translate(_objects(*_service("dns2", 53), _route("UDPRoute", "dns", [
        {"name": "dns", "port": 53, "weight": 1}, {"name": "dns2", "port": 53, "weight": 1}])))
    listener = _listeners(output)["infra/public/80/udp"]
    assert listener["address"]["socketAddress"]["protocol"] == "UDP"
    (proxy,) = listener["listenerFilters"]
    assert proxy["name"] == "envoy.filters.udp_listener.udp_proxy"
    matcher = proxy["typedConfig"]["matcher"]
    (first,) = matcher["matcherList"]["matchers"]
    assert first["onMatch"]["action"]["typedConfig"]["cluster"] == "service/infra/dns/53/udp"
    assert matcher["onNoMatch"]["action"]["typedConfig"]["cluster"] == "service/infra/dns2/53/udp"
    clusters = {c["name"]: c for c in _messages(output, "Cluster")}
    assert set(clusters) == {"service/infra/dns/53/udp", "service/infra/dns2/53/udp"}


def test_a_tcp_route_on_an_http_listener_is_not_allowed_and_an_http_route_on_a_tcp_one_neither() -> None:
    output = _translate(_objects(_route("TCPRoute", "db", [{"name": "db", "port": 5432}], sectionName="http")))
    assert _route_conditions(output, "TCPRoute", "db")["Accepted"] == ("False", "NotAllowedByListeners")


def test_a_parent_ref_with_a_port_no_listener_has_matches_no_parent() -> None:
    output = _translate(_objects(_route("TCPRoute", "db", [{"name": "db", "port": 5432}], port=5433)))
    assert _route_conditions(output, "TCPRoute", "db")["Accepted"] == ("False", "NoMatchingParent")


def test_a_nonexistent_backend_is_not_found_and_its_share_gets_no_cluster_envoy_would_refuse() -> None:
    output = _translate(_objects(_route("TCPRoute", "db", [{"name": "db", "port": 5432},
                                                           {"name": "missing", "port": 5432}])))
    assert _route_conditions(output, "TCPRoute", "db")["ResolvedRefs"] == ("False", "BackendNotFound")
    names = [c["name"] for c in _tcp_proxy(_listeners(output)["infra/public/5432"])["weightedClusters"]["clusters"]]
    assert names[0] == "service/infra/db/5432/tcp"
    assert "invalid-backend" in names[1]
    assert {c["name"] for c in _messages(output, "Cluster")} == {"service/infra/db/5432/tcp"}


def test_a_tcp_listener_without_routes_has_no_envoy_listener() -> None:
    assert set(_listeners(_translate(_objects()))) == {"infra/public/80"}


def test_two_tcp_listeners_on_one_port_conflict_whatever_their_hostnames() -> None:
    output = _translate(_objects(listeners=[
        {"name": "a", "port": 5432, "protocol": "TCP", "hostname": "a.example.com"},
        {"name": "b", "port": 5432, "protocol": "TCP", "hostname": "b.example.com"}]))
    for name in ("a", "b"):
        assert _listener_status(output, name)["conditions"]["Conflicted"] == ("True", "HostnameConflict")


def _exported(kind: str, port: int) -> list[dict[str, Any]]:
    name = "db" if kind == "TCPRoute" else "dns"
    return [{"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport",
             "metadata": {"name": name, "namespace": "infra", "creationTimestamp": "2026-01-01T00:00:00Z"}},
            _route(kind, name, [{"group": "multicluster.x-k8s.io", "kind": "ServiceImport", "name": name,
                                 "port": port}])]


def test_a_service_import_backend_of_a_tcp_route_fails_over_with_connect_checks_and_connect_retries() -> None:
    output = _translate(_objects(*_exported("TCPRoute", 5432)), exported=True)
    (cluster,) = _messages(output, "Cluster")
    assert cluster["name"] == "serviceimport/infra/db/5432/tcp"
    (check,) = cluster["healthChecks"]
    assert "tcpHealthCheck" in check
    assert "httpHealthCheck" not in check
    assert cluster["outlierDetection"]["consecutiveLocalOriginFailure"] == 1
    assert cluster["commonLbConfig"]["healthyPanicThreshold"] == {}
    proxy = _tcp_proxy(_listeners(output)["infra/public/5432"])
    assert proxy["cluster"] == "serviceimport/infra/db/5432/tcp"
    assert proxy["maxConnectAttempts"] == 4


def test_a_service_import_backend_of_a_udp_route_has_no_health_checks_envoy_cannot_make() -> None:
    output = _translate(_objects(*_exported("UDPRoute", 53)), exported=True)
    (cluster,) = _messages(output, "Cluster")
    assert cluster["name"] == "serviceimport/infra/dns/53/udp"
    assert "healthChecks" not in cluster
    assert "outlierDetection" not in cluster
    (assignment,) = _messages(output, "ClusterLoadAssignment")
    assert assignment["policy"]["overprovisioningFactor"] == 100000


def test_a_failover_policy_targeting_a_tcp_route_gives_its_backend_a_cluster_of_its_own() -> None:
    policy = {"apiVersion": "mcgw.io/v1alpha1", "kind": "FailoverPolicy",
              "metadata": {"name": "db-failover", "namespace": "infra", "generation": 1},
              "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "TCPRoute", "name": "db"}],
                       "healthCheck": {"enabled": False}, "retry": {"attempts": 1}}}
    output = _translate(_objects(*_exported("TCPRoute", 5432), policy), exported=True)
    (cluster,) = _messages(output, "Cluster")
    assert cluster["name"] == "serviceimport/infra/db/5432/policy/db-failover/tcp"
    assert "healthChecks" not in cluster
    assert _tcp_proxy(_listeners(output)["infra/public/5432"])["maxConnectAttempts"] == 2
    (condition, *_) = output.statuses()["FailoverPolicy"]["infra/db-failover"]["conditions"]
    assert (condition["type"], condition["status"]) == ("Accepted", "True")


def test_a_udp_backend_a_backend_tls_policy_covers_gets_no_datagrams_rather_than_plaintext_ones() -> None:
    policy = {"apiVersion": V1, "kind": "BackendTLSPolicy",
              "metadata": {"name": "dns-tls", "namespace": "infra", "generation": 1},
              "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "dns"}],
                       "validation": {"hostname": "dns.example.com", "wellKnownCACertificates": "System"}}}
    output = _translate(_objects(policy, _route("UDPRoute", "dns", [{"name": "dns", "port": 53}])))
    assert _messages(output, "Cluster") == []
    assert "infra/public/80/udp" in _listeners(output)  # its share names no cluster: dropped, never a NACK


def test_a_udp_listener_on_the_http_port_number_takes_no_hostname_from_the_http_listener() -> None:
    """Listener isolation is among listeners that route hostnames: a UDP listener's hostname means nothing."""
    http_route = {"apiVersion": V1, "kind": "HTTPRoute",
                  "metadata": {"name": "web", "namespace": "infra", "generation": 1},
                  "spec": {"parentRefs": [{"name": "public", "sectionName": "http"}], "hostnames": ["a.example.com"],
                           "rules": [{"backendRefs": [{"name": "db", "port": 5432}]}]}}
    output = _translate(_objects(http_route, listeners=[
        {"name": "http", "port": 80, "protocol": "HTTP"},
        {"name": "dns", "port": 80, "protocol": "UDP", "hostname": "a.example.com"}]))
    (table,) = _messages(output, "RouteConfiguration")
    (vhost,) = [v for v in table["virtualHosts"] if "a.example.com" in v["domains"]]
    assert [route["name"] for route in vhost["routes"]] == ["infra/web/rule/0/match/0"]
