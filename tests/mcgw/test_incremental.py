"""Incremental translation gives exactly what a full translation gives, whatever the sequence of changes.

Hypothesis drives a small cluster through random changes to routes (HTTP, gRPC, TCP, UDP), Services, ServiceImports,
EndpointSlices, Gateways (their listeners, client certificates and frontend validation), GatewayClasses,
ReferenceGrants, Namespaces, Secrets, BackendTLSPolicies, the ConfigMaps holding their CA bundles (and the
Gateways' frontend ones), and addresses. After each one, a long-lived ClusterTranslator and a from-scratch
translate_cluster must agree on every status, the IR, and every serialised Envoy resource; earlier outputs
must not change afterwards.
"""

from __future__ import annotations

import base64
import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcgw import ir
from mcgw.objects.model import AnyObject, parse_object
from mcgw.runtime.pipeline import ClusterOutput, ClusterTranslator, translate_cluster
from tests.mcgw.certs import self_signed
from xdsserver import Snapshot

Draw = Callable[[st.SearchStrategy[Any]], Any]
V1 = "gateway.networking.k8s.io/v1"
GATEWAY = ("infra", "public")
_CERTS = Path(__file__).parent / "testdata" / "gateways" / "certificates.in.yaml"
TLS_DATA = next(d for d in yaml.safe_load_all(_CERTS.read_text())
                if d and d["metadata"]["name"] == "shared-cert")["data"]
ROTATED_DATA = self_signed("a.example.com")  # another valid pair: a rotation, which changes only the SDS Secret


