"""TLSRoute end to end through the pipeline: what Envoy is told for TLS connections and their backends.

The golden cases (testdata/routes/tlsroute, testdata/xds/tlsroute) hold the statuses and the whole output;
these tests name the behaviours one by one. Every output is checked by ``ir.validate`` and a real Envoy.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from mcgw import ir
from mcgw.objects.model import AnyObject, parse_object
from mcgw.providers.files.manifests import read_clusterset_dir
from mcgw.runtime.incremental import McsInput
from mcgw.runtime.pipeline import ClusterOutput, translate_cluster
from mcgw.semantics.mcs.exports import compute_mcs
from tests.envoy_validate import validate
from tests.mcgw.certs import self_signed
from tests.mcgw.manifests import V1

FAILOVER = Path(__file__).resolve().parents[2] / "examples" / "failover"
TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


def _gateway(*listeners: dict[str, Any], namespace: str = "infra") -> list[dict[str, Any]]:
    return [
        {"apiVersion": V1, "kind": "GatewayClass", "metadata": {"name": "mcgw"},
         "spec": {"controllerName": "mcgw.io/gateway-controller"}},
        {"apiVersion": V1, "kind": "Gateway", "metadata": {"name": "edge", "namespace": namespace, "generation": 1},
         "spec": {"gatewayClassName": "mcgw", "addresses": [{"type": "IPAddress", "value": "198.18.0.10"}],
                  "listeners": list(listeners)}},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
         "metadata": {"name": "cert", "namespace": namespace}, "data": self_signed("t.example.com")},
    ]


PASSTHROUGH = {"name": "pass", "port": 443, "protocol": "TLS", "tls": {"mode": "Passthrough"},
               "allowedRoutes": {"namespaces": {"from": "All"}}}
TERMINATE = {"name": "term", "port": 443, "protocol": "TLS", "hostname": "t.example.com",
             "tls": {"mode": "Terminate", "certificateRefs": [{"name": "cert"}]},
             "allowedRoutes": {"namespaces": {"from": "All"}}}


def _service(name: str, namespace: str = "infra", address: str = "198.18.1.10") -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
         "spec": {"ports": [{"name": "tls", "port": 8443}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": f"{name}-1", "namespace": namespace, "labels": {"kubernetes.io/service-name": name}},
         "addressType": "IPv4", "ports": [{"name": "tls", "port": 8443}],
         "endpoints": [{"addresses": [address], "conditions": {"ready": True}}]},
    ]


def _route(name: str, hostnames: list[str], refs: list[dict[str, Any]], namespace: str = "infra",
           created: str = "2026-01-01T00:00:00Z", parent: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": V1, "kind": "TLSRoute",
            "metadata": {"name": name, "namespace": namespace, "generation": 1, "creationTimestamp": created},
            "spec": {"parentRefs": [parent or {"name": "edge", "namespace": "infra"}], "hostnames": hostnames,
                     "rules": [{"backendRefs": refs}]}}


def _translate(objects: list[AnyObject], mcs: McsInput | None = None) -> ClusterOutput:
    output = translate_cluster("east", objects, mcs=mcs)
    for gateway in output.gateways:
        ir.validate(gateway)
    validate([m for messages in output.resources.values() for m in messages])  # real Envoy accepts it
    return output


def _parse(documents: list[dict[str, Any]]) -> list[AnyObject]:
    return [parse_object(document, "test") for document in documents]


def _messages(output: ClusterOutput, kind: str) -> list[dict[str, Any]]:
    return [json_format.MessageToDict(m) for messages in output.resources.values() for m in messages
            if m.DESCRIPTOR.name == kind]


def _chains(output: ClusterOutput) -> dict[tuple[str, ...], dict[str, Any]]:
    """The TLS listener's filter chains by the SNI names they match (() for any)."""
    (listener,) = _messages(output, "Listener")
    assert [f["name"] for f in listener["listenerFilters"]] == ["envoy.filters.listener.tls_inspector"]
    return {tuple(chain.get("filterChainMatch", {}).get("serverNames", ())): chain
            for chain in listener["filterChains"]}


