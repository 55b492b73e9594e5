"""From evaluated Gateways and HTTPRoutes to the IR: virtual hosts per port, routes in precedence order.

Precedence within a virtual host (Gateway API v1): an Exact path first, then regular expressions,
then the longest prefix; then a method match, then more header matches, then more query matches;
ties go to the oldest route, then namespace/name, then rule and match order. Envoy picks the most
specific virtual host (exact hostname before wildcards) itself.

The work is split so that the incremental translator can reuse it: :func:`route_entries` is one
route's IR (it depends on that route's result and on the endpoints of the Services it names),
:func:`gateway_shape` is a Gateway's ports and TLS chains, and :func:`virtual_host` sorts a virtual
host's routes. :func:`build_gateways` composes them for a whole cluster.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Literal, NamedTuple

from mcgw import ir
from mcgw.ir.failover import FailoverContext
from mcgw.objects.model import HeaderModifier, PathModifier, Secret
from mcgw.semantics.endpoints import EndpointLookup
from mcgw.semantics.gateway.backends import ResolvedBackend
from mcgw.semantics.gateway.evaluate import Evaluation, GatewayKey, RouteResult
from mcgw.semantics.gateway.listeners import GatewayResult, ListenerResult

_PATH_RANK = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}
_by_key = itemgetter(0)
_new = tuple.__new__


# Precedence (lower sorts first): path kind, path length, method, headers, query params, age, namespace, name,
# rule, match.
PrecedenceKey = tuple[int, int, int, int, int, str, str, str, int, int]
RankedRoute = tuple[PrecedenceKey, ir.RouteIR]


class PortShape(NamedTuple):
    port: int
    protocol: Literal["HTTP", "HTTPS"]
    tls: tuple[ir.TlsChainIR, ...]


class GatewayShape(NamedTuple):
    """What a Gateway's IR needs besides its routes: where it binds and its usable ports."""

    key: GatewayKey
    address: str
    ports: tuple[PortShape, ...]


def _header_ops(modifier: HeaderModifier | None) -> ir.HeaderOpsIR:
    if modifier is None or not (modifier.set or modifier.add or modifier.remove):
        return ir.NO_HEADER_OPS
    return _new(ir.HeaderOpsIR, (tuple([(h.name, h.value) for h in modifier.set]),
                                 tuple([(h.name, h.value) for h in modifier.add]), modifier.remove))


def _path(modifier: PathModifier | None) -> ir.PathRewriteIR | None:
    if modifier is None:
        return None
    if modifier.type == "ReplaceFullPath":
        return _new(ir.PathRewriteIR, (modifier.replace_full_path or "/", None))
    return _new(ir.PathRewriteIR, (None, modifier.replace_prefix_match or "/"))


def backend_cluster_name(kind: str, namespace: str, name: str, port: int | None) -> str:
    """One Envoy cluster per backend Service (or ServiceImport) port, shared by every route that uses it,
    so an endpoint change touches one ClusterLoadAssignment whatever the number of routes."""
    return f"{kind.lower()}/{namespace}/{name}/{port or 0}"