class World:
    """One member cluster's objects, changed one at a time as a store would (unchanged ones stay the same)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], AnyObject] = {}
        self.addresses: dict[tuple[str, str], list[str]] = {GATEWAY: ["198.18.0.10"]}
        self.binds: dict[tuple[str, str], str] = {}

    def put(self, document: dict[str, Any]) -> None:
        obj = parse_object(document, "generated")
        self.objects[obj.key] = obj

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.objects.pop((kind, namespace, name), None)

    def sorted(self) -> tuple[AnyObject, ...]:
        return tuple(self.objects[key] for key in sorted(self.objects))


def _meta(name: str, namespace: str = "", **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, **extra}


def gateway_class(world: World, draw: Draw) -> None:
    choice = draw(st.sampled_from(["ours", "parameters", "delete"]))
    if choice == "delete":
        world.delete("GatewayClass", "", "mcgw")
        return
    spec: dict[str, Any] = {"controllerName": "mcgw.io/gateway-controller"}
    if choice == "parameters":
        spec["parametersRef"] = {"group": "example.com", "kind": "Config", "name": "x"}
    world.put({"apiVersion": V1, "kind": "GatewayClass", "metadata": _meta("mcgw", generation=1), "spec": spec})


def gateway(world: World, draw: Draw) -> None:
    name = draw(st.sampled_from(["public", "edge"]))
    if draw(st.integers(0, 5)) == 0:
        world.delete("Gateway", "infra", name)
        return
    allowed = draw(st.sampled_from([
        {"namespaces": {"from": "All"}}, {"namespaces": {"from": "Same"}},
        {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "yes"}}}}]))
    listeners: list[dict[str, Any]] = [{"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": allowed}]
    hostname = draw(st.sampled_from([None, "*.example.com", "a.example.com"]))
    if hostname:
        listeners[0]["hostname"] = hostname
    if draw(st.booleans()):
        listeners.append({"name": "alt", "port": draw(st.sampled_from([80, 8080])), "protocol": "HTTP",
                          "hostname": draw(st.sampled_from(["b.example.org", "*.example.com", "x.a.example.com"])),
                          "allowedRoutes": {"namespaces": {"from": "All"}}})
    if draw(st.booleans()):
        listeners.append({"name": "tls", "port": 443, "protocol": "HTTPS", "hostname": "a.example.com",
                          "allowedRoutes": {"namespaces": {"from": "All"}},
                          "tls": {"certificateRefs": [draw(st.sampled_from([
                              {"name": "cert"}, {"name": "cert", "namespace": "certs"}]))]}})
        if draw(st.booleans()):  # HTTPS listeners sharing a port: a route table each, with 421s for the others
            listeners.append({"name": "tls-shared", "port": 443, "protocol": "HTTPS",
                              "hostname": draw(st.sampled_from([None, "*.example.com", "x.a.example.com"])),
                              "allowedRoutes": {"namespaces": {"from": "All"}}, "tls": {"certificateRefs": [
                                  {"name": "cert"}]}})
    # TCP and UDP listeners: a UDP one shares the HTTP port's number, a TCP one on it conflicts.
    for stream in draw(st.lists(st.sampled_from([
            {"name": "db", "port": 5432, "protocol": "TCP"}, {"name": "db-80", "port": 80, "protocol": "TCP"},
            {"name": "dns", "port": 80, "protocol": "UDP", "hostname": "a.example.com"},
            {"name": "dns-53", "port": 53, "protocol": "UDP"}]),
            max_size=2, unique_by=str)):
        listeners.append({**stream, "allowedRoutes": allowed})
    if draw(st.booleans()):  # TLS: passthrough, terminate, or both modes sharing port 8443 by hostname
        mode = draw(st.sampled_from(["Passthrough", "Terminate", "both"]))
        if mode in ("Passthrough", "both"):
            listeners.append({"name": "pass", "port": 8443, "protocol": "TLS", "tls": {"mode": "Passthrough"},
                              "hostname": draw(st.sampled_from([None, "*.example.com"])),
                              "allowedRoutes": {"namespaces": {"from": "All"}}})
        if mode in ("Terminate", "both"):
            listeners.append({"name": "term", "port": 8443, "protocol": "TLS", "hostname": "t.example.com",
                              "allowedRoutes": {"namespaces": {"from": "All"}},
                              "tls": {"mode": "Terminate", "certificateRefs": [{"name": "cert"}]}})
    spec: dict[str, Any] = {"gatewayClassName": draw(st.sampled_from(["mcgw", "mcgw", "other"])),
                            "listeners": listeners}
    # The certificate presented to TLS backends: the listeners' Secret, across namespaces, or not a Secret.
    client = draw(st.sampled_from([None, {"name": "cert"}, {"name": "cert"}, {"name": "cert", "namespace": "certs"},
                                   {"name": "cert", "kind": "ConfigMap"}]))
    tls: dict[str, Any] = {}
    if client is not None:
        tls["backend"] = {"clientCertificateRef": client}
    if frontend := _frontend(draw):
        tls["frontend"] = frontend
    if tls:
        spec["tls"] = tls
    world.put({"apiVersion": V1, "kind": "Gateway",
               "metadata": _meta(name, "infra", generation=draw(st.integers(1, 3))), "spec": spec})


def _frontend(draw: Draw) -> dict[str, Any] | None:
    """Client certificate validation: by default or on port 443, against the ConfigMaps ``config_map`` changes
    (one across namespaces, which ``grant`` opens), a missing one, or a Secret without ``ca.crt``."""
    def validation() -> dict[str, Any]:
        refs = draw(st.lists(st.sampled_from([
            {"group": "", "kind": "ConfigMap", "name": "ca"},
            {"group": "", "kind": "ConfigMap", "name": "ca", "namespace": "apps"},
            {"group": "", "kind": "ConfigMap", "name": "gone"},
            {"group": "", "kind": "Secret", "name": "cert"}]), min_size=1, max_size=2, unique_by=str))
        return {"caCertificateRefs": refs, "mode": draw(st.sampled_from(["AllowValidOnly", "AllowInsecureFallback"]))}
    choice = draw(st.sampled_from(["none", "none", "default", "per-port", "both"]))
    if choice == "none":
        return None
    frontend: dict[str, Any] = {"default": {"validation": validation()} if choice != "per-port" else {}}
    if choice != "default":
        frontend["perPort"] = [{"port": 443, "tls": {"validation": validation()} if draw(st.booleans()) else {}}]
    return frontend


def secret(world: World, draw: Draw) -> None:
    namespace = draw(st.sampled_from(["infra", "certs"]))
    choice = draw(st.sampled_from(["valid", "rotated", "garbage", "delete"]))
    if choice == "delete":
        world.delete("Secret", namespace, "cert")
        return
    data = {"valid": TLS_DATA, "rotated": ROTATED_DATA}.get(choice, {"tls.crt": "Y2VydA==", "tls.key": "a2V5"})
    world.put({"apiVersion": "v1", "kind": "Secret", "metadata": _meta("cert", namespace), "type": "kubernetes.io/tls",
               "data": data})


def grant(world: World, draw: Draw) -> None:
    which = draw(st.sampled_from(["team-routes", "apps-routes", "certs", "client-ca", "team-tcp"]))
    namespace, from_kind, from_ns, to_kind = {
        "team-routes": ("team", "HTTPRoute", "apps", "Service"),  # routes in apps may use Services in team
        "team-tcp": ("team", "TCPRoute", "apps", "Service"),
        "apps-routes": ("apps", "HTTPRoute", "team", "Service"),
        "certs": ("certs", "Gateway", "infra", "Secret"),
        "client-ca": ("apps", "Gateway", "infra", "ConfigMap"),
    }[which]
    if draw(st.booleans()):
        world.delete("ReferenceGrant", namespace, which)
        return
    group = "gateway.networking.k8s.io"
    world.put({"apiVersion": f"{group}/v1beta1", "kind": "ReferenceGrant", "metadata": _meta(which, namespace),
               "spec": {"from": [{"group": group, "kind": from_kind, "namespace": from_ns}],
                        "to": [{"group": "", "kind": to_kind}]}})


def namespace(world: World, draw: Draw) -> None:
    name = draw(st.sampled_from(["apps", "team"]))
    labels = draw(st.sampled_from([{}, {"team": "yes"}]))
    world.put({"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name, labels=labels)})


SERVICES = [("apps", "app"), ("apps", "api"), ("team", "app")]


def service(world: World, draw: Draw) -> None:
    ns, name = draw(st.sampled_from(SERVICES))
    if draw(st.integers(0, 3)) == 0:
        world.delete("Service", ns, name)
        return
    ports = draw(st.sampled_from([[{"name": "http", "port": 80}], [{"name": "http", "port": 80},
                                                                     {"name": "alt", "port": 81}],
                                  [{"name": "other", "port": 80}], [{"name": "dns", "port": 80, "protocol": "UDP"}]]))
    app_protocol = draw(st.sampled_from([None, "kubernetes.io/h2c", "kubernetes.io/ws", "kubernetes.io/wss",
                                         "kubernetes.io/quic"]))
    if app_protocol is not None:  # h2c changes the cluster; wss, quic, ws (for GRPCRoutes), UDP the resolution
        ports = [{**ports[0], "appProtocol": app_protocol}, *ports[1:]]
    world.put({"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, ns), "spec": {"ports": ports}})


def service_import(world: World, draw: Draw) -> None:
    if draw(st.booleans()):
        world.delete("ServiceImport", "apps", "shared")
    else:
        world.put({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
                   "metadata": _meta("shared", "apps"), "spec": {"ports": [{"port": 80}]}})


def endpoint_slice(world: World, draw: Draw) -> None:
    ns, svc = draw(st.sampled_from(SERVICES))
    name = draw(st.sampled_from([f"{svc}-1", f"{svc}-2"]))
    if draw(st.integers(0, 3)) == 0:
        world.delete("EndpointSlice", ns, name)
        return
    endpoints = [{"addresses": [f"198.18.{draw(st.integers(1, 2))}.{draw(st.integers(1, 4))}"],
                  "conditions": draw(st.sampled_from([{}, {"ready": False}, {"ready": False, "serving": True,
                                                                             "terminating": True}]))}
                 for _ in range(draw(st.integers(0, 3)))]
    owner = draw(st.sampled_from([svc, svc, "api"]))  # sometimes relabelled to another Service
    world.put({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": _meta(name, ns, labels={"kubernetes.io/service-name": owner}),
               "ports": [{"name": draw(st.sampled_from(["http", "alt"])), "port": draw(st.sampled_from([8080, 9090]))}],
               "endpoints": endpoints})


def _rule(draw: Draw, route_ns: str) -> dict[str, Any]:
    path_type = draw(st.sampled_from(["PathPrefix", "Exact", "RegularExpression"]))
    value = draw(st.sampled_from(["^/v[0-9]+$", "(unclosed", "/a.*"])) if path_type == "RegularExpression" \
        else draw(st.sampled_from(["/", "/a", "/a/b", "/b/"]))
    match: dict[str, Any] = {"path": {"type": path_type, "value": value}}
    if draw(st.booleans()):
        match["headers"] = [{"name": "x-h", "value": draw(st.sampled_from(["1", "2"]))}]
    if draw(st.booleans()):
        match["method"] = "GET"
    rule: dict[str, Any] = {"matches": [match]}
    filters: list[dict[str, Any]] = []
    extra = draw(st.sampled_from(["none", "headers", "redirect", "rewrite", "mirror", "cors", "unsupported"]))
    if extra == "headers":
        filters.append({"type": "RequestHeaderModifier",
                        "requestHeaderModifier": {"set": [{"name": "x", "value": "%"}]}})
    elif extra == "redirect":
        filters.append({"type": "RequestRedirect", "requestRedirect": {"statusCode": 301, "hostname": "b.example.org"}})
    elif extra == "rewrite":
        filters.append({"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch",
                                                                       "replacePrefixMatch": "/new"}}})
    elif extra == "mirror":
        ns, name = draw(st.sampled_from(SERVICES))
        filters.append({"type": "RequestMirror", "requestMirror": {"backendRef": {"name": name, "namespace": ns,
                                                                                   "port": 80}}})
    elif extra == "cors":
        filters.append({"type": "CORS", "cors": draw(st.sampled_from([
            {"allowOrigins": ["*"]}, {"allowOrigins": ["https://*.example.com"], "allowMethods": ["GET"],
                                      "allowCredentials": True, "maxAge": 60},
            {"allowOrigins": ["ftp://bad"]}]))})
    elif extra == "unsupported":
        filters.append({"type": "ExtensionRef"})
    rule["filters"] = filters
    refs = []
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from([*SERVICES, ("apps", "missing"), ("apps", "shared")]))
        ref: dict[str, Any] = {"name": target[1], "port": draw(st.sampled_from([80, 81])),
                               "weight": draw(st.integers(0, 2))}
        if target[0] != route_ns:
            ref["namespace"] = target[0]
        if target[1] == "shared":
            ref.update(group="multicluster.x-k8s.io", kind="ServiceImport")
        backend_filter = draw(st.sampled_from(["none", "none", "request", "response", "unsupported"]))
        if backend_filter == "request":
            ref["filters"] = [{"type": "RequestHeaderModifier", "requestHeaderModifier": {
                "set": [{"name": "backend", "value": draw(st.sampled_from(["a", "b"]))}]}}]
        elif backend_filter == "response":
            ref["filters"] = [{"type": "ResponseHeaderModifier", "responseHeaderModifier": {"remove": ["server"]}}]
        elif backend_filter == "unsupported":
            ref["filters"] = [{"type": "URLRewrite", "urlRewrite": {"hostname": "b.example.org"}}]
        refs.append(ref)
    rule["backendRefs"] = refs
    if draw(st.booleans()):
        rule["timeouts"] = {"request": "5s"}
    return rule


def route(world: World, draw: Draw) -> None:
    ns = draw(st.sampled_from(["apps", "team"]))
    name = draw(st.sampled_from(["r0", "r1", "r2", "r3"]))
    if draw(st.integers(0, 4)) == 0:
        world.delete("HTTPRoute", ns, name)
        return
    parents = draw(st.lists(st.sampled_from([
        {"name": "public", "namespace": "infra"}, {"name": "public", "namespace": "infra", "sectionName": "alt"},
        {"name": "public", "namespace": "infra", "port": 443}, {"name": "edge", "namespace": "infra"},
        {"name": "nowhere", "namespace": "infra"}]), min_size=1, max_size=2, unique_by=str))
    hostnames = draw(st.lists(st.sampled_from(["a.example.com", "*.example.com", "b.example.org"]), max_size=2,
                              unique=True))
    world.put({"apiVersion": V1, "kind": "HTTPRoute",
               "metadata": _meta(name, ns, generation=draw(st.integers(1, 3)),
                                 creationTimestamp=draw(st.sampled_from(["2026-01-01T00:00:00Z",
                                                                         "2026-01-02T00:00:00Z"]))),
               "spec": {"parentRefs": parents, "hostnames": hostnames,
                        "rules": [_rule(draw, ns) for _ in range(draw(st.integers(1, 3)))]}})


def _grpc_rule(draw: Draw, route_ns: str) -> dict[str, Any]:
    """A GRPCRoute rule: method matches of each shape (one RE2 refuses), header matches, its filters and
    the backends an HTTPRoute rule draws (so both kinds share Services, ServiceImports and clusters)."""
    match: dict[str, Any] = {}
    method = draw(st.sampled_from([None, {"service": "a.Echo"}, {"service": "a.Echo", "method": "Say"},
                                   {"method": "Say"}, {"type": "RegularExpression", "service": "a\\..*"},
                                   {"type": "RegularExpression", "method": "(bad"}, {"service": "a/b"}]))
    if method is not None:
        match["method"] = method
    if draw(st.booleans()):
        match["headers"] = [{"name": "x-h", "value": draw(st.sampled_from(["1", "2"]))}]
    http_rule = _rule(draw, route_ns)
    filters = [f for f in http_rule["filters"] if f["type"] in ("RequestHeaderModifier", "RequestMirror",
                                                                 "ExtensionRef")]
    return {"matches": [match], "filters": filters, "backendRefs": http_rule["backendRefs"]}


def grpc_route(world: World, draw: Draw) -> None:
    ns = draw(st.sampled_from(["apps", "team"]))
    name = draw(st.sampled_from(["r0", "g1", "g2"]))  # r0: the name of an HTTPRoute too
    if draw(st.integers(0, 4)) == 0:
        world.delete("GRPCRoute", ns, name)
        return
    parents = draw(st.lists(st.sampled_from([
        {"name": "public", "namespace": "infra"}, {"name": "public", "namespace": "infra", "sectionName": "alt"},
        {"name": "edge", "namespace": "infra"}]), min_size=1, max_size=2, unique_by=str))
    # Hostnames that meet the HTTPRoutes' or not, and ages on both sides of theirs: cross serving refuses
    # one of an HTTPRoute and a GRPCRoute that meet on a listener, so one route's change moves the other's status.
    hostnames = draw(st.lists(st.sampled_from(["g.example.com", "*.example.com", "a.example.com"]), max_size=2,
                              unique=True))
    world.put({"apiVersion": V1, "kind": "GRPCRoute",
               "metadata": _meta(name, ns, generation=draw(st.integers(1, 3)),
                                 creationTimestamp=draw(st.sampled_from(["2025-12-31T00:00:00Z",
                                                                         "2026-01-01T00:00:00Z",
                                                                         "2026-01-02T00:00:00Z"]))),
               "spec": {"parentRefs": parents, "hostnames": hostnames,
                        "rules": [_grpc_rule(draw, ns) for _ in range(draw(st.integers(1, 2)))]}})


def stream_route(world: World, draw: Draw) -> None:
    """A TCPRoute or UDPRoute (one rule of backendRefs): routes of one kind on one listener, only the oldest
    served; backends shared with the HTTP routes' Services and ServiceImport, on clusters of their own."""
    kind = draw(st.sampled_from(["TCPRoute", "UDPRoute"]))
    ns = draw(st.sampled_from(["apps", "team"]))
    name = draw(st.sampled_from(["r0", "s1"]))  # r0: the name of an HTTPRoute too
    if draw(st.integers(0, 4)) == 0:
        world.delete(kind, ns, name)
        return
    parents = draw(st.lists(st.sampled_from([
        {"name": "public", "namespace": "infra"}, {"name": "public", "namespace": "infra", "sectionName": "db"},
        {"name": "public", "namespace": "infra", "port": 80}, {"name": "edge", "namespace": "infra"}]),
        min_size=1, max_size=2, unique_by=str))
    refs = [{key: value for key, value in ref.items() if key != "filters"}
            for ref in _rule(draw, ns)["backendRefs"]]
    world.put({"apiVersion": V1, "kind": kind,
               "metadata": _meta(name, ns, generation=draw(st.integers(1, 3)),
                                 creationTimestamp=draw(st.sampled_from(["2026-01-01T00:00:00Z",
                                                                         "2026-01-02T00:00:00Z"]))),
               "spec": {"parentRefs": parents, "rules": [{"backendRefs": refs}]}})


