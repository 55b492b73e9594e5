"""References across namespaces and to backends that cannot take traffic: backendRefs, RequestMirror
filters and certificateRefs all pass the one ReferenceGrant check (``refs.is_permitted``), and a mirror that
does not resolve is reported (ResolvedRefs False) and never configured."""

from __future__ import annotations

from typing import Any

from mcgw import ir
from mcgw.objects.model import parse_object
from mcgw.runtime.pipeline import ClusterOutput, translate_cluster
from mcgw.semantics.gateway import conditions as c
from mcgw.semantics.gateway.refs import Reference, is_permitted

GATEWAY = ("apps", "gw")
V1 = "gateway.networking.k8s.io/v1"


def _class() -> dict[str, Any]:
    return {"apiVersion": V1, "kind": "GatewayClass", "metadata": {"name": "mcgw"},
            "spec": {"controllerName": "mcgw.io/gateway-controller"}}


def _gateway(listener: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": V1, "kind": "Gateway", "metadata": {"name": "gw", "namespace": "apps"},
            "spec": {"gatewayClassName": "mcgw",
                     "listeners": [listener or {"name": "http", "port": 8080, "protocol": "HTTP"}]}}


def _service(namespace: str, name: str, port: int = 80) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [{"name": "http", "port": port}]}}


def _grant(namespace: str, from_kind: str, to_kind: str, to_group: str = "") -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
            "metadata": {"name": "allow", "namespace": namespace},
            "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": from_kind, "namespace": "apps"}],
                     "to": [{"group": to_group, "kind": to_kind}]}}


def _route(backend: dict[str, Any] | None = None, mirror: dict[str, Any] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                            "backendRefs": [backend or {"name": "app", "port": 80}]}
    if mirror is not None:
        rule["filters"] = [{"type": "RequestMirror", "requestMirror": {"backendRef": mirror}}]
    return {"apiVersion": V1, "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "apps", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [rule]}}


def _translate(*documents: dict[str, Any]) -> ClusterOutput:
    docs = [_class(), _gateway(), _service("apps", "app"), _service("other", "audit"), *documents]
    objects = [parse_object(doc, f"test {i}") for i, doc in enumerate(docs)]
    output = translate_cluster("east", objects, {GATEWAY: ["198.18.0.10"]})
    for gateway in output.gateways:
        ir.validate(gateway)
    return output


def _resolved_refs(output: ClusterOutput) -> tuple[str, str, str]:
    result = output.evaluation.routes[("HTTPRoute", "apps", "r")]
    cond = next(cond for cond in result.parent_conditions[0] if cond.type == c.RESOLVED_REFS)
    return cond.status, cond.reason, cond.message


def _mirror_clusters(output: ClusterOutput) -> list[str]:
    return [mirror.name for gateway in output.gateways for listener in gateway.http
            for vhost in listener.virtual_hosts for route in vhost.routes for mirror in route.mirrors]


def _backend_clusters(output: ClusterOutput) -> list[tuple[str, bool]]:
    return [(backend.name, backend.valid) for gateway in output.gateways for listener in gateway.http
            for vhost in listener.virtual_hosts for route in vhost.routes for backend in route.backends]


AUDIT = {"name": "audit", "namespace": "other", "port": 80}


def test_shared_check_allows_same_namespace_and_granted_references_only() -> None:
    grant = parse_object(_grant("other", "HTTPRoute", "Service"), "grant")
    ref = Reference("gateway.networking.k8s.io", "HTTPRoute", "apps", "", "Service", "other", "audit")
    assert is_permitted(Reference("gateway.networking.k8s.io", "HTTPRoute", "apps", "", "Service", "apps", "x"), ())
    assert not is_permitted(ref, ())
    assert is_permitted(ref, [grant])  # type: ignore[list-item]
    wrong_kind = Reference("gateway.networking.k8s.io", "GRPCRoute", "apps", "", "Service", "other", "audit")
    assert not is_permitted(wrong_kind, [grant])  # type: ignore[list-item]


def test_cross_namespace_mirror_without_grant_is_not_permitted_and_not_mirrored() -> None:
    output = _translate(_route(mirror=AUDIT))
    assert _resolved_refs(output) == (
        "False", c.REASON_REF_NOT_PERMITTED, "RequestMirror backendRef: Service other/audit is in another "
        "namespace and no ReferenceGrant in other allows HTTPRoutes from apps")
    assert _mirror_clusters(output) == []
    assert _backend_clusters(output) == [("service/apps/app/80", True)]  # the route itself still forwards


def test_cross_namespace_mirror_with_grant_mirrors() -> None:
    output = _translate(_route(mirror=AUDIT), _grant("other", "HTTPRoute", "Service"))
    assert _resolved_refs(output)[:2] == ("True", c.REASON_RESOLVED_REFS)
    assert _mirror_clusters(output) == ["service/other/audit/80"]


def test_mirror_to_a_missing_service_is_backend_not_found() -> None:
    output = _translate(_route(mirror={"name": "ghost", "port": 80}))
    assert _resolved_refs(output) == (
        "False", c.REASON_BACKEND_NOT_FOUND, "RequestMirror backendRef: Service apps/ghost does not exist")
    assert _mirror_clusters(output) == []


def test_mirror_without_a_port_is_backend_not_found() -> None:
    output = _translate(_route(mirror={"name": "app"}))
    assert _resolved_refs(output) == (
        "False", c.REASON_BACKEND_NOT_FOUND, "RequestMirror backendRef to Service apps/app has no port; set port")
    assert _mirror_clusters(output) == []


def test_mirror_to_a_port_the_service_lacks_is_backend_not_found() -> None:
    output = _translate(_route(mirror={"name": "app", "port": 81}))
    assert _resolved_refs(output) == (
        "False", c.REASON_BACKEND_NOT_FOUND,
        "RequestMirror backendRef: Service apps/app has no port 81; use one of its ports (80)")
    assert _mirror_clusters(output) == []


def test_mirror_of_an_unsupported_kind_is_invalid_kind() -> None:
    output = _translate(_route(mirror={"group": "example.com", "kind": "Bucket", "name": "b", "port": 80}))
    assert _resolved_refs(output)[:2] == ("False", c.REASON_INVALID_KIND)
    assert _mirror_clusters(output) == []


def test_backend_ref_without_a_port_is_backend_not_found_and_gets_no_cluster() -> None:
    output = _translate(_route(backend={"name": "app"}))
    assert _resolved_refs(output) == (
        "False", c.REASON_BACKEND_NOT_FOUND, "backendRef to Service apps/app has no port; set port")
    assert all(not valid for _, valid in _backend_clusters(output))


def test_backend_ref_to_a_port_the_service_lacks_gets_no_cluster() -> None:
    output = _translate(_route(backend={"name": "app", "port": 81}))
    assert _resolved_refs(output)[:2] == ("False", c.REASON_BACKEND_NOT_FOUND)
    assert all(not valid for _, valid in _backend_clusters(output))


def test_cross_namespace_backend_ref_needs_a_grant() -> None:
    denied = _translate(_route(backend=AUDIT))
    assert _resolved_refs(denied)[:2] == ("False", c.REASON_REF_NOT_PERMITTED)
    assert all(not valid for _, valid in _backend_clusters(denied))
    granted = _translate(_route(backend=AUDIT), _grant("other", "HTTPRoute", "Service"))
    assert _resolved_refs(granted)[:2] == ("True", c.REASON_RESOLVED_REFS)
    assert _backend_clusters(granted) == [("service/other/audit/80", True)]


def _tls_listener() -> dict[str, Any]:
    return {"name": "https", "port": 8443, "protocol": "HTTPS", "hostname": "shop.example",
            "tls": {"mode": "Terminate", "certificateRefs": [{"name": "cert", "namespace": "certs"}]}}


def _secret() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "cert", "namespace": "certs"},
            "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}}


