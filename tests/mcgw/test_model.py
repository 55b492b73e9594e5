"""Manifests parse into typed objects, and a bad manifest says which object and which field."""

from __future__ import annotations

import pytest
import yaml
from pydantic import TypeAdapter

from mcgw.objects.model import Gateway, HTTPRoute, LabelSelector, ManifestError, ReferenceGrant, parse_object

GATEWAY = yaml.safe_load("""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public, namespace: infra, generation: 3, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  gatewayClassName: mcgw
  listeners:
    - name: http
      port: 80
      protocol: HTTP
      allowedRoutes:
        namespaces:
          from: Selector
          selector: {matchLabels: {team: shop}}
    - name: https
      port: 443
      protocol: HTTPS
      hostname: "*.example.com"
      tls: {certificateRefs: [{name: wildcard-cert}]}
""")

ROUTE = yaml.safe_load("""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: shop}
spec:
  parentRefs: [{name: public, namespace: infra, sectionName: http}]
  hostnames: [shop.example.com]
  rules:
    - matches:
        - path: {type: Exact, value: /cart}
          headers: [{name: x-canary, value: "1"}]
          queryParams: [{type: RegularExpression, name: v, value: "^2"}]
          method: POST
      filters:
        - type: URLRewrite
          urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
      backendRefs:
        - {name: cart, port: 8080, weight: 90}
        - {group: multicluster.x-k8s.io, kind: ServiceImport, name: cart, port: 8080, weight: 10}
      timeouts: {request: 10s, backendRequest: 2s}
    - backendRefs: [{name: catalog, port: 80}]
""")


def test_gateway_parses_with_defaults() -> None:
    gateway = parse_object(GATEWAY, "infra.yaml#1")
    assert isinstance(gateway, Gateway)
    assert gateway.key == ("Gateway", "infra", "public")
    assert gateway.metadata.generation == 3
    http, https = gateway.spec.listeners
    assert http.allowed_routes.namespaces.from_ == "Selector"
    assert http.allowed_routes.namespaces.selector is not None
    assert http.allowed_routes.namespaces.selector.matches({"team": "shop"})
    assert https.tls is not None
    assert https.tls.mode == "Terminate"
    assert https.tls.certificate_refs[0].kind == "Secret"
    assert https.allowed_routes.namespaces.from_ == "Same"


def test_httproute_parses_matches_filters_and_backends() -> None:
    route = parse_object(ROUTE, "shop.yaml#1")
    assert isinstance(route, HTTPRoute)
    first, second = route.spec.rules
    match = first.matches[0]
    assert (match.path.type, match.path.value, match.method) == ("Exact", "/cart", "POST")
    assert match.headers[0].type == "Exact"
    assert match.query_params[0].type == "RegularExpression"
    rewrite = first.filters[0].url_rewrite
    assert rewrite is not None
    assert rewrite.path is not None
    assert rewrite.path.replace_prefix_match == "/v2"
    assert [(b.kind, b.weight) for b in first.backend_refs] == [("Service", 90), ("ServiceImport", 10)]
    assert first.timeouts is not None
    assert first.timeouts.backend_request == "2s"
    # A rule without matches matches every path, as the CRD default says.
    assert (second.matches[0].path.type, second.matches[0].path.value) == ("PathPrefix", "/")


def test_reference_grant_from_keyword() -> None:
    grant = parse_object({
        "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "allow", "namespace": "backends"},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "shop"}],
                 "to": [{"group": "", "kind": "Service"}]},
    }, "grant.yaml#1")
    assert isinstance(grant, ReferenceGrant)
    assert grant.spec.from_[0].namespace == "shop"
    assert grant.spec.to[0].name is None


def test_bad_field_names_the_object_and_the_field() -> None:
    broken = {**GATEWAY, "spec": {**GATEWAY["spec"], "listeners": [{"name": "http", "port": "eighty",
                                                                     "protocol": "HTTP"}]}}
    with pytest.raises(ManifestError, match=r"infra.yaml#1: Gateway 'public': spec.listeners.0.port: "):
        parse_object(broken, "infra.yaml#1")


def test_unknown_kind_and_non_objects_are_refused_clearly() -> None:
    with pytest.raises(ManifestError, match="unsupported kind 'Ingress'"):
        parse_object({"kind": "Ingress", "metadata": {"name": "x"}}, "f.yaml#2")
    with pytest.raises(ManifestError, match="expected a Kubernetes object"):
        parse_object(["not", "an", "object"], "f.yaml#3")


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
    ({}, {"anything": "x"}, True),
])
def test_label_selector(selector: dict[str, object], labels: dict[str, str], expected: bool) -> None:
    assert TypeAdapter(LabelSelector).validate_python(selector).matches(labels) is expected


def _many_rules(count: int) -> dict[str, object]:
    rules = [{"matches": [{"path": {"type": "PathPrefix", "value": f"/r{i}/m{m}"}} for m in range(3)],
              "backendRefs": [{"name": "web", "port": 80, "weight": i}]} for i in range(count)]
    return {**ROUTE, "spec": {**ROUTE["spec"], "rules": rules}}


def test_a_route_with_many_rules_parses_as_one_with_few_does() -> None:
    # Past the CRD's 16 rules, rules are validated one per call (so no single call holds the GIL for long);
    # the parsed route must be the very same as from a single validation.
    data = _many_rules(40)
    route = parse_object(data, "many.yaml")
    assert isinstance(route, HTTPRoute)
    assert route == TypeAdapter(HTTPRoute).validate_python(data)
    assert [r.backend_refs[0].weight for r in route.spec.rules] == list(range(40))


def test_a_bad_rule_of_a_long_route_is_named_with_its_path_and_other_errors() -> None:
    data = _many_rules(40)
    data["spec"]["rules"][25]["matches"][1]["path"]["type"] = "Glob"  # type: ignore[index]
    data = {**data, "metadata": {"name": "shop", "namespace": 7}}
    with pytest.raises(ManifestError) as raised:
        parse_object(data, "many.yaml")
    assert str(raised.value) == (
        "many.yaml: HTTPRoute 'shop': metadata.namespace: Input should be a valid string; "
        "spec.rules.25.matches.1.path.type: Input should be 'Exact', 'PathPrefix' or 'RegularExpression'")
