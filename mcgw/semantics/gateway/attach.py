"""Route attachment (every route kind): which listeners of which Gateways a route binds to, and why not.

For each parentRef that names one of our Gateways: ``sectionName`` and ``port`` pick candidate
listeners (NoMatchingParent if none), ``allowedRoutes`` filters them by namespace and kind
(NotAllowedByListeners), and hostnames must intersect (NoMatchingListenerHostname). A route serves no
hostname on a listener that a more specific listener on the same port owns (listener isolation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from mcgw.objects.model import GATEWAY_GROUP, Namespace, ParentReference
from mcgw.semantics.gateway import conditions as c
from mcgw.semantics.gateway.hostnames import isolated, route_hostnames_for_listener
from mcgw.semantics.gateway.limits import route_hostnames_problem
from mcgw.semantics.gateway.listeners import HOSTLESS_PROTOCOLS, GatewayResult, ListenerResult
from mcgw.semantics.gateway.routes import RouteView

_new = tuple.__new__  # skips a named tuple's Python-level constructor


class Binding(NamedTuple):
    """The route on one listener, with the hostnames it serves there.

    Plain keys rather than the listener's result object: route results outlive the Gateway results
    they were computed against (as long as those stay equal), so nothing may depend on identity."""

    gateway: tuple[str, str]  # (namespace, name)
    listener: str
    port: int
    usable: bool  # the listener may carry traffic (Programmed)
    hostnames: tuple[str, ...]


class ParentResult(NamedTuple):
    """One ``status.parents[]`` entry of a route (a named tuple: built once per parent of every route)."""

    ref: ParentReference
    gateway_namespace: str
    accepted: c.Condition
    bindings: tuple[Binding, ...] = ()


def _allowed(route: RouteView, gateway: GatewayResult, listener: ListenerResult,
             namespaces: Mapping[str, Namespace]) -> bool:
    if (GATEWAY_GROUP, route.kind) not in listener.supported_kinds:
        return False
    route_ns = route.metadata.namespace
    policy = listener.listener.allowed_routes.namespaces
    if policy.from_ == "All":
        return True
    if policy.from_ == "Same":
        return route_ns == gateway.gateway.metadata.namespace
    if policy.selector is None or not listener.selector_valid:
        return False  # no valid selector selects no namespace (the listener says why)
    namespace = namespaces.get(route_ns)
    labels = dict(namespace.metadata.labels) if namespace else {}
    labels.setdefault("kubernetes.io/metadata.name", route_ns)
    return policy.selector.matches(labels)


def attach(route: RouteView, gateways: Mapping[tuple[str, str], GatewayResult],
           namespaces: Mapping[str, Namespace]) -> list[ParentResult]:
    """A result for every parentRef that names one of our Gateways (others are not ours to report)."""
    results = []
    generation = route.metadata.generation
    # A bad hostname refuses the whole route: serving it without that hostname would widen what it matches.
    hostnames_problem = route_hostnames_problem(tuple(route.spec.hostnames)) if route.spec.hostnames else None
    for ref in route.spec.parent_refs:
        if ref.kind != "Gateway" or ref.group != GATEWAY_GROUP:
            continue
        gateway_ns = ref.namespace or route.metadata.namespace
        gateway = gateways.get((gateway_ns, ref.name))
        if gateway is None:
            continue
        section, port = ref.section_name, ref.port
        candidates = [
            listener for listener in gateway.listeners
            if (section is None or listener.listener.name == section)
            and (port is None or listener.listener.port == port)
        ]
        target = f"Gateway {gateway_ns}/{ref.name}"
        if hostnames_problem:
            results.append(ParentResult(ref, gateway_ns, c.Condition(
                c.ACCEPTED, "False", c.REASON_UNSUPPORTED_VALUE, hostnames_problem, generation)))
            continue
        if not candidates:
            wanted = " and ".join(part for part in (
                f"sectionName {section}" if section else "",
                f"port {port}" if port is not None else "") if part)
            results.append(ParentResult(ref, gateway_ns, c.Condition(
                c.ACCEPTED, "False", c.REASON_NO_MATCHING_PARENT, f"{target} has no listener with {wanted}",
                generation)))
            continue
        allowed = [listener for listener in candidates if _allowed(route, gateway, listener, namespaces)]
        if not allowed:
            kind = (GATEWAY_GROUP, route.kind)
            message = f"no listener of {target} allows {route.kind}s from namespace {route.metadata.namespace}" \
                if any(kind in listener.supported_kinds for listener in candidates) \
                else f"no listener of {target} allows the kind {route.kind} (allowedRoutes.kinds)"
            results.append(ParentResult(ref, gateway_ns, c.Condition(
                c.ACCEPTED, "False", c.REASON_NOT_ALLOWED_BY_LISTENERS, message, generation)))
            continue
        bindings = []
        key = (gateway_ns, ref.name)
        for listener in allowed:
            hostnames = route_hostnames_for_listener(listener.listener.hostname, route.spec.hostnames)
            if hostnames is not None:
                port = listener.listener.port
                others = [other.listener.hostname for other in gateway.listeners
                          if other is not listener and other.usable and other.listener.port == port
                          and other.listener.protocol not in HOSTLESS_PROTOCOLS]
                served = isolated(hostnames, listener.listener.hostname, others) if others else tuple(hostnames)
                bindings.append(_new(Binding, (key, listener.listener.name, port, listener.usable, served)))
        if not bindings:
            results.append(ParentResult(ref, gateway_ns, c.Condition(
                c.ACCEPTED, "False", c.REASON_NO_MATCHING_LISTENER_HOSTNAME,
                f"no hostname of the route intersects a listener hostname of {target}", generation)))
            continue
        results.append(ParentResult(ref, gateway_ns, c.shared(
            c.ACCEPTED, "True", c.REASON_ACCEPTED, f"attached to {target}", generation), tuple(bindings)))
    return results
