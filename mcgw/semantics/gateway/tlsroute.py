"""TLSRoute rules: backendRefs only, checked as HTTPRoute's are (count, weights, ports).

A TLSRoute matches on SNI alone (its hostnames, met with the listener's by attachment), so a rule has
nothing else Envoy could refuse.
"""

from __future__ import annotations

from mcgw.objects.model import TLSRoute
from mcgw.semantics.gateway.httproute import backend_refs_problem
from mcgw.semantics.gateway.routes import RuleCheck, rule_check


def check_rules(route: TLSRoute) -> RuleCheck:
    return rule_check(route, [backend_refs_problem(rule.backend_refs) if rule.backend_refs else None
                              for rule in route.spec.rules])


def named_backends(route: TLSRoute) -> frozenset[tuple[str, str]]:
    """Every (namespace, name) a route names as a backend, dropped rules included."""
    ns = route.metadata.namespace
    return frozenset((ref.namespace or ns, ref.name) for rule in route.spec.rules for ref in rule.backend_refs)
