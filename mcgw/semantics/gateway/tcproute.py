"""TCPRoute rules that Envoy would refuse are dropped with a reason; the same checks serve UDPRoute.

A TCPRoute (and a UDPRoute) has no matches: its one rule's backendRefs take every connection (datagram)
of the listeners it binds to. The CRD allows exactly one rule; one past it, from a manifest file, is
dropped rather than silently merged into the first.
"""

from __future__ import annotations

from mcgw.objects.model import StreamRouteRule, TCPRoute, UDPRoute
from mcgw.semantics.gateway.httproute import backend_refs_problem
from mcgw.semantics.gateway.routes import RuleCheck, rule_check

MAX_STREAM_RULES = 1  # the CRD's bound (Gateway API v1)


def rule_problem(index: int, rule: StreamRouteRule, kind: str) -> str | None:
    """The first reason this rule cannot be programmed, or None."""
    if index >= MAX_STREAM_RULES:
        return f"a {kind} has one rule; put every backendRef in the first rule"
    if any(ref.filters for ref in rule.backend_refs):
        return f"backendRef filters do not apply to a {kind}; remove them"
    return backend_refs_problem(rule.backend_refs) if rule.backend_refs else None


def check_rules(route: TCPRoute | UDPRoute) -> RuleCheck:
    return rule_check(route, [rule_problem(index, rule, route.kind) for index, rule in enumerate(route.spec.rules)])


def named_backends(route: TCPRoute | UDPRoute) -> frozenset[tuple[str, str]]:
    """Every (namespace, name) the route names as a backend, dropped rules included."""
    ns = route.metadata.namespace
    return frozenset((ref.namespace or ns, ref.name) for rule in route.spec.rules for ref in rule.backend_refs)
