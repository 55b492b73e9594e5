"""HTTPRoute rules that Envoy would refuse are dropped, with a reason, before they reach translation.

Regular expressions are compiled with RE2 exactly as Envoy will: a pattern RE2 rejects, or whose
program is larger than Envoy's default limit (100), would make Envoy NACK the whole route table.
"""

from __future__ import annotations

import re
from functools import lru_cache

import re2

from mcgw.objects.model import HeaderMatch, HeaderModifier, HTTPRoute, QueryParamMatch, RouteRule
from mcgw.semantics.gateway.routes import RuleCheck, rule_check

ENVOY_MAX_REGEX_PROGRAM_SIZE = 100
MAX_HEADER_VALUE_BYTES = 4096

_options = re2.Options()
_options.log_errors = False


@lru_cache(maxsize=65536)
def regex_problem(pattern: str) -> str | None:
    """Why Envoy would refuse ``pattern``, or None. Cached: compiling is the costly part of re-translation."""
    try:
        compiled = re2.compile(pattern, _options)
    except re2.error as error:
        detail = error.args[0].decode() if error.args and isinstance(error.args[0], bytes) else str(error)
        return f"invalid regular expression {pattern!r}: {detail}"
    if compiled.programsize > ENVOY_MAX_REGEX_PROGRAM_SIZE:
        return (f"regular expression {pattern!r} is too complex for Envoy (program size {compiled.programsize} > "
                f"{ENVOY_MAX_REGEX_PROGRAM_SIZE})")
    return None


SUPPORTED_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite",
                     "RequestMirror")


_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")  # an RFC 9110 token, as the CRD requires


@lru_cache(maxsize=65536)
def _bad_header_name(name: str) -> bool:
    return not _HEADER_NAME.match(name)


def _modifier_problem(modifier: HeaderModifier | None) -> str | None:
    """Header names Envoy would refuse and values over the Gateway API limit (files are not validated by an
    API server, so the limits the CRD enforces are checked here too)."""
    if modifier is None:
        return None
    for headers in (modifier.set, modifier.add):
        for header in headers:
            if _bad_header_name(header.name):
                return f"header name {header.name!r} is not a valid HTTP header name"
            if len(header.value) * 4 > MAX_HEADER_VALUE_BYTES and len(header.value.encode()) > MAX_HEADER_VALUE_BYTES:
                return f"value of header {header.name!r} is longer than {MAX_HEADER_VALUE_BYTES} bytes"
    for name in modifier.remove:
        if _bad_header_name(name):
            return f"header name {name!r} is not a valid HTTP header name"
    return None


def rule_problem(rule: RouteRule) -> str | None:
    """The first reason this rule cannot be programmed, or None."""
    redirect = rewrite = False
    for route_filter in rule.filters:
        kind = route_filter.type
        if kind not in SUPPORTED_FILTERS:
            return f"filter type {kind} is not supported; use {', '.join(SUPPORTED_FILTERS)}"
        # Only the modifier of the filter's own type is ever translated, so only that one is checked.
        if kind == "RequestHeaderModifier" and (problem := _modifier_problem(route_filter.request_header_modifier)):
            return problem
        if kind == "ResponseHeaderModifier" and (
                problem := _modifier_problem(route_filter.response_header_modifier)):
            return problem
        redirect = redirect or kind == "RequestRedirect"
        rewrite = rewrite or kind == "URLRewrite"
    if redirect and rewrite:
        return "RequestRedirect and URLRewrite cannot be used in the same rule"
    for match in rule.matches:
        path = match.path
        if path.type == "RegularExpression" and (problem := regex_problem(path.value)):
            return problem
        if not match.headers and not match.query_params:
            continue
        matchers: list[HeaderMatch | QueryParamMatch] = [*match.headers, *match.query_params]
        for matcher in matchers:
            if matcher.type == "RegularExpression" and (problem := regex_problem(matcher.value)):
                return problem
            # Only a value of more than a quarter of the limit in characters can exceed it in UTF-8 bytes.
            if len(matcher.value) * 4 > MAX_HEADER_VALUE_BYTES and len(matcher.value.encode()) > MAX_HEADER_VALUE_BYTES:
                return f"match value for {matcher.name!r} is longer than {MAX_HEADER_VALUE_BYTES} bytes"
    return None


def check_rules(route: HTTPRoute) -> RuleCheck:
    return rule_check(route, [rule_problem(rule) for rule in route.spec.rules])


def named_backends(route: HTTPRoute) -> frozenset[tuple[str, str]]:
    """Every (namespace, name) a route names as a backend: backendRefs and mirrors, dropped rules included."""
    ns = route.metadata.namespace
    named = set()
    for rule in route.spec.rules:
        for ref in rule.backend_refs:
            named.add((ref.namespace or ns, ref.name))
        for route_filter in rule.filters:
            if route_filter.request_mirror is not None:
                mirror = route_filter.request_mirror.backend_ref
                named.add((mirror.namespace or ns, mirror.name))
    return frozenset(named)
