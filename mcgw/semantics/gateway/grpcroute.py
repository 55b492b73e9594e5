"""GRPCRoute rules that Envoy would refuse, or that mcgw cannot serve, are dropped with a reason.

A gRPC method match becomes a match on ``:path`` (``/<service>/<method>``): an Exact service and method
must have the characters the CRD allows, so that the path is literal; a RegularExpression one is
compiled with RE2 as Envoy will compile the whole path pattern (:func:`method_path`).
"""

from __future__ import annotations

import re

from mcgw.objects.model import GRPCMethodMatch, GRPCRoute, GRPCRouteRule
from mcgw.semantics.gateway.httproute import (
    backend_refs_problem,
    matcher_problem,
    regex_problem,
    rule_filters_problem,
)
from mcgw.semantics.gateway.limits import MAX_MATCHERS
from mcgw.semantics.gateway.routes import RuleCheck, rule_check

SUPPORTED_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror")
_ONCE_PER_RULE = frozenset({"RequestHeaderModifier", "ResponseHeaderModifier"})
MAX_METHOD_FIELD_LENGTH = 1024
# The CRD's rules for an Exact match (its XValidations).
_EXACT_SERVICE = re.compile(r"\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*", re.IGNORECASE)
_EXACT_METHOD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
# Any one path segment: what an unset service or method matches.
ANY_SEGMENT = "[^/]+"


def method_path(match: GRPCMethodMatch | None) -> tuple[str, str]:
    """(path match type, value) for a method match that :func:`check_rules` kept: Exact service and method
    are an exact path, a service alone a prefix of ``/<service>/``, anything else a regular expression."""
    if match is None:
        return "PathPrefix", "/"
    service, method = match.service or "", match.method or ""
    if match.type == "Exact":
        if service and method:
            return "Exact", f"/{service}/{method}"
        if service:
            return "PathPrefix", f"/{service}/"
        return "RegularExpression", f"/{ANY_SEGMENT}/{method}"
    return "RegularExpression", f"/{service or ANY_SEGMENT}/{method or ANY_SEGMENT}"


def _method_problem(match: GRPCMethodMatch) -> str | None:
    service, method = match.service or "", match.method or ""
    if not service and not method:
        return "a method match needs a service, a method or both; set one"
    for what, value in (("service", service), ("method", method)):
        if len(value) > MAX_METHOD_FIELD_LENGTH:
            return f"method match {what} is longer than {MAX_METHOD_FIELD_LENGTH} characters"
    if match.type == "Exact":
        if service and not _EXACT_SERVICE.fullmatch(service):
            return (f"method match service {service!r} has characters a gRPC service name cannot have; use "
                    "dot-separated names of letters, digits and _, or type RegularExpression")
        if method and not _EXACT_METHOD.fullmatch(method):
            return (f"method match method {method!r} has characters a gRPC method name cannot have; use letters, "
                    "digits and _, or type RegularExpression")
        return None
    for value in (service, method):
        if value and (problem := regex_problem(value)):
            return problem
    return regex_problem(method_path(match)[1])


def rule_problem(rule: GRPCRouteRule) -> str | None:
    """The first reason this rule cannot be programmed, or None."""
    if problem := rule_filters_problem(rule.filters, SUPPORTED_FILTERS, _ONCE_PER_RULE):
        return problem
    if rule.backend_refs and (problem := backend_refs_problem(rule.backend_refs)):
        return problem
    for match in rule.matches:
        if match.method is not None and (problem := _method_problem(match.method)):
            return problem
        if len(match.headers) > MAX_MATCHERS:
            return f"a match may have at most {MAX_MATCHERS} header matches"
        for header in match.headers:
            if problem := matcher_problem(header, "header match"):
                return problem
    return None


def check_rules(route: GRPCRoute) -> RuleCheck:
    return rule_check(route, [rule_problem(rule) for rule in route.spec.rules])