def _proxy(chain: dict[str, Any]) -> dict[str, Any]:
    (proxy,) = chain["filters"]
    assert proxy["typedConfig"]["@type"] == TCP_PROXY
    config: dict[str, Any] = proxy["typedConfig"]
    return config


def test_passthrough_forwards_by_sni_without_terminating() -> None:
    objects = _parse([*_gateway(PASSTHROUGH), *_service("db"), *_service("web", address="198.18.1.11"),
                      _route("db", ["db.example.com"], [{"name": "db", "port": 8443}]),
                      _route("web", ["*.example.com"], [{"name": "web", "port": 8443}])])
    chains = _chains(_translate(objects))
    assert set(chains) == {("db.example.com",), ("*.example.com",)}
    assert _proxy(chains[("db.example.com",)])["cluster"] == "service/infra/db/8443/tcp"
    assert _proxy(chains[("*.example.com",)])["cluster"] == "service/infra/web/8443/tcp"
    assert all("transportSocket" not in chain for chain in chains.values()), "passthrough never terminates"


def test_terminate_completes_the_handshake_with_the_listener_certificate_by_sds() -> None:
    objects = _parse([*_gateway(TERMINATE), *_service("web"),
                      _route("web", ["t.example.com"], [{"name": "web", "port": 8443}])])
    output = _translate(objects)
    chain = _chains(output)[("t.example.com",)]
    context = chain["transportSocket"]["typedConfig"]["commonTlsContext"]
    assert [c["name"] for c in context["tlsCertificateSdsSecretConfigs"]] == ["secret/infra/cert"]
    assert [s["name"] for s in _messages(output, "Secret")] == ["secret/infra/cert"]


def test_a_terminate_listener_without_routes_sends_no_private_key() -> None:
    output = _translate(_parse([*_gateway(TERMINATE, PASSTHROUGH | {"port": 8443})]))
    assert _messages(output, "Listener") == []
    assert _messages(output, "Secret") == []


def test_both_modes_share_a_port_chosen_by_sni() -> None:
    objects = _parse([*_gateway(PASSTHROUGH | {"hostname": "*.example.com"}, TERMINATE), *_service("web"),
                      _route("any", ["*.example.com"], [{"name": "web", "port": 8443}])])
    output = _translate(objects)
    chains = _chains(output)
    assert set(chains) == {("*.example.com",), ("t.example.com",)}
    assert "transportSocket" in chains[("t.example.com",)]
    assert "transportSocket" not in chains[("*.example.com",)]
    listeners = {item["name"]: item["conditions"] for item in output.statuses()["Gateway"]["infra/edge"]["listeners"]}
    assert all(c["status"] == "True" for c in listeners["term"] if c["type"] == "Accepted")


def test_the_oldest_route_takes_a_name_two_routes_claim() -> None:
    objects = _parse([*_gateway(PASSTHROUGH), *_service("old"), *_service("new", address="198.18.1.11"),
                      _route("new", ["db.example.com"], [{"name": "new", "port": 8443}],
                             created="2026-02-01T00:00:00Z"),
                      _route("old", ["db.example.com"], [{"name": "old", "port": 8443}])])
    output = _translate(objects)
    assert _proxy(_chains(output)[("db.example.com",)])["cluster"] == "service/infra/old/8443/tcp"


def test_weights_split_connections_and_a_missing_backend_keeps_its_share_closed() -> None:
    objects = _parse([*_gateway(PASSTHROUGH), *_service("db"),
                      _route("db", ["db.example.com"], [{"name": "db", "port": 8443, "weight": 3},
                                                        {"name": "gone", "port": 8443, "weight": 1},
                                                        {"name": "db", "port": 8443, "weight": 0}])])
    output = _translate(objects)
    weighted = _proxy(_chains(output)[("db.example.com",)])["weightedClusters"]["clusters"]
    assert weighted == [{"name": "service/infra/db/8443/tcp", "weight": 3},
                        {"name": "infra/db/rule/0/invalid-backend/1", "weight": 1}]  # no such cluster
    assert {c["name"] for c in _messages(output, "Cluster")} == {"service/infra/db/8443/tcp"}
    status = output.statuses()["TLSRoute"]["infra/db"]["parents"][0]["conditions"]
    assert {c["type"]: c["reason"] for c in status} == {"Accepted": "Accepted", "ResolvedRefs": "BackendNotFound"}