def tls_route(world: World, draw: Draw) -> None:
    """A TLSRoute on the TLS listeners (or, refused, on others): SNI names that meet theirs or not, two routes
    that may claim one name (the older takes it), and the backends an HTTPRoute rule draws (so every kind
    shares Services, ServiceImports and their failover)."""
    ns = draw(st.sampled_from(["apps", "team"]))
    name = draw(st.sampled_from(["r0", "t1"]))  # r0: the name of an HTTPRoute too
    if draw(st.integers(0, 4)) == 0:
        world.delete("TLSRoute", ns, name)
        return
    parents = draw(st.lists(st.sampled_from([
        {"name": "public", "namespace": "infra"}, {"name": "public", "namespace": "infra", "sectionName": "pass"},
        {"name": "edge", "namespace": "infra", "sectionName": "term"}]), min_size=1, max_size=2, unique_by=str))
    hostnames = draw(st.lists(st.sampled_from(["t.example.com", "*.example.com", "db.example.com", "x.example.org"]),
                              min_size=1, max_size=2, unique=True))
    refs = [{k: v for k, v in ref.items() if k != "filters"} for ref in _rule(draw, ns)["backendRefs"]] \
        or [{"name": "app", "port": 80}]  # a TLSRoute's backendRefs have no filters; the CRD wants one
    world.put({"apiVersion": V1, "kind": "TLSRoute",
               "metadata": _meta(name, ns, generation=draw(st.integers(1, 3)),
                                 creationTimestamp=draw(st.sampled_from(["2026-01-01T00:00:00Z",
                                                                         "2026-01-02T00:00:00Z"]))),
               "spec": {"parentRefs": parents, "hostnames": hostnames, "rules": [{"backendRefs": refs}]}})


