"""Property: whatever HTTPRoutes and TLSRoutes users write (within the CRDs' schemas), real Envoy accepts what
mcgw emits.

Hypothesis generates routes with every match and filter kind, including regular expressions that
RE2 or Envoy would refuse; the translator must drop those rules rather than emit them.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcgw import ir
from mcgw.objects.model import parse_object
from mcgw.runtime.pipeline import translate_cluster
from tests.envoy_validate import validate
from tests.mcgw.certs import self_signed

_PATH_ALPHABET = "-abcXYZ019/._~!$&'()*+,;=:@"
paths = st.text(alphabet=_PATH_ALPHABET, max_size=16).map(lambda s: "/" + s)
header_names = st.from_regex(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,16}$", fullmatch=True)
header_values = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=24)
regexes = st.sampled_from(["^/v[0-9]+$", "[a-z]+", ".*", "(unclosed", "a{2,1}", "(a|b|c)+" * 25, "\\d+", "^$"])
durations = st.builds(lambda n, unit: f"{n}{unit}", st.integers(1, 999), st.sampled_from(["ms", "s", "m", "h"]))


@st.composite
def matches(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["Exact", "PathPrefix", "RegularExpression"]))
    match: dict[str, Any] = {"path": {"type": kind, "value": draw(regexes if kind == "RegularExpression" else paths)}}
    if draw(st.booleans()):
        match["headers"] = [{"type": draw(st.sampled_from(["Exact", "RegularExpression"])), "name": name,
                             "value": draw(header_values)}
                            for name in draw(st.lists(header_names, max_size=3, unique_by=str.lower))]
        for header in match["headers"]:
            if header["type"] == "RegularExpression":
                header["value"] = draw(regexes)
    if draw(st.booleans()):
        match["queryParams"] = [{"name": name, "value": draw(header_values)}
                                for name in draw(st.lists(header_names, max_size=2, unique=True))]
    if draw(st.booleans()):
        match["method"] = draw(st.sampled_from(["GET", "POST", "DELETE", "PATCH"]))
    return match


def _header_modifier(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(header_names, max_size=4, unique_by=str.lower))
    half = len(names) // 2
    return {"set": [{"name": n, "value": draw(header_values)} for n in names[:half]],
            "add": [{"name": n, "value": draw(header_values)} for n in names[half:]],
            "remove": draw(st.lists(header_names, max_size=2, unique=True))}


_ORIGINS = st.sampled_from(["*", "https://a.example.com", "http://a.example.com:8080", "https://*.example.com",
                            "http://*", "https://*." + "x" * 90 + ".com", "ftp://nope"])


def _cors(draw: st.DrawFn) -> dict[str, Any]:
    cors: dict[str, Any] = {"allowOrigins": draw(st.lists(_ORIGINS, max_size=3, unique=True))}
    if draw(st.booleans()):
        cors["allowMethods"] = draw(st.sampled_from([["*"], ["GET", "PUT"], ["OPTIONS"]]))
    if draw(st.booleans()):
        cors["allowHeaders"] = draw(st.sampled_from([["*"], ["x-a", "X-B"]]))
    if draw(st.booleans()):
        cors["exposeHeaders"] = draw(st.lists(header_names, max_size=2, unique=True))
    if draw(st.booleans()):
        cors["allowCredentials"] = draw(st.booleans())
    if draw(st.booleans()):
        cors["maxAge"] = draw(st.integers(1, 2**31 - 1))
    return cors


def _backend_filters(draw: st.DrawFn) -> list[dict[str, Any]]:
    filters: list[dict[str, Any]] = []
    if draw(st.booleans()):
        filters.append({"type": "RequestHeaderModifier", "requestHeaderModifier": _header_modifier(draw)})
    if draw(st.booleans()):
        filters.append({"type": "ResponseHeaderModifier", "responseHeaderModifier": _header_modifier(draw)})
    return filters


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {"matches": draw(st.lists(matches(), min_size=1, max_size=3))}
    filters: list[dict[str, Any]] = []
    if draw(st.booleans()):
        filters.append({"type": "RequestHeaderModifier", "requestHeaderModifier": _header_modifier(draw)})
    if draw(st.booleans()):
        filters.append({"type": "ResponseHeaderModifier", "responseHeaderModifier": _header_modifier(draw)})
    if draw(st.booleans()):
        filters.append({"type": "CORS", "cors": _cors(draw)})
    path_modifier = draw(st.sampled_from([
        None, {"type": "ReplaceFullPath", "replaceFullPath": "/full"},
        {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/prefix"}]))
    choice = draw(st.sampled_from(["backends", "redirect", "rewrite"]))
    if choice == "redirect":
        redirect: dict[str, Any] = {"statusCode": draw(st.sampled_from([301, 302]))}
        if draw(st.booleans()):
            redirect["hostname"] = "elsewhere.example.com"
        if path_modifier:
            redirect["path"] = path_modifier
        filters.append({"type": "RequestRedirect", "requestRedirect": redirect})
    else:
        if choice == "rewrite":
            rewrite: dict[str, Any] = {"hostname": "internal.example"}
            if path_modifier:
                rewrite["path"] = path_modifier
            filters.append({"type": "URLRewrite", "urlRewrite": rewrite})
        if draw(st.booleans()):
            filters.append({"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "app", "port": 80}}})
        rule["backendRefs"] = [{"name": draw(st.sampled_from(["app", "missing"])), "port": 80,
                                "weight": draw(st.integers(0, 100)), "filters": _backend_filters(draw)}
                               for _ in range(draw(st.integers(0, 3)))]
        if draw(st.booleans()):
            rule["timeouts"] = {"request": draw(durations)}
        if draw(st.booleans()):
            rule["retry"] = {"codes": draw(st.lists(st.sampled_from([500, 502, 503, 504]), max_size=2, unique=True)),
                             "attempts": draw(st.integers(0, 5)), "backoff": draw(durations)}
    rule["filters"] = filters
    return rule


BASE = [
    {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
     "spec": {"controllerName": "mcgw.io/gateway-controller"}},
    {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "gw", "namespace": "apps"},
     "spec": {"gatewayClassName": "mcgw", "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "app", "namespace": "apps"},
     "spec": {"ports": [{"name": "http", "port": 80}]}},
    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
     "metadata": {"name": "app-1", "namespace": "apps", "labels": {"kubernetes.io/service-name": "app"}},
     "ports": [{"name": "http", "port": 8080}], "endpoints": [{"addresses": ["198.18.1.30"]}]},
]


# MCGW_PROPERTY_EXAMPLES raises the number of examples for a deeper local search.
@settings(max_examples=int(os.environ.get("MCGW_PROPERTY_EXAMPLES", "40")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(routes=st.lists(st.lists(rules(), min_size=1, max_size=3), min_size=1, max_size=3),
       hostnames=st.lists(st.sampled_from(["a.example.com", "*.example.com", "b.example.org"]), max_size=2,
                          unique=True))
def test_envoy_accepts_whatever_routes_translate_to(routes: list[list[dict[str, Any]]], hostnames: list[str]) -> None:
    documents = [*BASE] + [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": f"r{i}", "namespace": "apps", "creationTimestamp": f"2026-01-0{i + 1}T00:00:00Z"},
         "spec": {"parentRefs": [{"name": "gw"}], "hostnames": hostnames, "rules": route_rules}}
        for i, route_rules in enumerate(routes)
    ]
    objects = [parse_object(doc, f"generated {i}") for i, doc in enumerate(documents)]
    result = translate_cluster("east", objects, {("apps", "gw"): ["198.18.0.10"]})
    for gateway in result.gateways:
        ir.validate(gateway)
    for messages in result.resources.values():
        checked = validate(list(messages))
        assert checked.returncode == 0, checked.stdout + checked.stderr


TLS_HOSTNAMES = ["a.example.com", "*.example.com", "t.example.com", "x.t.example.com", "*.t.example.com", "*.com",
                 "b.example.org"]


@st.composite
def tls_route(draw: st.DrawFn, index: int) -> dict[str, Any]:
    refs = [{"name": draw(st.sampled_from(["app", "missing"])), "port": 80, "weight": draw(st.integers(0, 3))}
            for _ in range(draw(st.integers(1, 3)))]
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "TLSRoute",
            "metadata": {"name": f"t{index}", "namespace": "apps",
                         "creationTimestamp": f"2026-01-0{draw(st.integers(1, 2))}T00:00:00Z"},
            "spec": {"parentRefs": [draw(st.sampled_from([{"name": "gw"}, {"name": "gw", "sectionName": "pass"},
                                                          {"name": "gw", "sectionName": "term"}]))],
                     "hostnames": draw(st.lists(st.sampled_from(TLS_HOSTNAMES), min_size=1, max_size=3, unique=True)),
                     "rules": [{"backendRefs": refs}]}}


# A test-only self-signed certificate for the terminate listener.
TLS_SECRET = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
              "metadata": {"name": "cert", "namespace": "apps"}, "data": self_signed("t.example.com")}


@settings(max_examples=int(os.environ.get("MCGW_PROPERTY_EXAMPLES", "40")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), passthrough=st.sampled_from([None, "*.example.com", "a.example.com"]),
       terminate=st.sampled_from(["none", "t.example.com", "*.t.example.com", "a.example.com"]))
def test_envoy_accepts_whatever_tls_routes_translate_to(data: st.DataObject, passthrough: str | None,
                                                        terminate: str) -> None:
    """TLS listeners of both modes sharing a port, TLSRoutes whose names meet theirs or not, overlap, or are
    claimed twice: every SNI name chooses one filter chain, and real Envoy accepts the listener."""
    listeners: list[dict[str, Any]] = [{"name": "pass", "port": 8443, "protocol": "TLS",
                                        "tls": {"mode": "Passthrough"}}]
    if passthrough is not None:
        listeners[0]["hostname"] = passthrough
    if terminate != "none":
        listeners.append({"name": "term", "port": 8443, "protocol": "TLS", "hostname": terminate,
                          "tls": {"mode": "Terminate", "certificateRefs": [{"name": "cert"}]}})
    gateway = {**BASE[1], "spec": {"gatewayClassName": "mcgw", "listeners": listeners}}
    routes = [data.draw(tls_route(i)) for i in range(data.draw(st.integers(1, 4)))]
    documents = [BASE[0], gateway, *BASE[2:], TLS_SECRET, *routes]
    objects = [parse_object(doc, f"generated {i}") for i, doc in enumerate(documents)]
    result = translate_cluster("east", objects, {("apps", "gw"): ["198.18.0.10"]})
    for gateway_ir in result.gateways:
        ir.validate(gateway_ir)
    for messages in result.resources.values():
        checked = validate(list(messages))
        assert checked.returncode == 0, checked.stdout + checked.stderr