class Backends:
    """Backend IR, shared: one BackendIR per (cluster, weight) and one locality tuple per Service port.

    Thousands of rules name the same few Services; sharing makes them cheap to build and to compare.
    The incremental translator keeps one of these and calls :meth:`forget` when a Service's endpoints
    may have changed. ServiceImport backends come from ``failover`` (the ClusterSet's imports, cluster
    properties and FailoverPolicies); a route with a FailoverPolicy of its own gets clusters of its own."""

    def __init__(self, cluster: str, endpoints: EndpointLookup, failover: FailoverContext | None = None) -> None:
        self.cluster = cluster
        self.endpoints = endpoints
        self.failover = failover
        self._backends: dict[tuple[str, str, str, int | None, int, str | None], ir.BackendIR] = {}
        self._localities: dict[tuple[str, str, int], tuple[ir.LocalityIR, ...]] = {}
        self._keys: dict[tuple[str, str], list[tuple[str, str, str, int | None, int, str | None]]] = {}

    def forget(self, namespace: str, name: str) -> None:
        """Drop what was built for this Service (or ServiceImport): its endpoints may have changed."""
        for key in self._keys.pop((namespace, name), ()):
            self._backends.pop(key, None)
            self._localities.pop((namespace, name, key[3] or 0), None)

    def get(self, kind: str, namespace: str, name: str, port: int | None, weight: int,
            route: GatewayKey | None = None) -> ir.BackendIR:
        """``kind`` is ``Service`` or ``ServiceImport``; ``route`` is the HTTPRoute asking (for its policy)."""
        policy = None
        if kind != "Service" and route is not None and self.failover is not None:
            route_policy = self.failover.resolution.for_route(*route)
            policy = route_policy.metadata.name if route_policy is not None else None
        key = (namespace, name, kind, port, weight, policy)
        backend = self._backends.get(key)
        if backend is None:
            backend = self._add(key, route if policy else None)
        return backend

    def of_rule(self, resolved_refs: tuple[ResolvedBackend, ...], route: GatewayKey,
                index: int) -> tuple[ir.BackendIR, ...]:
        """One rule's backendRefs as backend IR, in order; an unresolved one keeps its weight (its share answers
        500). Called once per rule of every route, so Service backends, the common case, take a short path."""
        known = self._backends
        if len(resolved_refs) == 1 and resolved_refs[0].problem is None and resolved_refs[0].ref.kind == "Service":
            resolved = resolved_refs[0]
            ref = resolved.ref
            key = (resolved.namespace, ref.name, "Service", ref.port, ref.weight, None)
            return (known.get(key) or self._add(key, None),)
        out = []
        for j, resolved in enumerate(resolved_refs):
            ref = resolved.ref
            if resolved.problem is not None:
                out.append(_new(ir.BackendIR, (f"{route[0]}/{route[1]}/rule/{index}/invalid-backend/{j}", ref.weight,
                                               False, "Invalid", (), None)))
            elif ref.kind == "Service":
                key = (resolved.namespace, ref.name, "Service", ref.port, ref.weight, None)
                out.append(known.get(key) or self._add(key, None))
            else:
                out.append(self.get("ServiceImport", resolved.namespace, ref.name, ref.port, ref.weight, route))
        return tuple(out)

    def _add(self, key: tuple[str, str, str, int | None, int, str | None], route: GatewayKey | None) -> ir.BackendIR:
        backend = self._backends[key] = self._build(key, route)
        self._keys.setdefault((key[0], key[1]), []).append(key)
        return backend

    def _build(self, key: tuple[str, str, str, int | None, int, str | None],
               route: GatewayKey | None) -> ir.BackendIR:
        namespace, name, kind, port, weight, policy = key
        cluster_name = backend_cluster_name(kind, namespace, name, port)
        if kind != "Service":
            if self.failover is None:
                return ir.BackendIR(cluster_name, weight, True, "ServiceImport")
            settings = self.failover.settings(namespace, name, route)
            if policy is not None:
                cluster_name += f"/policy/{policy}"
            return ir.BackendIR(cluster_name, weight, True, "ServiceImport",
                                self.failover.localities(namespace, name, port or 0, settings), settings)
        localities = self._localities.get((namespace, name, port or 0))
        if localities is None:
            localities = (ir.LocalityIR(self.cluster, 0, self.endpoints(namespace, name, port or 0)),)
            self._localities[(namespace, name, port or 0)] = localities
        return ir.BackendIR(cluster_name, weight, True, "Service", localities)


def _rule_backends(result: RouteResult, index: int, backends: Backends) -> tuple[ir.BackendIR, ...]:
    resolved_refs = result.backends[index]
    if not resolved_refs:
        return ()
    meta = result.route.metadata
    return backends.of_rule(resolved_refs, (meta.namespace, meta.name), index)


def _rule_mirrors(result: RouteResult, index: int, backends: Backends) -> tuple[ir.BackendIR, ...]:
    ns = result.route.metadata.namespace
    refs = [f.request_mirror.backend_ref for f in result.route.spec.rules[index].filters
            if f.type == "RequestMirror" and f.request_mirror is not None]
    return tuple([backends.get("Service", ref.namespace or ns, ref.name, ref.port, 1) for ref in refs])


def _failover_retry(backend_irs: tuple[ir.BackendIR, ...]) -> ir.RetryIR | None:
    """Retries across priorities and hosts: those of the first ServiceImport backend that has them."""
    for backend in backend_irs:
        if backend.failover is not None and backend.failover.retry:
            return backend.failover.retry
    return None


