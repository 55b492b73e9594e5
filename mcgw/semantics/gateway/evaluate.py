"""One member cluster's Gateway API objects in, every status mcgw owns out: a pure function.

Evaluation has two layers, so that the incremental translator can redo only what a change affects:
the Gateway layer (:func:`evaluate_gateways`: classes, Gateways, listeners, from GatewayClasses,
Gateways, Secrets, ReferenceGrants, Namespaces and the ConfigMaps of frontend CA bundles) and one route
at a time (:func:`evaluate_route`), which depends on that layer, on the route, on ReferenceGrants and
on which Services and ServiceImports exist, but not on other routes, save for one rule applied after it to
the routes bound to each listener (:mod:`.crossserving`: an HTTPRoute and a GRPCRoute never share a
hostname on a listener). ``attachedRoutes`` is counted last (:func:`count_attached`). Routes are listed
oldest first (creationTimestamp, then namespace/name), the order in which the spec breaks ties, so the
outcome never depends on the order objects were listed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from mcgw.objects.model import ConfigMap, EnvoyProxy, Gateway, GatewayClass, Namespace, ReferenceGrant, Secret
from mcgw.semantics.gateway import conditions as c
from mcgw.semantics.gateway.attach import ParentResult, attach
from mcgw.semantics.gateway.backends import (
    ResolvedBackend,
    ResolvedMirror,
    TlsLookup,
    resolve,
    resolve_mirrors,
    resolved_refs_condition,
)
from mcgw.semantics.gateway.client_certificate import with_gateway_refs
from mcgw.semantics.gateway.crossserving import cross_serve
from mcgw.semantics.gateway.dataplane import Dataplane
from mcgw.semantics.gateway.listeners import GatewayResult, class_status, gateway_status
from mcgw.semantics.gateway.routekinds import ROUTE_KINDS, AnyRoute, is_route
from mcgw.semantics.gateway.routes import RouteKey, route_key

GatewayKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class ClusterObjects:
    """What the semantics read from one member cluster (the store's view of it)."""

    gateway_classes: tuple[GatewayClass, ...] = ()
    gateways: tuple[Gateway, ...] = ()
    routes: tuple[AnyRoute, ...] = ()  # every route kind
    grants: tuple[ReferenceGrant, ...] = ()
    namespaces: tuple[Namespace, ...] = ()
    secrets: tuple[Secret, ...] = ()
    # Keys only, or mappings to the Services and the ClusterSet's imports, which also check backendRef ports
    # and exports (see :func:`evaluate_route`).
    services: Collection[tuple[str, str]] = frozenset()
    service_imports: Collection[tuple[str, str]] = frozenset()
    proxies: tuple[EnvoyProxy, ...] = ()  # Gateway parameters
    tls: TlsLookup | None = None  # which backend ports a BackendTLSPolicy covers
    config_maps: tuple[ConfigMap, ...] = ()  # CA bundles of the Gateways' frontend validation

    @classmethod
    def of(cls, objects: Iterable[object], services: Iterable[tuple[str, str]] = (),
           service_imports: Iterable[tuple[str, str]] = ()) -> ClusterObjects:
        items = list(objects)
        return cls(
            tuple(o for o in items if isinstance(o, GatewayClass)),
            tuple(o for o in items if isinstance(o, Gateway)),
            tuple(o for o in items if is_route(o)),
            tuple(o for o in items if isinstance(o, ReferenceGrant)),
            tuple(o for o in items if isinstance(o, Namespace)),
            tuple(o for o in items if isinstance(o, Secret)),
            _keys_or_mapping(services),
            _keys_or_mapping(service_imports),
            tuple(o for o in items if isinstance(o, EnvoyProxy)),
            config_maps=tuple(o for o in items if isinstance(o, ConfigMap)),
        )


def _keys_or_mapping(named: Iterable[tuple[str, str]]) -> Collection[tuple[str, str]]:
    return dict(named) if isinstance(named, Mapping) else frozenset(named)


class RouteResult(NamedTuple):
    """One route's outcome. Immutable: the incremental translator reuses it while its inputs stay."""

    route: AnyRoute
    parents: tuple[ParentResult, ...]
    parent_conditions: tuple[tuple[c.Condition, ...], ...]
    backends: tuple[tuple[ResolvedBackend, ...], ...]
    kept_rules: tuple[int, ...]
    # Per rule, its RequestMirror filters' resolution; () when the route mirrors nothing.
    mirrors: tuple[tuple[ResolvedMirror, ...], ...] = ()


@dataclass(frozen=True)
class GatewayLayer:
    """What route evaluation reads besides the route: our classes' and Gateways' results (with
    ``attachedRoutes`` still 0), the Namespaces (for allowedRoutes selectors) and the ReferenceGrants."""

    classes: dict[str, list[c.Condition]]
    gateways: dict[GatewayKey, GatewayResult]
    namespaces: dict[str, Namespace]
    grants: tuple[ReferenceGrant, ...]


@dataclass
class Evaluation:
    classes: dict[str, list[c.Condition]] = field(default_factory=dict)
    gateways: dict[tuple[str, str], GatewayResult] = field(default_factory=dict)
    routes: dict[RouteKey, RouteResult] = field(default_factory=dict)


def age_order(route: AnyRoute) -> tuple[str, str, str]:
    return route.metadata.creation_timestamp, route.metadata.namespace, route.metadata.name


def evaluate_gateways(gateway_classes: Iterable[GatewayClass], gateways: Iterable[Gateway],
                      secrets: Iterable[Secret], grants: Iterable[ReferenceGrant], namespaces: Iterable[Namespace],
                      addresses: Mapping[tuple[str, str], list[str]] | None = None,
                      proxies: Iterable[EnvoyProxy] = (),
                      dataplane: Mapping[tuple[str, str], Dataplane] | None = None,
                      config_maps: Mapping[tuple[str, str], object] | None = None) -> GatewayLayer:
    """Statuses of our GatewayClasses and their Gateways, before routes are counted. ``dataplane``: what was
    observed of provisioned Gateways' Envoys (their addresses and Programmed then come from it);
    ``config_maps`` (by namespace and name): the CA bundles of the Gateways' frontend validation."""
    classes = {gc.metadata.name: gc for gc in gateway_classes}
    by_name = {(p.metadata.namespace, p.metadata.name): p for p in proxies}
    class_results = {}
    for name, gateway_class in classes.items():
        status = class_status(gateway_class, by_name)
        if status is not None:
            class_results[name] = status
    by_key = {(s.metadata.namespace, s.metadata.name): s for s in secrets}
    grants = tuple(grants)
    results = {}
    for gateway in gateways:
        key = (gateway.metadata.namespace, gateway.metadata.name)
        result = gateway_status(gateway, classes, by_key, grants, (addresses or {}).get(key, ()), by_name,
                                (dataplane or {}).get(key), config_maps)
        if result is not None:
            results[key] = with_gateway_refs(result, by_key, grants)
    return GatewayLayer(class_results, results, {n.metadata.name: n for n in namespaces}, grants)


def evaluate_route(route: AnyRoute, layer: GatewayLayer, services: Collection[tuple[str, str]],
                   service_imports: Collection[tuple[str, str]],
                   tls: TlsLookup | None = None) -> RouteResult | None:
    """The route's status and resolved backends and mirrors; ``None`` if none of its parents is one of ours.
    Cross serving (:func:`.crossserving.cross_serve`) is still to be applied over all routes.

    ``services`` as a mapping to the Service objects also checks each backendRef's port against the
    Service's ports; a caller that passes one must evaluate a route again when a Service it names changes, or
    the BackendTLSPolicies covering it (``tls``)."""
    parents = attach(route, layer.gateways, layer.namespaces)
    if not parents:
        return None
    backends = resolve(route, services, service_imports, layer.grants, tls)
    mirrors = resolve_mirrors(route, services, service_imports, layer.grants, tls)
    resolved = resolved_refs_condition(route, backends, mirrors)
    rules = ROUTE_KINDS[route.kind].check_rules(route)
    extra = (rules.partially_invalid,) if rules.partially_invalid else ()
    parent_conditions = []
    for i, parent in enumerate(parents):
        if parent.accepted.status == "True" and rules.all_dropped:
            parent = ParentResult(parent.ref, parent.gateway_namespace, c.Condition(
                c.ACCEPTED, "False", c.REASON_UNSUPPORTED_VALUE, rules.all_dropped, route.metadata.generation))
            parents[i] = parent
        parent_conditions.append((parent.accepted, resolved, *extra))
    return RouteResult(route, tuple(parents), tuple(parent_conditions), backends, rules.kept, mirrors)


AttachedCounts = dict[GatewayKey, dict[str, int]]  # gateway -> listener name -> attached routes


def count_bindings(counts: AttachedCounts, result: RouteResult, step: int = 1) -> set[GatewayKey]:
    """Add ``step`` to ``attachedRoutes`` of every listener the route binds to; returns those Gateways.
    ``step`` -1 takes a route back out, which is how the incremental translator keeps counts current."""
    touched = set()
    for parent in result.parents:
        for binding in parent.bindings:
            per_listener = counts.setdefault(binding.gateway, {})
            per_listener[binding.listener] = per_listener.get(binding.listener, 0) + step
            touched.add(binding.gateway)
    return touched


def count_attached(gateways: Mapping[GatewayKey, GatewayResult],
                   routes: Iterable[RouteResult]) -> dict[GatewayKey, GatewayResult]:
    """The Gateway results with each listener's ``attachedRoutes`` counted over ``routes``."""
    counts: AttachedCounts = {}
    for result in routes:
        count_bindings(counts, result)
    return {key: result.with_attached(counts.get(key, {})) for key, result in gateways.items()}


def evaluate(objects: ClusterObjects, addresses: Mapping[tuple[str, str], list[str]] | None = None,
             dataplane: Mapping[tuple[str, str], Dataplane] | None = None) -> Evaluation:
    """Statuses for our GatewayClasses, their Gateways, and the routes that name those Gateways."""
    layer = evaluate_gateways(objects.gateway_classes, objects.gateways, objects.secrets, objects.grants,
                              objects.namespaces, addresses, objects.proxies, dataplane,
                              {(o.metadata.namespace, o.metadata.name): o for o in objects.config_maps})
    routes = {}
    for route in sorted(objects.routes, key=age_order):
        result = evaluate_route(route, layer, objects.services, objects.service_imports, objects.tls)
        if result is not None:
            routes[route_key(route)] = result
    routes = cross_serve(routes)
    return Evaluation(layer.classes, count_attached(layer.gateways, routes.values()), routes)
