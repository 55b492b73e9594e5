"""Incremental translation of one member cluster: redo only what an object change affects.

:class:`IncrementalTranslation` keeps the previous objects and every intermediate result, and on each
call works out what changed and what that touches:

- a changed route (of any kind) is evaluated again (its status, bindings and backends); a route depends on
  another route only through cross serving (an HTTPRoute and a GRPCRoute never share a hostname on a
  listener), so the claims on every listener it binds to, before and after, are weighed again, and only
  the routes of those listeners whose refusals changed are installed again;
- a Service or ServiceImport that appears or disappears re-evaluates the routes that name it, and a
  Service or EndpointSlice change rebuilds the IR of the routes that name that Service (their
  status cannot change);
- BackendTLSPolicies and ConfigMaps (their CA bundles) are resolved again as a whole (they are few), and
  the routes naming a Service or ServiceImport whose policy outcome changed are evaluated again (a
  ``kubernetes.io/wss`` backend needs a policy) with their backends rebuilt;
- GatewayClasses, Gateways, Secrets, ReferenceGrants, Namespaces, Gateway addresses and the ConfigMaps
  some Gateway's frontend validation names are the "Gateway layer": it is evaluated again as a whole (it
  is small), and routes are re-evaluated only if what attachment or backend resolution reads from it
  changed; a Secret's or CA ConfigMap's new content (a rotation) replaces only the Gateway's secrets,
  keeping its listener IR and Envoy listeners;
- a virtual host keeps its routes sorted in precedence order, so a route change is a few binary
  searches rather than a sort; only virtual hosts that changed are rebuilt, and only Gateways with a
  changed virtual host get new Envoy resources (:class:`mcgw.translate.cache.GatewayResources`).

Unchanged results are shared with the previous output, so they are never modified once built. The
result always equals a full translation of the same objects; tests apply random changes and check.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import compress
from operator import is_not, itemgetter
from typing import NamedTuple

from mcgw import ir
from mcgw.ir.backends import Backends
from mcgw.ir.failover import FailoverContext, build_context
from mcgw.ir.gateway import GatewayShape, gateway_ir, gateway_shape
from mcgw.ir.httproute import RankedRoute
from mcgw.ir.routekinds import ROUTE_BUILDERS, is_stream_slot, stream_slot
from mcgw.objects.clusterset import ClusterProperties
from mcgw.objects.kinds import GATEWAY_LAYER_KINDS
from mcgw.objects.model import (
    AnyObject,
    BackendTLSPolicy,
    EndpointSlice,
    EnvoyProxy,
    FailoverPolicy,
    Gateway,
    GatewayClass,
    Namespace,
    ReferenceGrant,
    Secret,
    Service,
)
from mcgw.semantics.endpoints import service_endpoints
from mcgw.semantics.gateway.backends import port_app_protocol, port_name
from mcgw.semantics.gateway.crossserving import (
    Claim,
    ListenerKey,
    Refusal,
    apply_refusals,
    claims,
    hostnames_meet,
    refusals,
)
from mcgw.semantics.gateway.dataplane import Dataplane
from mcgw.semantics.gateway.evaluate import (
    AttachedCounts,
    Evaluation,
    GatewayKey,
    GatewayLayer,
    RouteResult,
    count_bindings,
    evaluate_gateways,
    evaluate_route,
)
from mcgw.semantics.gateway.frontend import referenced
from mcgw.semantics.gateway.listeners import GatewayResult
from mcgw.semantics.gateway.routekinds import ROUTE_KINDS, AnyRoute, is_route
from mcgw.semantics.gateway.routes import RouteKey
from mcgw.semantics.mcs import ImportedService
from mcgw.semantics.policy.backendtls import NO_BACKEND_TLS, BackendTLSResolution, resolve_backend_tls
from mcgw.translate.cache import Built, GatewayResources

ObjectKey = tuple[str, str, str]  # (kind, namespace, name)
NamespacedName = tuple[str, str]
VirtualHostKey = tuple[GatewayKey, int, str]  # (gateway, port, hostname)
_precedence = itemgetter(0)
_route_of = itemgetter(1)
_BULK = 16  # more additions than this to one virtual host: append and sort once instead of inserting each


def _key(obj: AnyObject) -> ObjectKey:
    return obj.kind, obj.metadata.namespace, obj.metadata.name


def changed_objects(old: tuple[AnyObject, ...], new: tuple[AnyObject, ...]) -> tuple[list[AnyObject],
                                                                                      list[AnyObject]]:
    """(removed, added) between two object tuples; a modified object is in both, by its old and new version.

    Unchanged objects are the very same Python objects, so the common head and tail are found by pointer
    comparison at C speed and only the part in between is matched by key."""
    shortest = min(len(old), len(new))
    head = next(compress(range(shortest), map(is_not, old, new)), shortest)
    tail = next(compress(range(shortest - head), map(is_not, reversed(old), reversed(new))), shortest - head)
    old_window = {_key(o): o for o in old[head:len(old) - tail]}
    new_window = {_key(o): o for o in new[head:len(new) - tail]}
    removed = [o for k, o in old_window.items() if new_window.get(k) is not o]
    added = [o for k, o in new_window.items() if old_window.get(k) is not o]
    return removed, added


def _attach_view(layer: GatewayLayer) -> dict[GatewayKey, tuple[object, ...]]:
    """What route evaluation reads from the Gateway layer (besides Namespaces and ReferenceGrants)."""
    return {key: (result.gateway.metadata.namespace,
                  tuple((listener.listener, tuple(listener.supported_kinds), listener.usable)
                        for listener in result.listeners))
            for key, result in layer.gateways.items()}


@dataclass
class _Route:
    result: RouteResult
    named: frozenset[NamespacedName]
    places: tuple[VirtualHostKey, ...]  # virtual hosts it is in (usable bindings only)
    entries: tuple[RankedRoute, ...] = ()


class _VirtualHost:
    """The routes of one hostname on one Gateway port, in precedence order."""

    __slots__ = ("dirty", "entries", "members", "pending", "value")

    def __init__(self) -> None:
        self.members: dict[RouteKey, int] = {}  # route -> bindings that place it here
        self.entries: list[RankedRoute] = []  # sorted by precedence key (the keys are unique)
        self.pending: list[RankedRoute] = []  # added since the last rebuild, not yet sorted in
        self.value: ir.VirtualHostIR | None = None
        self.dirty = True

    def add(self, route: RouteKey, entries: tuple[RankedRoute, ...]) -> None:
        count = self.members.get(route, 0)
        self.members[route] = count + 1
        if not count:
            self.pending.extend(entries)
            self.dirty = True

    def remove(self, route: RouteKey, entries: tuple[RankedRoute, ...]) -> None:
        count = self.members[route] - 1
        if count:
            self.members[route] = count
            return
        del self.members[route]
        for entry in entries:
            index = bisect_left(self.entries, entry[0], key=_precedence)
            assert self.entries[index][0] == entry[0], "virtual host lost track of a route"
            del self.entries[index]
        self.dirty = True

    def replace(self, entries: tuple[RankedRoute, ...]) -> None:
        """New IR for routes already here (same precedence keys)."""
        for entry in entries:
            index = bisect_left(self.entries, entry[0], key=_precedence)
            assert self.entries[index][0] == entry[0], "virtual host lost track of a route"
            self.entries[index] = entry
        self.dirty = True

    def rebuild(self, port_name: str, hostname: str) -> ir.VirtualHostIR:
        if self.pending:
            if len(self.pending) > _BULK:
                self.entries += self.pending
                self.entries.sort(key=_precedence)
            else:
                for entry in self.pending:
                    insort(self.entries, entry, key=_precedence)
            self.pending = []
        if self.value is None or self.dirty:
            self.value = ir.VirtualHostIR(f"{port_name}/{hostname}", hostname,
                                          tuple(map(_route_of, self.entries)))
        self.dirty = False
        return self.value


@dataclass(frozen=True)
class Translated:
    evaluation: Evaluation
    gateways: tuple[ir.GatewayIR, ...]
    resources: dict[GatewayKey, tuple[Built, ...]]
    failover: FailoverContext
    backend_tls: BackendTLSResolution = NO_BACKEND_TLS


class McsInput(NamedTuple):
    """What a cluster's translation reads from the rest of the ClusterSet."""

    imports: Mapping[NamespacedName, ImportedService]  # the ClusterSet's imported services (every namespace)
    clusters: Mapping[str, ClusterProperties]  # every member cluster's properties
    # The capacity decisions for this cluster's gateways: (namespace, name, port) -> share sent past level 0.
    overflow: Mapping[tuple[str, str, int], float] = {}