def refresh_backends(result: RouteResult, entries: tuple[RankedRoute, ...],
                     backends: Backends) -> tuple[RankedRoute, ...]:
    """``entries`` (from :func:`route_entries` for ``result``) with their backends built again, for when
    only endpoints changed: far cheaper than building the route again, and the rest stays the same objects."""
    refreshed: list[RankedRoute] = []
    rule_index = -1
    backend_irs: tuple[ir.BackendIR, ...] = ()
    mirrors: tuple[ir.BackendIR, ...] = ()
    for key, route_ir in entries:
        if key[8] != rule_index:
            rule_index = key[8]
            backend_irs = _rule_backends(result, rule_index, backends)
            mirrors = _rule_mirrors(result, rule_index, backends)
        refreshed.append((key, route_ir._replace(backends=backend_irs, mirrors=mirrors,
                                                 failover_retry=_failover_retry(backend_irs))))
    return tuple(refreshed)


def route_entries(result: RouteResult, backends: Backends) -> tuple[RankedRoute, ...]:
    """Every match of every kept rule of one route, as route IR with its precedence key.

    The hottest loop of a full translation (one iteration per match): named tuples are built with
    ``tuple.__new__``, which skips their Python-level constructor and costs a quarter of it."""
    route = result.route
    meta = route.metadata
    ns, name, created = meta.namespace, meta.name, meta.creation_timestamp
    rules = route.spec.rules
    resolved = result.backends
    route_key = (ns, name)
    of_rule = backends.of_rule
    entries: list[RankedRoute] = []
    for index in result.kept_rules:
        rule = rules[index]
        backend_irs = of_rule(resolved[index], route_key, index) if resolved[index] else ()
        failover_retry = _failover_retry(backend_irs)
        request_headers = response_headers = ir.NO_HEADER_OPS
        redirect = rewrite_path = None
        rewrite_hostname = None
        mirrors: tuple[ir.BackendIR, ...] = ()
        # The last filter of each type wins, except mirrors, which all apply.
        for route_filter in rule.filters:
            kind = route_filter.type
            if kind == "RequestHeaderModifier":
                request_headers = _header_ops(route_filter.request_header_modifier)
            elif kind == "ResponseHeaderModifier":
                response_headers = _header_ops(route_filter.response_header_modifier)
            elif kind == "RequestRedirect":
                r = route_filter.request_redirect
                redirect = _new(ir.RedirectIR, (r.scheme, r.hostname, r.port, _path(r.path), r.status_code)) \
                    if r else None
            elif kind == "URLRewrite":
                rewrite = route_filter.url_rewrite
                rewrite_hostname = rewrite.hostname if rewrite else None
                rewrite_path = _path(rewrite.path) if rewrite else None
            elif kind == "RequestMirror" and route_filter.request_mirror is not None:
                mirrors = _rule_mirrors(result, index, backends)
        timeouts, retry = rule.timeouts, rule.retry
        timeout, backend_timeout = (timeouts.request, timeouts.backend_request) if timeouts else (None, None)
        retry_codes, retry_attempts, retry_backoff = (retry.codes, retry.attempts, retry.backoff) if retry \
            else ((), None, None)
        for m, match in enumerate(rule.matches):
            path = match.path
            path_type, path_value = path.type, path.value
            headers, query, method = match.headers, match.query_params, match.method
            match_ir = _new(ir.MatchIR, (
                path_type, path_value,
                tuple([_new(ir.StringMatchIR, (h.name, h.value, h.type == "RegularExpression")) for h in headers])
                if headers else (),
                tuple([_new(ir.StringMatchIR, (q.name, q.value, q.type == "RegularExpression")) for q in query])
                if query else (),
                method,
            ))
            route_ir = _new(ir.RouteIR, (
                f"{ns}/{name}/rule/{index}/match/{m}", match_ir, backend_irs, request_headers, response_headers,
                redirect, rewrite_hostname, rewrite_path, mirrors, timeout, backend_timeout, retry_codes,
                retry_attempts, retry_backoff, failover_retry,
            ))
            key = (_PATH_RANK[path_type], -len(path_value), 0 if method else 1, -len(headers), -len(query), created,
                   ns, name, index, m)
            entries.append((key, route_ir))
    return tuple(entries)


