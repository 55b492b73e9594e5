"""One member cluster's Gateway API objects in, every status mcgw owns out: a pure function.

Routes are evaluated oldest first (creationTimestamp, then namespace/name), the order in which the
spec breaks ties, so the outcome never depends on the order objects were listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mcgw.model import Gateway, GatewayClass, HTTPRoute, Namespace, ReferenceGrant, Secret

from . import conditions as c
from .attach import ParentResult, attach
from .backends import ResolvedBackend, resolve, resolved_refs_condition
from .listeners import GatewayResult, class_status, gateway_status
from .rules import check_rules


@dataclass(frozen=True)
class ClusterObjects:
    """What the semantics read from one member cluster (the store's view of it)."""

    gateway_classes: tuple[GatewayClass, ...] = ()
    gateways: tuple[Gateway, ...] = ()
    routes: tuple[HTTPRoute, ...] = ()
    grants: tuple[ReferenceGrant, ...] = ()
    namespaces: tuple[Namespace, ...] = ()
    secrets: tuple[Secret, ...] = ()
    services: frozenset[tuple[str, str]] = frozenset()
    service_imports: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def of(cls, objects: Iterable[object], services: Iterable[tuple[str, str]] = (),
           service_imports: Iterable[tuple[str, str]] = ()) -> ClusterObjects:
        items = list(objects)
        return cls(
            tuple(o for o in items if isinstance(o, GatewayClass)),
            tuple(o for o in items if isinstance(o, Gateway)),
            tuple(o for o in items if isinstance(o, HTTPRoute)),
            tuple(o for o in items if isinstance(o, ReferenceGrant)),
            tuple(o for o in items if isinstance(o, Namespace)),
            tuple(o for o in items if isinstance(o, Secret)),
            frozenset(services),
            frozenset(service_imports),
        )


@dataclass
class RouteResult:
    route: HTTPRoute
    parents: list[ParentResult]
    parent_conditions: list[list[c.Condition]]
    backends: list[list[ResolvedBackend]]
    kept_rules: list[int]


@dataclass
class Evaluation:
    classes: dict[str, list[c.Condition]] = field(default_factory=dict)
    gateways: dict[tuple[str, str], GatewayResult] = field(default_factory=dict)
    routes: dict[tuple[str, str], RouteResult] = field(default_factory=dict)


def _age_order(route: HTTPRoute) -> tuple[str, str, str]:
    return route.metadata.creation_timestamp, route.metadata.namespace, route.metadata.name


def evaluate(objects: ClusterObjects, addresses: Mapping[tuple[str, str], list[str]] | None = None) -> Evaluation:
    """Statuses for our GatewayClasses, their Gateways, and the HTTPRoutes that name those Gateways."""
    evaluation = Evaluation()
    classes = {gc.metadata.name: gc for gc in objects.gateway_classes}
    for name, gateway_class in classes.items():
        status = class_status(gateway_class)
        if status is not None:
            evaluation.classes[name] = status
    secrets = {(s.metadata.namespace, s.metadata.name): s for s in objects.secrets}
    for gateway in objects.gateways:
        key = (gateway.metadata.namespace, gateway.metadata.name)
        result = gateway_status(gateway, classes, secrets, objects.grants, (addresses or {}).get(key, ()))
        if result is not None:
            evaluation.gateways[key] = result
    namespaces = {n.metadata.name: n for n in objects.namespaces}
    for route in sorted(objects.routes, key=_age_order):
        parents = attach(route, evaluation.gateways, namespaces)
        if not parents:
            continue
        backends = resolve(route, objects.services, objects.service_imports, objects.grants)
        resolved = resolved_refs_condition(route, backends)
        rules = check_rules(route)
        parent_conditions = []
        for parent in parents:
            accepted = parent.accepted
            if accepted.status == "True" and rules.all_dropped:
                accepted = c.Condition(c.ACCEPTED, "False", c.REASON_UNSUPPORTED_VALUE, rules.all_dropped,
                                       route.metadata.generation)
                parent.bindings.clear()
            parent.accepted = accepted
            extra = [rules.partially_invalid] if rules.partially_invalid else []
            parent_conditions.append([accepted, resolved, *extra])
            for binding in parent.bindings:
                binding.listener.attached_routes += 1
        evaluation.routes[(route.metadata.namespace, route.metadata.name)] = RouteResult(
            route, parents, parent_conditions, backends, rules.kept)
    return evaluation