def addresses(world: World, draw: Draw) -> None:
    world.addresses = draw(st.sampled_from([{}, {GATEWAY: ["198.18.0.10"]}, {GATEWAY: ["198.18.0.11"]}]))


def bind_addresses(world: World, draw: Draw) -> None:
    world.binds = draw(st.sampled_from([{}, {GATEWAY: "127.0.0.2"}]))


CA_PEM = base64.b64decode(TLS_DATA["tls.crt"]).decode()
OTHER_CA_PEM = base64.b64decode(ROTATED_DATA["tls.crt"]).decode()  # a CA bundle changed in place


def backend_tls_policy(world: World, draw: Draw) -> None:
    ns = draw(st.sampled_from(["apps", "team"]))
    name = draw(st.sampled_from(["p0", "p1"]))
    if draw(st.integers(0, 4)) == 0:
        world.delete("BackendTLSPolicy", ns, name)
        return
    target_kind = draw(st.sampled_from([("", "Service"), ("", "Service"), ("multicluster.x-k8s.io", "ServiceImport")]))
    ref: dict[str, Any] = {"group": target_kind[0], "kind": target_kind[1],
                           "name": draw(st.sampled_from(["app", "api", "shared"]))}
    if section := draw(st.sampled_from([None, None, "http", "alt", "other"])):
        ref["sectionName"] = section
    validation: dict[str, Any] = {"hostname": draw(st.sampled_from(["a.example.com", "b.example.com"]))}
    ca = draw(st.sampled_from(["configmap", "configmap", "missing", "secret", "system", "unknown"]))
    if ca in ("system", "unknown"):
        validation["wellKnownCACertificates"] = "System" if ca == "system" else "example.com/other"
    else:
        validation["caCertificateRefs"] = [{"group": "", "kind": "Secret" if ca == "secret" else "ConfigMap",
                                            "name": "gone" if ca == "missing" else "ca"}]
    if draw(st.booleans()):
        validation["subjectAltNames"] = [{"type": "URI", "uri": "spiffe://example.com/app"}]
    spec: dict[str, Any] = {"targetRefs": [ref], "validation": validation}
    if draw(st.integers(0, 5)) == 0:
        spec["options"] = {"example.com/option": "x"}
    world.put({"apiVersion": V1, "kind": "BackendTLSPolicy",
               "metadata": _meta(name, ns, generation=draw(st.integers(1, 3)),
                                 creationTimestamp=draw(st.sampled_from(["2026-01-01T00:00:00Z",
                                                                         "2026-01-02T00:00:00Z"]))),
               "spec": spec})