def _tls_chain(listener: ListenerResult, secrets: Mapping[tuple[str, str], Secret]) -> ir.TlsChainIR:
    certificates = []
    for key in listener.certificate_secrets:
        data = secrets[key].data
        certificates.append((base64.b64decode(data["tls.crt"]).decode(), base64.b64decode(data["tls.key"]).decode()))
    hostname = listener.listener.hostname
    return ir.TlsChainIR((hostname,) if hostname else (), tuple(certificates))


def gateway_shape(key: GatewayKey, result: GatewayResult, secrets: Mapping[tuple[str, str], Secret],
                  bind_addresses: Mapping[tuple[str, str], str] | None) -> GatewayShape | None:
    """Ports of the usable listeners (the first one on a port decides its protocol); ``None`` if none."""
    protocols: dict[int, str] = {}
    chains: dict[int, list[ir.TlsChainIR]] = {}
    for listener in result.listeners:
        if listener.usable:
            port = listener.listener.port
            protocols.setdefault(port, listener.listener.protocol)
            chains.setdefault(port, [])
            if listener.listener.protocol == "HTTPS":
                chains[port].append(_tls_chain(listener, secrets))
    if not protocols:
        return None
    ports = tuple(PortShape(port, protocols[port], tuple(chains[port]))  # type: ignore[arg-type]
                  for port in sorted(protocols))
    return GatewayShape(key, (bind_addresses or {}).get(key, "0.0.0.0"), ports)


def virtual_host(port_name: str, hostname: str, entries: Iterable[RankedRoute]) -> ir.VirtualHostIR:
    """A virtual host with its routes in precedence order."""
    ranked = sorted(entries, key=_by_key)
    return ir.VirtualHostIR(f"{port_name}/{hostname}", hostname, tuple([r[1] for r in ranked]))


def gateway_ir(cluster: str, shape: GatewayShape,
               virtual_hosts: Mapping[int, tuple[ir.VirtualHostIR, ...]]) -> ir.GatewayIR:
    ns, name = shape.key
    return ir.GatewayIR(cluster, ns, name, shape.address, tuple(
        ir.PortIR(f"{ns}/{name}/{p.port}", p.port, p.protocol, virtual_hosts.get(p.port, ()), p.tls)
        for p in shape.ports))


def build_gateways(cluster: str, evaluation: Evaluation, endpoints: EndpointLookup,
                   secrets: Mapping[tuple[str, str], Secret],
                   bind_addresses: Mapping[tuple[str, str], str] | None = None,
                   failover: FailoverContext | None = None) -> list[ir.GatewayIR]:
    """The IR of every Gateway of one member cluster that has a usable listener.

    ``bind_addresses`` says where each Gateway's Envoy listens (default ``0.0.0.0``).
    """
    shapes = {}
    for key, gateway in sorted(evaluation.gateways.items()):
        shape = gateway_shape(key, gateway, secrets, bind_addresses)
        if shape is not None:
            shapes[key] = shape
    # gateway -> port -> hostname -> routes bound there (a route bound through two listeners counts once)
    members: dict[GatewayKey, dict[int, dict[str, dict[GatewayKey, None]]]] = {key: {} for key in shapes}
    for route_key, result in evaluation.routes.items():
        for parent in result.parents:
            for binding in parent.bindings:
                if binding.usable and binding.gateway in members:
                    per_port = members[binding.gateway].setdefault(binding.port, {})
                    for hostname in binding.hostnames:
                        per_port.setdefault(hostname, {})[route_key] = None
    backends = Backends(cluster, endpoints, failover)
    entries: dict[GatewayKey, tuple[RankedRoute, ...]] = {}

    def of(route_key: GatewayKey) -> tuple[RankedRoute, ...]:
        found = entries.get(route_key)
        if found is None:
            found = entries[route_key] = route_entries(evaluation.routes[route_key], backends)
        return found

    gateways = []
    for key, shape in shapes.items():
        ns, name = key
        vhosts = {port: tuple(virtual_host(f"{ns}/{name}/{port}", hostname, (e for r in routes for e in of(r)))
                              for hostname, routes in sorted(per_port.items()))
                  for port, per_port in members[key].items()}
        gateways.append(gateway_ir(cluster, shape, vhosts))
    return gateways
