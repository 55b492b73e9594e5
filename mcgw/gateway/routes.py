"""From evaluated Gateways and HTTPRoutes to the IR: virtual hosts per port, routes in precedence order.

Precedence within a virtual host (Gateway API v1): an Exact path first, then regular expressions,
then the longest prefix; then a method match, then more header matches, then more query matches;
ties go to the oldest route, then namespace/name, then rule and match order. Envoy picks the most
specific virtual host (exact hostname before wildcards) itself.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mcgw import ir
from mcgw.model import BackendObjectReference, HeaderModifier, PathModifier, RouteRule, Secret

from .backends import SERVICE, ResolvedBackend
from .listeners import ListenerResult
from .semantics import Evaluation, RouteResult

# (namespace, service, port) -> endpoints of that Service port in this cluster
EndpointLookup = Callable[[str, str, int], tuple[ir.EndpointIR, ...]]
_PATH_RANK = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}


@dataclass(frozen=True)
class _Ranked:
    key: tuple[object, ...]
    route: ir.RouteIR


def _header_ops(modifier: HeaderModifier | None) -> ir.HeaderOpsIR:
    if modifier is None:
        return ir.HeaderOpsIR()
    return ir.HeaderOpsIR(tuple((h.name, h.value) for h in modifier.set),
                          tuple((h.name, h.value) for h in modifier.add), modifier.remove)


def _path(modifier: PathModifier | None) -> ir.PathRewriteIR | None:
    if modifier is None:
        return None
    if modifier.type == "ReplaceFullPath":
        return ir.PathRewriteIR(full_path=modifier.replace_full_path or "/")
    return ir.PathRewriteIR(prefix=modifier.replace_prefix_match or "/")


def backend_cluster_name(kind: str, namespace: str, name: str, port: int | None) -> str:
    """One Envoy cluster per backend Service (or ServiceImport) port, shared by every route that uses it,
    so an endpoint change touches one ClusterLoadAssignment whatever the number of routes."""
    return f"{kind.lower()}/{namespace}/{name}/{port or 0}"


def _backend(invalid_name: str, resolved: ResolvedBackend, endpoints: EndpointLookup, cluster: str) -> ir.BackendIR:
    ref = resolved.ref
    if resolved.problem is not None:
        return ir.BackendIR(invalid_name, ref.weight, False, "Invalid")
    name = backend_cluster_name(ref.kind, resolved.namespace, ref.name, ref.port)
    if resolved.kind == SERVICE:
        found = endpoints(resolved.namespace, ref.name, ref.port or 0)
        return ir.BackendIR(name, ref.weight, True, "Service", (ir.LocalityIR(cluster, 0, found),))
    # ServiceImport endpoints across the ClusterSet come from the MCS controller.
    return ir.BackendIR(name, ref.weight, True, "ServiceImport")


def _mirror(ref: BackendObjectReference, route_ns: str, endpoints: EndpointLookup, cluster: str) -> ir.BackendIR:
    namespace = ref.namespace or route_ns
    found = endpoints(namespace, ref.name, ref.port or 0)
    return ir.BackendIR(backend_cluster_name("Service", namespace, ref.name, ref.port), 1, True, "Service",
                        (ir.LocalityIR(cluster, 0, found),))


def _rule_routes(result: RouteResult, index: int, rule: RouteRule, endpoints: EndpointLookup,
                 cluster: str) -> list[_Ranked]:
    route = result.route
    ns, name = route.metadata.namespace, route.metadata.name
    prefix = f"{ns}/{name}/rule/{index}"
    backends = tuple(_backend(f"{prefix}/invalid-backend/{j}", resolved, endpoints, cluster)
                     for j, resolved in enumerate(result.backends[index]))
    by_type = {f.type: f for f in rule.filters}
    redirect_filter = by_type.get("RequestRedirect")
    rewrite_filter = by_type.get("URLRewrite")
    redirect = None
    if redirect_filter is not None and redirect_filter.request_redirect is not None:
        r = redirect_filter.request_redirect
        redirect = ir.RedirectIR(r.scheme, r.hostname, r.port, _path(r.path), r.status_code)
    mirrors = tuple(
        _mirror(f.request_mirror.backend_ref, ns, endpoints, cluster)
        for f in rule.filters if f.type == "RequestMirror" and f.request_mirror is not None
    )
    rewrite = rewrite_filter.url_rewrite if rewrite_filter is not None else None
    ranked = []
    for m, match in enumerate(rule.matches):
        match_ir = ir.MatchIR(
            match.path.type, match.path.value,
            tuple(ir.StringMatchIR(h.name, h.value, h.type == "RegularExpression") for h in match.headers),
            tuple(ir.StringMatchIR(q.name, q.value, q.type == "RegularExpression") for q in match.query_params),
            match.method,
        )
        route_ir = ir.RouteIR(
            name=f"{prefix}/match/{m}", match=match_ir, backends=backends,
            request_headers=_header_ops(by_type["RequestHeaderModifier"].request_header_modifier
                                        if "RequestHeaderModifier" in by_type else None),
            response_headers=_header_ops(by_type["ResponseHeaderModifier"].response_header_modifier
                                         if "ResponseHeaderModifier" in by_type else None),
            redirect=redirect,
            rewrite_hostname=rewrite.hostname if rewrite else None,
            rewrite_path=_path(rewrite.path) if rewrite else None,
            mirrors=mirrors,
            timeout=rule.timeouts.request if rule.timeouts else None,
            backend_timeout=rule.timeouts.backend_request if rule.timeouts else None,
            retry_codes=rule.retry.codes if rule.retry else (),
            retry_attempts=rule.retry.attempts if rule.retry else None,
            retry_backoff=rule.retry.backoff if rule.retry else None,
        )
        key = (_PATH_RANK[match.path.type], -len(match.path.value), 0 if match.method else 1, -len(match.headers),
               -len(match.query_params), route.metadata.creation_timestamp, ns, name, index, m)
        ranked.append(_Ranked(key, route_ir))
    return ranked


def _tls_chain(listener: ListenerResult, secrets: Mapping[tuple[str, str], Secret]) -> ir.TlsChainIR:
    certificates = []
    for key in listener.certificate_secrets:
        data = secrets[key].data
        certificates.append((base64.b64decode(data["tls.crt"]).decode(), base64.b64decode(data["tls.key"]).decode()))
    hostname = listener.listener.hostname
    return ir.TlsChainIR((hostname,) if hostname else (), tuple(certificates))


def build_gateways(cluster: str, evaluation: Evaluation, endpoints: EndpointLookup,
                   secrets: Mapping[tuple[str, str], Secret],
                   bind_addresses: Mapping[tuple[str, str], str] | None = None) -> list[ir.GatewayIR]:
    """The IR of every Gateway of one member cluster that has a usable listener.

    ``bind_addresses`` says where each Gateway's Envoy listens (default ``0.0.0.0``).
    """
    gateways = []
    for (gw_ns, gw_name), result in sorted(evaluation.gateways.items()):
        if not any(listener.usable for listener in result.listeners):
            continue
        # port -> hostname -> route name -> ranked route (a route bound through two listeners counts once)
        ports: dict[int, dict[str, dict[str, _Ranked]]] = {}
        protocols: dict[int, str] = {}
        chains: dict[int, list[ir.TlsChainIR]] = {}
        for listener in result.listeners:
            if listener.usable:
                port = listener.listener.port
                ports.setdefault(port, {})
                protocols.setdefault(port, listener.listener.protocol)
                if listener.listener.protocol == "HTTPS":
                    chains.setdefault(port, []).append(_tls_chain(listener, secrets))
        for route_result in evaluation.routes.values():
            rule_routes = None
            for parent in route_result.parents:
                for binding in parent.bindings:
                    if binding.gateway is not result or not binding.listener.usable:
                        continue
                    if rule_routes is None:
                        rule_routes = [ranked for index in route_result.kept_rules for ranked in _rule_routes(
                            route_result, index, route_result.route.spec.rules[index], endpoints, cluster)]
                    for hostname in binding.hostnames:
                        vhost = ports[binding.listener.listener.port].setdefault(hostname, {})
                        for ranked in rule_routes:
                            vhost.setdefault(ranked.route.name, ranked)
        port_irs = []
        for port, vhosts in sorted(ports.items()):
            port_name = f"{gw_ns}/{gw_name}/{port}"
            port_irs.append(ir.PortIR(
                port_name, port, protocols[port],  # type: ignore[arg-type]
                tuple(ir.VirtualHostIR(f"{port_name}/{hostname}", hostname,
                                       tuple(r.route for r in sorted(routes.values(), key=lambda r: r.key)))
                      for hostname, routes in sorted(vhosts.items())),
                tuple(chains.get(port, ())),
            ))
        address = (bind_addresses or {}).get((gw_ns, gw_name), "0.0.0.0")
        gateways.append(ir.GatewayIR(cluster, gw_ns, gw_name, address, tuple(port_irs)))
    return gateways