def _listener_resolved_refs(*documents: dict[str, Any]) -> tuple[str, str]:
    docs = [_class(), _gateway(_tls_listener()), _secret(), *documents]
    objects = [parse_object(doc, f"test {i}") for i, doc in enumerate(docs)]
    output = translate_cluster("east", objects, {GATEWAY: ["198.18.0.10"]})
    listener = output.evaluation.gateways[GATEWAY].listeners[0]
    cond = next(cond for cond in listener.conditions if cond.type == c.RESOLVED_REFS)
    return cond.status, cond.reason


def test_cross_namespace_certificate_ref_needs_a_grant() -> None:
    assert _listener_resolved_refs() == ("False", c.REASON_REF_NOT_PERMITTED)
    assert _listener_resolved_refs(_grant("certs", "Gateway", "Secret"))[1] != c.REASON_REF_NOT_PERMITTED


def test_cross_namespace_parent_ref_is_governed_by_allowed_routes_not_by_grants() -> None:
    """The spec lets a Gateway's ``allowedRoutes`` (its own handshake) admit routes from other namespaces;
    a ReferenceGrant plays no part, so a grant neither admits nor refuses a parentRef."""
    route = _route()
    route["metadata"]["namespace"] = "other"
    route["spec"]["parentRefs"] = [{"name": "gw", "namespace": "apps"}]
    route["spec"]["rules"][0]["backendRefs"] = [{"name": "audit", "port": 80}]
    for extra in ((), (_grant("apps", "HTTPRoute", "Gateway", "gateway.networking.k8s.io"),)):
        output = _translate(route, *extra)
        result = output.evaluation.routes[("HTTPRoute", "other", "r")]
        assert result.parents[0].accepted.reason == c.REASON_NOT_ALLOWED_BY_LISTENERS