def config_map(world: World, draw: Draw) -> None:
    ns = draw(st.sampled_from(["apps", "team", "infra"]))
    data = draw(st.sampled_from(["valid", "valid", "garbage", "no-key", "delete"]))
    if data == "delete":
        world.delete("ConfigMap", ns, "ca")
        return
    values = {"ca.crt": draw(st.sampled_from([CA_PEM, OTHER_CA_PEM]))} if data == "valid" else \
        {"ca.crt": "garbage"} if data == "garbage" else {"x": "y"}
    world.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("ca", ns), "data": values})


CHANGES = [gateway_class, gateway, secret, grant, namespace, service, service_import, endpoint_slice, route, route,
           route, grpc_route, grpc_route, grpc_route, stream_route, stream_route, tls_route, tls_route, addresses,
           bind_addresses, backend_tls_policy, config_map]


def _serialised(output: ClusterOutput) -> dict[tuple[str, str], list[bytes]]:
    return {key: [m.SerializeToString(deterministic=True) for m in messages]
            for key, messages in sorted(output.resources.items())}


def _world() -> World:
    """A cluster where most things already connect: routes attach and name Services that have endpoints."""
    world = World()
    world.put({"apiVersion": V1, "kind": "GatewayClass", "metadata": _meta("mcgw", generation=1),
               "spec": {"controllerName": "mcgw.io/gateway-controller"}})
    world.put({"apiVersion": V1, "kind": "Gateway", "metadata": _meta("public", "infra", generation=1),
               "spec": {"gatewayClassName": "mcgw", "listeners": [
                   {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}},
                   {"name": "selected", "port": 8080, "protocol": "HTTP", "allowedRoutes": {"namespaces": {
                       "from": "Selector", "selector": {"matchLabels": {"team": "yes"}}}}},
                   {"name": "db", "port": 5432, "protocol": "TCP", "allowedRoutes": {"namespaces": {"from": "All"}}},
                   {"name": "dns", "port": 80, "protocol": "UDP", "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
    # TLS: a passthrough and a terminate listener sharing a port, with a route through each.
    world.put({"apiVersion": V1, "kind": "Gateway", "metadata": _meta("edge", "infra", generation=1),
               "spec": {"gatewayClassName": "mcgw", "listeners": [
                   {"name": "pass", "port": 8443, "protocol": "TLS", "hostname": "*.example.com",
                    "tls": {"mode": "Passthrough"}, "allowedRoutes": {"namespaces": {"from": "All"}}},
                   {"name": "term", "port": 8443, "protocol": "TLS", "hostname": "t.example.com",
                    "tls": {"mode": "Terminate", "certificateRefs": [{"name": "cert"}]},
                    "allowedRoutes": {"namespaces": {"from": "All"}}}]}})
    world.put({"apiVersion": V1, "kind": "TLSRoute", "metadata": _meta("t1", "apps", generation=1),
               "spec": {"parentRefs": [{"name": "edge", "namespace": "infra"}],
                        "hostnames": ["db.example.com", "t.example.com"],
                        "rules": [{"backendRefs": [{"name": "app", "port": 80}, {"name": "api", "port": 81}]}]}})
    world.put({"apiVersion": "v1", "kind": "Namespace", "metadata": _meta("team", labels={"team": "yes"})})
    # Service app in apps is reached over TLS, and the Gateways' certificate Secret exists: a Gateway change
    # alone can give its TLS clusters a client certificate.
    world.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("ca", "apps"), "data": {"ca.crt": CA_PEM}})
    world.put({"apiVersion": V1, "kind": "BackendTLSPolicy", "metadata": _meta("p0", "apps", generation=1),
               "spec": {"targetRefs": [{"group": "", "kind": "Service", "name": "app"}],
                        "validation": {"hostname": "a.example.com",
                                       "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "ca"}]}}})
    world.put({"apiVersion": "v1", "kind": "Secret", "metadata": _meta("cert", "infra"), "type": "kubernetes.io/tls",
               "data": TLS_DATA})
    world.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("ca", "infra"), "data": {"ca.crt": CA_PEM}})
    for ns, name in SERVICES:
        world.put({"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, ns),
                   "spec": {"ports": [{"name": "http", "port": 80}, {"name": "alt", "port": 81}]}})
        world.put({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": _meta(f"{name}-1", ns, labels={"kubernetes.io/service-name": name}),
                   "ports": [{"name": "http", "port": 8080}, {"name": "alt", "port": 9090}],
                   "endpoints": [{"addresses": [f"198.18.0.{i}"]} for i in (1, 2)]})
    for i, (ns, name, hostnames) in enumerate([("apps", "r0", ["a.example.com"]), ("team", "r1", []),
                                               ("apps", "r2", ["b.example.org"])]):
        world.put({"apiVersion": V1, "kind": "HTTPRoute",
                   "metadata": _meta(name, ns, creationTimestamp="2026-01-01T12:00:00Z"),
                   "spec": {"parentRefs": [{"name": "public", "namespace": "infra"}], "hostnames": hostnames,
                            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": f"/{i}"}}],
                                       "backendRefs": [{"name": "app", "port": 80},
                                                       {"name": "api", "namespace": "apps", "port": 81},
                                                       {"name": "app", "namespace": "team", "port": 80}]}]}})
    return world


@settings(max_examples=int(os.environ.get("MCGW_INCREMENTAL_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_incremental_translation_equals_full_translation(data: st.DataObject) -> None:
    world = _world()
    translator = ClusterTranslator("east")
    earlier: list[tuple[ClusterOutput, dict[str, Any], dict[tuple[str, str], list[bytes]]]] = []
    snapshots: dict[tuple[str, str], Snapshot] = {}
    for _ in range(data.draw(st.integers(1, 12), label="changes")):
        change = data.draw(st.sampled_from(CHANGES), label="change")
        change(world, data.draw)
        objects = world.sorted()
        how = data.draw(st.sampled_from(["same objects"] * 6 + ["equal copies", "another order"]))
        if how == "equal copies":  # a relist: equal objects, none of them the same Python object
            objects = tuple(copy.copy(o) for o in objects)
        elif how == "another order":
            objects = tuple(reversed(objects))
        incremental = translator.translate(objects, world.addresses, world.binds)
        full = translate_cluster("east", objects, world.addresses, world.binds)
        for gateway in full.gateways:
            ir.validate(gateway)
        assert incremental.statuses() == full.statuses()
        assert incremental.gateways == full.gateways
        serialised = _serialised(incremental)
        assert serialised == _serialised(full)
        for key in incremental.resources:
            snapshot = incremental.snapshot(key, snapshots.get(key))
            expected = Snapshot.from_messages(full.resources[key])
            assert snapshot.versions == expected.versions
            assert {t: {n: r.payload for n, r in of_type.items()} for t, of_type in snapshot.resources.items()} == \
                {t: {n: r.payload for n, r in of_type.items()} for t, of_type in expected.resources.items()}
            snapshots[key] = snapshot
        for output, statuses, resources in earlier:  # outputs are shared, never changed afterwards
            assert output.statuses() == statuses
            assert _serialised(output) == resources
        earlier = [*earlier[-2:], (incremental, incremental.statuses(), serialised)]


def test_route_table_bytes_equal_protobuf_serialisation() -> None:
    """Route tables are assembled from cached bytes; they must be what protobuf itself would write."""
    world = _world()
    for i in range(3):
        world.put({"apiVersion": V1, "kind": "HTTPRoute", "metadata": _meta(f"r{i}", "infra"),
                   "spec": {"parentRefs": [{"name": "public"}], "hostnames": [f"h{i}.example.com", "*.example.com"],
                            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": f"/p{i}"}}]}]}})
    world.put({"apiVersion": "v1", "kind": "Secret", "metadata": _meta("cert", "infra"), "type": "kubernetes.io/tls",
               "data": TLS_DATA})
    gateway = world.objects[("Gateway", "infra", "public")]
    world.put({"apiVersion": V1, "kind": "Gateway", "metadata": _meta("public", "infra", generation=1),
               "spec": {"gatewayClassName": "mcgw", "listeners": [
                   {"name": "http", "port": 80, "protocol": "HTTP"},
                   *({"name": f"tls-{i}", "port": 443, "protocol": "HTTPS", "hostname": hostname,
                      "tls": {"certificateRefs": [{"name": "cert"}]}}
                     for i, hostname in enumerate(["h0.example.com", "*.example.com"]))]}})
    assert world.objects[("Gateway", "infra", "public")] is not gateway
    output = ClusterTranslator("east").translate(world.sorted())
    assert output.built is not None
    tables = [b for b in output.built[GATEWAY] if b.name.startswith("infra/public/443/")]
    assert [t.name for t in tables if t.resource.type_url.endswith("RouteConfiguration")] == [
        "infra/public/443/tls-0", "infra/public/443/tls-1"]  # one per HTTPS listener, with 421 virtual hosts
    for built in output.built[GATEWAY]:
        assert built.resource.payload == built.message.SerializeToString(deterministic=True)