def failover_context(cluster: str, by_kind: Mapping[str, Mapping[NamespacedName, AnyObject]],
                     mcs: McsInput | None) -> FailoverContext:
    """ServiceImports this cluster sees (namespace sameness: only where the namespace exists here), and its
    FailoverPolicies resolved against them and its routes."""
    namespaces = {name for _, name in by_kind.get("Namespace", {})}
    imports = {k: v for k, v in mcs.imports.items() if k[0] in namespaces} if mcs else {}
    policies = [o for o in by_kind.get("FailoverPolicy", {}).values() if isinstance(o, FailoverPolicy)]
    # A generator: policies are rare, and without one the route keys are never read.
    routes = ((kind, ns, name) for kind in ROUTE_KINDS for ns, name in by_kind.get(kind, {}))
    if not policies:
        return build_context(cluster, imports, mcs.clusters if mcs else {}, policies, routes)
    grants = [o for o in by_kind.get("ReferenceGrant", {}).values() if isinstance(o, ReferenceGrant)]
    return build_context(cluster, imports, mcs.clusters if mcs else {}, policies, routes,
                         by_kind.get("ServiceImport", {}), by_kind.get("Service", {}), grants,
                         mcs.overflow if mcs else None)


class IncrementalTranslation:
    """One member cluster's translation state; :meth:`update` takes the complete current objects."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self._objects: tuple[AnyObject, ...] = ()
        self._by_kind: dict[str, dict[NamespacedName, AnyObject]] = {}
        self._slices: dict[NamespacedName, dict[str, EndpointSlice]] = {}  # (namespace, service) -> by slice name
        self._addresses: dict[tuple[str, str], list[str]] = {}
        self._dataplane: dict[tuple[str, str], Dataplane] = {}
        self._binds: dict[tuple[str, str], str] = {}
        self._layer: GatewayLayer | None = None
        self._frontend_refs: frozenset[tuple[str, str, str]] = frozenset()  # (kind, ns, name) of CA bundles
        self._view: dict[GatewayKey, tuple[object, ...]] = {}
        self._shapes: dict[GatewayKey, GatewayShape] = {}
        self._routes: dict[RouteKey, _Route] = {}
        self._results: dict[RouteKey, RouteResult] = {}
        # Cross serving: each route's result before it, the claims on each listener, and what is refused.
        self._raw: dict[RouteKey, RouteResult] = {}
        # listener -> kind -> route -> its claims there (a listener with one kind alone refuses nothing)
        self._claims: dict[ListenerKey, dict[str, dict[RouteKey, list[Claim]]]] = {}
        self._refused: dict[ListenerKey, dict[RouteKey, Refusal]] = {}
        self._refused_of: dict[RouteKey, dict[ListenerKey, Refusal]] = {}
        self._hostnames_on: dict[ListenerKey, dict[str, Counter[str]]] = {}  # listener -> kind -> claimed hostnames
        self._referrers: dict[NamespacedName, set[RouteKey]] = {}  # Service or ServiceImport -> routes naming it
        self._vhosts: dict[VirtualHostKey, _VirtualHost] = {}
        self._hostnames: dict[tuple[GatewayKey, int], dict[str, _VirtualHost]] = {}
        self._counts: AttachedCounts = {}
        self._counted: dict[GatewayKey, GatewayResult] = {}
        self._irs: dict[GatewayKey, ir.GatewayIR] = {}
        self._stale: set[GatewayKey] = set()  # IR kept but with new secrets: their Envoy resources are due
        self._envoy: dict[GatewayKey, GatewayResources] = {}
        self._resources: dict[GatewayKey, tuple[Built, ...]] = {}
        self._failover = failover_context(cluster, {}, None)
        # What ServiceImport backends resolve against: the cluster's ServiceImport objects and the ClusterSet's
        # imports seen from here (those win: they say which clusters export it, with which ports).
        self._imports: dict[NamespacedName, object] = {}
        self._backend_tls = NO_BACKEND_TLS
        self._backends = Backends(cluster, self._endpoints, self._failover, self._app_protocol, self._backend_tls,
                                  self._port_name)

    def _of(self, kind: str) -> dict[NamespacedName, AnyObject]:
        return self._by_kind.setdefault(kind, {})

    def _endpoints(self, namespace: str, name: str, port: int) -> tuple[ir.EndpointIR, ...]:
        service = self._of("Service").get((namespace, name))
        assert service is None or isinstance(service, Service)
        return service_endpoints(service, self._slices.get((namespace, name), {}).values(), port)

    def _app_protocol(self, namespace: str, name: str, port: int) -> str | None:
        service = self._of("Service").get((namespace, name))
        return port_app_protocol(service.spec.ports, port) if isinstance(service, Service) else None

    def _port_name(self, namespace: str, name: str, port: int) -> str | None:
        service = self._of("Service").get((namespace, name))
        return port_name(service.spec.ports, port) if isinstance(service, Service) else None

    def update(self, objects: Iterable[AnyObject], addresses: Mapping[tuple[str, str], list[str]] | None = None,
               bind_addresses: Mapping[tuple[str, str], str] | None = None,
               mcs: McsInput | None = None,
               dataplane: Mapping[tuple[str, str], Dataplane] | None = None) -> Translated:
        objects = tuple(objects)
        removed, added = changed_objects(self._objects, objects)
        self._objects = objects
        changed_routes: set[RouteKey] = set()
        endpoints: set[NamespacedName] = set()  # Services whose endpoints may have changed
        presence: dict[tuple[str, NamespacedName], bool] = {}  # Services/ServiceImports touched: present before?
        ports_before: dict[NamespacedName, object] = {}  # modified Services: their ports before
        layer_changed = self._layer is None
        tls_changed = False
        for obj, present in [*((o, False) for o in removed), *((o, True) for o in added)]:
            kind, key = obj.kind, (obj.metadata.namespace, obj.metadata.name)
            store = self._of(kind)
            if kind in ("Service", "ServiceImport"):
                presence.setdefault((kind, key), key in store)
            if present:
                store[key] = obj
            elif store.get(key) is obj:
                del store[key]
                if isinstance(obj, Service):
                    ports_before.setdefault(key, obj.spec.ports)
            if kind in ROUTE_KINDS:
                changed_routes.add((kind, *key))
            elif kind in GATEWAY_LAYER_KINDS:
                layer_changed = True
            elif kind in ("BackendTLSPolicy", "ConfigMap"):
                tls_changed = True
                # A CA bundle of some Gateway's frontend validation: the Gateways' listeners read it.
                layer_changed = layer_changed or (kind, *key) in self._frontend_refs
            elif kind == "Service":
                endpoints.add(key)
            elif isinstance(obj, EndpointSlice) and obj.service_name:
                service = (obj.metadata.namespace, obj.service_name)
                by_name = self._slices.setdefault(service, {})
                if present:
                    by_name[obj.metadata.name] = obj
                elif by_name.get(obj.metadata.name) is obj:
                    del by_name[obj.metadata.name]
                endpoints.add(service)
        # Services and ServiceImports that appeared or disappeared: backend resolution may change.
        membership = {key for (kind, key), before in presence.items() if before != (key in self._of(kind))}
        # Services whose ports changed: a backendRef's port may now resolve, or no longer.
        services = self._of("Service")
        membership |= {key for key, ports in ports_before.items()
                       if isinstance(current := services.get(key), Service) and current.spec.ports != ports}
        # The ClusterSet's imports and this cluster's FailoverPolicies: ServiceImport backends they change.
        old_failover, failover = self._failover, failover_context(self.cluster, self._by_kind, mcs)
        self._failover = self._backends.failover = failover
        old_imports, new_imports = old_failover.imports, failover.imports
        membership |= {key for key in old_imports.keys() ^ new_imports.keys()}
        # Imports whose exporting clusters or ports changed: a ServiceImport backend may now resolve, or no longer.
        membership |= {key for key in old_imports.keys() & new_imports.keys()
                       if (old_imports[key].clusters, old_imports[key].ports)
                       != (new_imports[key].clusters, new_imports[key].ports)}
        self._imports = {**self._of("ServiceImport"), **new_imports}
        if tls_changed:
            old_tls = self._backend_tls
            new_tls = resolve_backend_tls(
                (o for o in self._of("BackendTLSPolicy").values() if isinstance(o, BackendTLSPolicy)),
                self._of("ConfigMap"))
            # Services and ServiceImports whose policy outcome changed: re-evaluate (wss) and rebuild their routes.
            touched = {(target[2], target[3]) for target, _ in old_tls.by_target.items() ^ new_tls.by_target.items()}
            membership |= touched
            endpoints |= touched
            self._backend_tls = self._backends.backend_tls = new_tls
        if (old_failover.resolution.by_target != failover.resolution.by_target
                or old_failover.resolution.fallbacks != failover.resolution.fallbacks
                or old_failover.clusters != failover.clusters):
            endpoints |= old_imports.keys() | new_imports.keys() | set(self._of("ServiceImport"))
            changed_routes |= {target for target in
                               old_failover.resolution.by_target.keys() | failover.resolution.by_target.keys()
                               if target[0] in ROUTE_KINDS}
        else:
            endpoints |= {key for key in old_imports.keys() | new_imports.keys()
                          if old_imports.get(key) != new_imports.get(key)}
        addresses = dict(addresses or {})
        binds = dict(bind_addresses or {})
        observed = dict(dataplane or {})
        layer_changed = layer_changed or addresses != self._addresses or observed != self._dataplane
        all_routes = False
        if layer_changed:
            gateways = [o for _, o in sorted(self._of("Gateway").items()) if isinstance(o, Gateway)]
            layer = evaluate_gateways(
                [o for o in self._of("GatewayClass").values() if isinstance(o, GatewayClass)], gateways,
                [o for o in self._of("Secret").values() if isinstance(o, Secret)],
                [o for _, o in sorted(self._of("ReferenceGrant").items()) if isinstance(o, ReferenceGrant)],
                [o for o in self._of("Namespace").values() if isinstance(o, Namespace)], addresses,
                [o for o in self._of("EnvoyProxy").values() if isinstance(o, EnvoyProxy)], observed,
                self._of("ConfigMap"))
            self._frontend_refs = referenced(gateways)
            view = _attach_view(layer)
            previous = self._layer
            all_routes = (previous is None or view != self._view or layer.namespaces != previous.namespaces
                          or layer.grants != previous.grants)
            self._layer, self._view, self._addresses, self._dataplane = layer, view, addresses, observed
            self._counted = {}
        assert self._layer is not None
        if layer_changed or binds != self._binds:
            self._binds = binds
            self._reshape()
        # Capacity decisions that changed: those ServiceImports' first two levels are shared anew.
        endpoints |= {(namespace, name) for namespace, name, _ in
                      old_failover.overflow.keys() ^ failover.overflow.keys()
                      | {key for key in old_failover.overflow.keys() & failover.overflow.keys()
                         if old_failover.overflow[key] != failover.overflow[key]}}
        # A ServiceImport with a fallback carries the fallback's endpoints too.
        if dependents := failover.resolution.fallback_dependents():
            endpoints |= {primary for key in list(endpoints) for primary in dependents.get(key, ())}
        for service in endpoints:
            self._backends.forget(*service)
        if all_routes:
            evaluate = set(self._routes).union(*({(kind, *key) for key in self._of(kind)} for kind in ROUTE_KINDS))
        else:
            evaluate = changed_routes.union(*(self._referrers.get(key, ()) for key in membership))
        rebuild = set().union(*(self._referrers.get(key, ()) for key in endpoints)) - evaluate
        listeners: dict[ListenerKey, list[Claim]] = {}  # listeners whose claims changed -> the new claims
        evaluated = {route_key: self._evaluate(route_key, listeners) for route_key in evaluate}
        install = dict.fromkeys(evaluated)
        install.update(dict.fromkeys(self._weigh(listeners)))
        for route_key in install:
            if route_key in evaluated:
                route, named = evaluated[route_key]
            else:
                state = self._routes[route_key]
                route, named = state.result.route, state.named
            self._install(route_key, route, named)
        for route_key in rebuild - install.keys():
            self._rebuild(route_key)
        return self._assemble()

    def _reshape(self) -> None:
        """Ports, TLS chains, certificates and bind address of every Gateway; Gateways whose shape changed get
        new IR. When only certificates or frontend CA bundles changed (a rotation), the listeners' IR is kept
        and only the secrets are replaced, so the Envoy listeners stay the very same resources."""
        assert self._layer is not None
        secrets = {k: o for k, o in self._of("Secret").items() if isinstance(o, Secret)}
        shapes = {key: gateway_shape(key, result, secrets, self._binds)
                  for key, result in sorted(self._layer.gateways.items())}
        for key in set(self._irs):
            new, old = shapes.get(key), self._shapes.get(key)
            if new == old:
                continue
            if new is not None and old is not None \
                    and new._replace(secrets=(), trusted_cas=()) == old._replace(secrets=(), trusted_cas=()):
                self._irs[key] = self._irs[key]._replace(secrets=new.secrets, trusted_cas=new.trusted_cas)
                self._stale.add(key)
            else:
                del self._irs[key]
        self._shapes = shapes

    def _count(self, result: RouteResult, step: int) -> None:
        for gateway in count_bindings(self._counts, result, step):
            self._counted.pop(gateway, None)

    def _vhost(self, place: VirtualHostKey) -> _VirtualHost:
        vhost = self._vhosts.get(place)
        if vhost is None:
            vhost = self._vhosts[place] = _VirtualHost()
            self._hostnames.setdefault((place[0], place[1]), {})[place[2]] = vhost
        self._irs.pop(place[0], None)
        return vhost

    def _evaluate(self, key: RouteKey,
                  listeners: dict[ListenerKey, list[Claim]]) -> tuple[AnyRoute | None, frozenset[NamespacedName]]:
        """Evaluate one route again (or forget it, if it is gone), before cross serving: its result and claims
        are stored, the listeners it claimed before or claims now added to ``listeners`` with its new claims.
        Returns the route and the Services it names, for :meth:`_install`."""
        assert self._layer is not None
        old = self._routes.get(key)
        route = self._of(key[0]).get(key[1:])
        named = old.named if old is not None and old.result.route is route else frozenset()
        if old is not None and old.result.route is not route:
            for service in old.named:
                self._referrers[service].discard(key)
        result = None
        if is_route(route):
            tls = self._backend_tls
            result = evaluate_route(route, self._layer, self._of("Service"), self._imports,
                                    tls.covers if tls.by_target else None)
            if not named:
                named = ROUTE_KINDS[route.kind].named_backends(route)
                for service in named:
                    self._referrers.setdefault(service, set()).add(key)
        before = self._raw.pop(key, None)
        if before is not None:
            for listener, claim in claims(key, before):
                listeners.setdefault(listener, [])
                self._claims[listener][key[0]].pop(key, None)
                counts = self._hostnames_on[listener][key[0]]
                for hostname in claim.hostnames:
                    counts[hostname] -= 1
                    if not counts[hostname]:
                        del counts[hostname]
        if result is not None:
            self._raw[key] = result
            for listener, claim in claims(key, result):
                listeners.setdefault(listener, []).append(claim)
                self._claims.setdefault(listener, {}).setdefault(key[0], {}).setdefault(key, []).append(claim)
                self._hostnames_on.setdefault(listener, {}).setdefault(key[0], Counter()).update(claim.hostnames)
        return (route if is_route(route) else None), named

    def _weigh(self, listeners: Mapping[ListenerKey, list[Claim]]) -> set[RouteKey]:
        """Cross serving again on ``listeners``; the routes whose refusals changed.

        A listener where nothing was refused keeps its (empty) refusals unless a new claim meets a hostname
        of the other kind there: two unchanged claims that meet would have been refused before. That is the
        common case of a listener serving both kinds, weighed without a pass over all of its routes."""
        changed: set[RouteKey] = set()
        for listener, touched in listeners.items():
            by_kind = self._claims.get(listener, {})
            for kind in [kind for kind, bound in by_kind.items() if not bound]:
                del by_kind[kind]
                del self._hostnames_on[listener][kind]
            if not by_kind:
                self._claims.pop(listener, None)
                self._hostnames_on.pop(listener, None)
            if not self._refused.get(listener) and not any(self._meets_other_kind(listener, c) for c in touched):
                continue
            new = refusals(claim for bound in by_kind.values() for of_route in bound.values() for claim in of_route) \
                if len(by_kind) > 1 else {}
            old = self._refused.pop(listener, {})
            if new:
                self._refused[listener] = new
            for route_key in old.keys() | new.keys():
                if old.get(route_key) == new.get(route_key):
                    continue
                changed.add(route_key)
                of_route = self._refused_of.setdefault(route_key, {})
                if route_key in new:
                    of_route[listener] = new[route_key]
                else:
                    del of_route[listener]
                if not of_route:
                    del self._refused_of[route_key]
        return changed

    def _meets_other_kind(self, listener: ListenerKey, claim: Claim) -> bool:
        """Whether a hostname of ``claim`` meets one that a route of another kind claims on ``listener``."""
        return any(hostnames_meet(mine, theirs) for kind, counts in self._hostnames_on.get(listener, {}).items()
                   if kind != claim.route[0] for theirs in counts for mine in claim.hostnames)

    def _install(self, key: RouteKey, route: AnyRoute | None, named: frozenset[NamespacedName]) -> None:
        """Put the route's result, after cross serving, in place of the previous one: its virtual hosts and
        its counts in ``attachedRoutes``."""
        old = self._routes.pop(key, None)
        self._results.pop(key, None)
        if old is not None:
            self._count(old.result, -1)
            for place in old.places:
                self._vhost(place).remove(key, old.entries)
        raw = self._raw.get(key)
        if raw is None:
            if route is not None:
                self._routes[key] = _Route(_placeholder(route), named, ())
            return
        result = apply_refusals(raw, self._refused_of.get(key, {}))
        builder = ROUTE_BUILDERS[key[0]]
        if builder.listener == "HTTP":
            places = tuple({(binding.gateway, binding.port, hostname): None
                            for parent in result.parents for binding in parent.bindings if binding.usable
                            for hostname in binding.hostnames})
        else:  # one TCP or UDP listener per port: the route's place there, whatever the hostnames
            places = tuple({(binding.gateway, binding.port, stream_slot(builder.listener)): None
                            for parent in result.parents for binding in parent.bindings if binding.usable})
        state = _Route(result, named, places, builder.entries(result, self._backends) if places else ())
        self._routes[key] = state
        self._results[key] = result
        self._count(result, 1)
        for place in places:
            self._vhost(place).add(key, state.entries)

    def _rebuild(self, key: RouteKey) -> None:
        """New IR for a route whose backends' endpoints changed."""
        state = self._routes.get(key)
        if state is None or not state.places:
            return
        state.entries = ROUTE_BUILDERS[key[0]].refresh_backends(state.result, state.entries, self._backends)
        for place in state.places:
            self._vhost(place).replace(state.entries)

    def _assemble(self) -> Translated:
        assert self._layer is not None
        gateways = []
        resources = {}
        for key, shape in self._shapes.items():
            gateway = self._irs.get(key)
            if gateway is not None and key in self._stale:
                self._resources[key] = self._envoy[key].update(gateway)
            elif gateway is None:
                ns, name = key
                vhosts = {}
                for port_number in {*(port.port for port in shape.ports), *(port for _, port in shape.streams)}:
                    by_hostname = self._hostnames.get((key, port_number), {})
                    for hostname in [h for h, v in by_hostname.items() if not v.members]:
                        del by_hostname[hostname]
                        del self._vhosts[(key, port_number, hostname)]
                for port in shape.ports:
                    port_name = f"{ns}/{name}/{port.port}"
                    by_hostname = self._hostnames.get((key, port.port), {})
                    vhosts[port.port] = tuple(by_hostname[h].rebuild(port_name, h) for h in sorted(by_hostname)
                                              if not is_stream_slot(h))
                streams = {}
                for protocol, port_number in shape.streams:
                    group = self._hostnames.get((key, port_number), {}).get(stream_slot(protocol))
                    if group is not None:
                        streams[(protocol, port_number)] = group.rebuild(f"{ns}/{name}/{port_number}",
                                                                         stream_slot(protocol)).routes
                gateway = self._irs[key] = gateway_ir(self.cluster, shape, vhosts, streams)
                envoy = self._envoy.get(key)
                if envoy is None:
                    envoy = self._envoy[key] = GatewayResources()
                self._resources[key] = envoy.update(gateway)
            gateways.append(gateway)
            resources[key] = self._resources[key]
        self._stale.clear()
        for gone in set(self._envoy) - set(self._shapes):
            del self._envoy[gone]
            self._resources.pop(gone, None)
        counted = {}
        for key, result in self._layer.gateways.items():
            known = self._counted.get(key)
            if known is None:
                known = result.with_attached(self._counts.get(key, {}))
            counted[key] = known
        self._counted = counted
        # Copies: these dicts change with the next call, and this output must not.
        evaluation = Evaluation(dict(self._layer.classes), dict(counted), dict(self._results))
        return Translated(evaluation, tuple(gateways), resources, self._failover, self._backend_tls)


def _placeholder(route: AnyRoute) -> RouteResult:
    """The state of a route that names none of our Gateways (it has no result, only dependencies)."""
    return RouteResult(route, (), (), (), ())