def test_only_invalid_backends_close_the_connection() -> None:
    objects = _parse([*_gateway(PASSTHROUGH), _route("db", ["db.example.com"], [{"name": "gone", "port": 8443}])])
    output = _translate(objects)
    assert _proxy(_chains(output)[("db.example.com",)])["cluster"] == "infra/db/rule/0/invalid-backend/0"
    assert _messages(output, "Cluster") == []


def _failover(extra: list[dict[str, Any]] | None = None) -> ClusterOutput:
    """examples/failover's ClusterSet (cart exported from east, west and central), with a TLS listener on east's
    Gateway and a TLSRoute to the cart ServiceImport."""
    properties, objects = read_clusterset_dir(FAILOVER)
    clusters = {c.name: c for c in properties.clusters}
    mcs = McsInput(compute_mcs(objects, {}, time.time()).view.services, clusters)
    east = [o for o in objects["east"] if not (o.kind == "Gateway" and o.metadata.name == "public")]
    tls_gateway = {"apiVersion": V1, "kind": "Gateway", "metadata": {"name": "public", "namespace": "infra",
                                                                     "generation": 1},
                   "spec": {"gatewayClassName": "mcgw", "addresses": [{"type": "IPAddress", "value": "198.18.1.1"}],
                            "listeners": [PASSTHROUGH]}}
    route = _route("cart", ["cart.example.com"], [{"group": "multicluster.x-k8s.io", "kind": "ServiceImport",
                                                   "name": "cart", "port": 80}], namespace="shop",
                   parent={"name": "public", "namespace": "infra"})
    return _translate([*east, *_parse([tls_gateway, route, *(extra or [])])], mcs)


def test_a_service_import_backend_fails_over_by_priority_with_tcp_connect_checks() -> None:
    output = _failover()
    (cluster,) = [c for c in _messages(output, "Cluster") if c["name"].endswith("/tcp")]
    assert cluster["name"] == "serviceimport/shop/cart/80/tcp"
    (check,) = cluster["healthChecks"]
    assert "tcpHealthCheck" in check
    assert "httpHealthCheck" not in check
    assert cluster["commonLbConfig"]["healthyPanicThreshold"] == {}
    assert "typedExtensionProtocolOptions" not in cluster  # bytes, not HTTP
    (assignment,) = [a for a in _messages(output, "ClusterLoadAssignment") if a["clusterName"] == cluster["name"]]
    assert {loc["locality"]["subZone"]: loc.get("priority", 0) for loc in assignment["endpoints"]} == \
        {"east": 0, "west": 1, "central": 2}
    # A refused connect is tried again, on the next healthy host: the next priority's once east's are down.
    proxy = _proxy(next(iter(_chains(output).values())))
    assert proxy["maxConnectAttempts"] == 4
    # Paced, so that the refusing host's ejection reaches the retrying worker before the next attempt.
    assert proxy["backoffOptions"] == {"baseInterval": "0.025s", "maxInterval": "0.250s"}


def test_a_failover_policy_can_target_a_tls_route() -> None:
    policy = {"apiVersion": "mcgw.io/v1alpha1", "kind": "FailoverPolicy",
              "metadata": {"name": "tls-policy", "namespace": "shop", "generation": 1},
              "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "TLSRoute", "name": "cart"}],
                       "preference": ["central"], "retry": {"enabled": False}}}
    output = _failover([policy])
    name = "serviceimport/shop/cart/80/policy/tls-policy/tcp"
    proxy = _proxy(next(iter(_chains(output).values())))
    assert proxy["cluster"] == name
    assert "maxConnectAttempts" not in proxy
    (assignment,) = [a for a in _messages(output, "ClusterLoadAssignment") if a["clusterName"] == name]
    assert {loc["locality"]["subZone"]: loc.get("priority", 0) for loc in assignment["endpoints"]} == \
        {"east": 0, "central": 1, "west": 2}
    condition = output.statuses()["FailoverPolicy"]["shop/tls-policy"]["conditions"][0]
    assert (condition["type"], condition["status"]) == ("Accepted", "True")
