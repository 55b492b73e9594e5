"""The CORS filter (HTTPRouteCORS): what the CRD refuses drops the rule with a message saying what to
change; a valid policy reaches Envoy's CORS filter as the route's own CorsPolicy, and Envoy accepts it."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from mcgw import ir
from mcgw.objects.model import AnyObject, parse_object
from mcgw.runtime.pipeline import ClusterOutput, translate_cluster
from mcgw.semantics.gateway.cors import origin_matchers
from tests.envoy_validate import validate
from tests.mcgw.manifests import V1, public_gateway

CORS_POLICY = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"


def _objects(rules: list[dict[str, Any]]) -> list[AnyObject]:
    documents = [
        *public_gateway(),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": "infra"},
         "spec": {"ports": [{"name": "http", "port": 8080}]}},
        {"apiVersion": V1, "kind": "HTTPRoute", "metadata": {"name": "cors", "namespace": "infra", "generation": 1},
         "spec": {"parentRefs": [{"name": "public"}], "rules": rules}},
    ]
    return [parse_object(document, "test") for document in documents]


def _translate(rules: list[dict[str, Any]]) -> ClusterOutput:
    output = translate_cluster("east", _objects(rules))
    for gateway in output.gateways:
        ir.validate(gateway)
    return output


def _messages(output: ClusterOutput, kind: str) -> list[dict[str, Any]]:
    return [json_format.MessageToDict(m) for messages in output.resources.values() for m in messages
            if m.DESCRIPTOR.name == kind]


def _routes(output: ClusterOutput) -> list[dict[str, Any]]:
    (table,) = _messages(output, "RouteConfiguration")
    return [route for vhost in table["virtualHosts"] for route in vhost["routes"]]


def _rule(cors: dict[str, Any], path: str = "/cors") -> dict[str, Any]:
    return {"matches": [{"path": {"type": "PathPrefix", "value": path}}], "filters": [{"type": "CORS", "cors": cors}],
            "backendRefs": [{"name": "echo", "port": 8080}]}


# The conformance test's first route (httproute-cors.yaml).
CONFORMANCE_CORS = {"allowOrigins": ["https://www.foo.com", "https://*.bar.com"], "allowMethods": ["GET", "OPTIONS"],
                    "allowHeaders": ["x-header-1", "x-header-2"], "exposeHeaders": ["x-header-3", "x-header-4"],
                    "allowCredentials": True, "maxAge": 3600}


def test_a_cors_filter_is_the_routes_cors_policy_before_the_router_and_envoy_accepts_it() -> None:
    output = _translate([_rule(CONFORMANCE_CORS), {"backendRefs": [{"name": "echo", "port": 8080}]}])
    with_cors, without = _routes(output)
    assert with_cors["typedPerFilterConfig"] == {"envoy.filters.http.cors": {
        "@type": CORS_POLICY,
        "allowOriginStringMatch": [{"exact": "https://www.foo.com"}, {"exact": "https://www.foo.com:443"},
                                   {"safeRegex": {"regex": r"https://[^/:]+\.bar\.com(:443)?"}}],
        "allowMethods": "GET, OPTIONS", "allowHeaders": "x-header-1, x-header-2",
        "exposeHeaders": "x-header-3, x-header-4", "maxAge": "3600", "allowCredentials": True,
        "forwardNotMatchingPreflights": False}}
    assert "typedPerFilterConfig" not in without
    (listener,) = _messages(output, "Listener")
    manager = listener["filterChains"][0]["filters"][0]["typedConfig"]
    assert [f["name"] for f in manager["httpFilters"]] == ["envoy.filters.http.cors", "envoy.filters.http.router"]
    for messages in output.resources.values():
        checked = validate(list(messages))
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_wildcards_and_the_crd_default_max_age() -> None:
    output = _translate([_rule({"allowOrigins": ["*"], "allowMethods": ["*"], "allowHeaders": ["*"],
                                "allowCredentials": False})])
    (route,) = _routes(output)
    policy = route["typedPerFilterConfig"]["envoy.filters.http.cors"]
    # Envoy answers "*" methods and headers with what the preflight asks for, and echoes the origin.
    assert policy == {"@type": CORS_POLICY, "allowOriginStringMatch": [{"safeRegex": {"regex": ".*"}}],
                      "allowMethods": "*", "allowHeaders": "*", "maxAge": "5", "forwardNotMatchingPreflights": False}


@pytest.mark.parametrize(("origin", "expected"), [
    ("https://www.foo.com", (("https://www.foo.com", False), ("https://www.foo.com:443", False))),
    ("http://www.foo.com:80", (("http://www.foo.com", False), ("http://www.foo.com:80", False))),
    ("https://WWW.Foo.com:8443", (("https://www.foo.com:8443", False),)),
    ("https://*.bar.com", ((r"https://[^/:]+\.bar\.com(:443)?", True),)),
    ("http://*:8080", (("http://[^/:]+:8080", True),)),
    ("*", ((".*", True),)),
])
def test_an_origin_without_a_port_means_the_schemes_default_one(origin: str,
                                                                expected: tuple[tuple[str, bool], ...]) -> None:
    assert origin_matchers(origin) == expected


def _problem(output: ClusterOutput) -> str:
    parent = output.statuses()["HTTPRoute"]["infra/cors"]["parents"][0]
    conditions = {c["type"]: c for c in parent["conditions"]}
    partial = conditions["PartiallyInvalid"]
    assert (partial["status"], partial["reason"]) == ("True", "UnsupportedValue")
    message: str = partial["message"]
    return message


@pytest.mark.parametrize(("filters", "expected"), [
    ([{"type": "CORS", "cors": {"allowOrigins": ["ftp://a.example.com"]}}],
     "CORS allowOrigins entry 'ftp://a.example.com' is not an origin"),
    ([{"type": "CORS", "cors": {"allowOrigins": ["https://a.example.com/path"]}}], "is not an origin"),
    ([{"type": "CORS", "cors": {"allowOrigins": ["https://a.example.com:70000"]}}],
     "port 70000 is outside 1..65535"),
    ([{"type": "CORS", "cors": {"allowOrigins": ["*", "https://a.example.com"]}}],
     "CORS allowOrigins has '*' alongside other entries"),
    ([{"type": "CORS", "cors": {"allowOrigins": ["https://a.example.com", "https://a.example.com"]}}],
     "CORS allowOrigins lists 'https://a.example.com' more than once"),
    ([{"type": "CORS", "cors": {"allowMethods": ["GET", "*"]}}], "CORS allowMethods has '*' alongside"),
    ([{"type": "CORS", "cors": {"allowMethods": ["get"]}}], "CORS allowMethods entry 'get' is not supported"),
    ([{"type": "CORS", "cors": {"allowHeaders": ["x-a", "*"]}}], "CORS allowHeaders has '*' alongside"),
    ([{"type": "CORS", "cors": {"exposeHeaders": ["bad header"]}}],
     "CORS exposeHeaders entry 'bad header' is not a valid HTTP header name"),
    ([{"type": "CORS", "cors": {"maxAge": 0}}], "CORS maxAge 0 is outside 1..2147483647"),
    ([{"type": "CORS"}], "filter of type CORS has no cors; set cors"),
    ([{"type": "CORS", "cors": {}, "urlRewrite": {}}], "filter of type CORS also sets urlRewrite"),
    ([{"type": "CORS", "cors": {}}, {"type": "CORS", "cors": {}}], "the rule has more than one CORS filter"),
    ([{"type": "CORS", "cors": {"allowOrigins": ["https://*." + "a" * 63 + "." + "b" * 40 + ".com"]}}],
     "is too complex for Envoy"),
])
def test_a_cors_filter_the_crd_refuses_drops_the_rule_and_says_why(filters: list[dict[str, Any]],
                                                                  expected: str) -> None:
    bad = {"matches": [{"path": {"value": "/bad"}}], "filters": filters,
           "backendRefs": [{"name": "echo", "port": 8080}]}
    output = _translate([bad, _rule({"allowOrigins": ["*"]}, "/good")])
    message = _problem(output)
    assert message.startswith("Dropped Rule 0: "), message
    assert expected in message, message
    assert [r["match"]["pathSeparatedPrefix"] for r in _routes(output)] == ["/good"]


def test_a_cors_filter_on_a_backend_ref_drops_the_rule_and_names_the_rule_as_its_place() -> None:
    bad = {"matches": [{"path": {"value": "/bad"}}],
           "backendRefs": [{"name": "echo", "port": 8080, "filters": [{"type": "CORS", "cors": {}}]}]}
    output = _translate([bad, _rule({"allowOrigins": ["*"]}, "/good")])
    assert _problem(output) == ("Dropped Rule 0: backendRef echo: filter type CORS is not supported on a backendRef; "
                                "use RequestHeaderModifier or ResponseHeaderModifier; or move it to the rule's filters")
