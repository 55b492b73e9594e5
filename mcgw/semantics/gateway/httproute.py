"""HTTPRoute rules that Envoy would refuse are dropped, with a reason, before they reach translation.

Regular expressions are compiled with RE2 exactly as Envoy will: a pattern RE2 rejects, or whose
program is larger than Envoy's default limit (100), would make Envoy NACK the whole route table.
"""

from __future__ import annotations

from functools import lru_cache

import re2

from mcgw.objects.model import (
    BackendRef,
    GRPCRoute,
    HeaderMatch,
    HeaderModifier,
    HTTPRoute,
    PathModifier,
    QueryParamMatch,
    RequestMirror,
    RouteFilter,
    RouteRule,
)
from mcgw.semantics.gateway.cors import cors_problem, origin_matchers
from mcgw.semantics.gateway.limits import (
    MAX_BACKEND_REFS,
    MAX_MATCHERS,
    MAX_PATH_LENGTH,
    MAX_PORT,
    MAX_WEIGHT,
    MIN_PORT,
    header_name_problem,
    header_value_problem,
    modifiable_header_problem,
    path_problem,
    port_problem,
    precise_hostname_problem,
    weights_problem,
)
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


REDIRECT_CODES = (301, 302, 303, 307, 308)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
SUPPORTED_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite",
                     "RequestMirror", "CORS")
# The CRD's rule: every filter type but RequestMirror may appear at most once in a rule.
_ONCE_PER_RULE = frozenset(SUPPORTED_FILTERS) - {"RequestMirror"}
# Each filter type's configuration field (as its spec names it), which must be set for that type and
# only for it: a filter without it would mean nothing, and one set for another type would be ignored.
# What a backendRef's filters may do: Envoy gives one backend of a route its own headers to add and
# remove, and nothing else a filter could ask for.
BACKEND_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier")
_CONFIG_FIELDS = {"RequestHeaderModifier": "requestHeaderModifier", "ResponseHeaderModifier": "responseHeaderModifier",
                  "RequestRedirect": "requestRedirect", "URLRewrite": "urlRewrite", "RequestMirror": "requestMirror",
                  "CORS": "cors"}


def _modifier_problem(modifier: HeaderModifier | None) -> str | None:
    """Header names and values Envoy would refuse, and the CRD's limits on them."""
    if modifier is None:
        return None
    if max(len(modifier.set), len(modifier.add), len(modifier.remove)) > MAX_MATCHERS:
        return f"a header modifier may set, add or remove at most {MAX_MATCHERS} headers each"
    for headers in (modifier.set, modifier.add):
        for header in headers:
            if problem := modifiable_header_problem(header.name) or header_value_problem(header.name, header.value):
                return problem
            if not header.value:
                return f"value of header {header.name!r} is empty; set a value, or remove the header instead"
            if len(header.value) * 4 > MAX_HEADER_VALUE_BYTES and len(header.value.encode()) > MAX_HEADER_VALUE_BYTES:
                return f"value of header {header.name!r} is longer than {MAX_HEADER_VALUE_BYTES} bytes"
    for name in modifier.remove:
        if problem := modifiable_header_problem(name):
            return problem
    return None


def _path_modifier_problem(modifier: PathModifier | None) -> str | None:
    """The value of the modifier's own type must be set, and only that one: either other case is ambiguous."""
    if modifier is None:
        return None
    if modifier.type == "ReplaceFullPath":
        value, other = modifier.replace_full_path, modifier.replace_prefix_match
        field, other_field = "replaceFullPath", "replacePrefixMatch"
    else:
        value, other = modifier.replace_prefix_match, modifier.replace_full_path
        field, other_field = "replacePrefixMatch", "replaceFullPath"
    if value is None:
        return f"path modifier of type {modifier.type} has no {field}; set {field}"
    if other is not None:
        return f"path modifier of type {modifier.type} also sets {other_field}; remove it, or change the type"
    if len(value) > MAX_PATH_LENGTH:
        return f"rewritten path {value[:40]!r}... is longer than {MAX_PATH_LENGTH} characters"
    return header_value_problem(":path", value)


def _hostname_filter_problem(hostname: str | None) -> str | None:
    return None if hostname is None else precise_hostname_problem(hostname)


def _config_problem(route_filter: RouteFilter) -> str | None:
    """The configuration of the filter's own type is set, and no other's."""
    kind = route_filter.type
    configs = (("requestHeaderModifier", route_filter.request_header_modifier),
               ("responseHeaderModifier", route_filter.response_header_modifier),
               ("requestRedirect", route_filter.request_redirect), ("urlRewrite", route_filter.url_rewrite),
               ("requestMirror", route_filter.request_mirror), ("cors", route_filter.cors))
    own = _CONFIG_FIELDS[kind]
    for field, config in configs:
        if field == own and config is None:
            return f"filter of type {kind} has no {own}; set {own}"
        if field != own and config is not None:
            return f"filter of type {kind} also sets {field}; remove it, or change the filter's type"
    return None


def filter_problem(route_filter: RouteFilter) -> str | None:
    """Only the part of the filter's own type is ever translated, so only that part is checked."""
    if problem := _config_problem(route_filter):
        return problem
    kind = route_filter.type
    if kind == "RequestHeaderModifier":
        return _modifier_problem(route_filter.request_header_modifier)
    if kind == "ResponseHeaderModifier":
        return _modifier_problem(route_filter.response_header_modifier)
    if kind == "RequestRedirect" and (redirect := route_filter.request_redirect) is not None:
        if redirect.port is not None and (problem := port_problem(redirect.port, "redirect port")):
            return problem
        if redirect.status_code not in REDIRECT_CODES:
            return f"redirect statusCode {redirect.status_code} is not supported; use 301, 302, 303, 307 or 308"
        if redirect.scheme is not None and redirect.scheme not in ("http", "https"):
            return f"redirect scheme {redirect.scheme!r} is not supported; use http or https"
        return _hostname_filter_problem(redirect.hostname) or _path_modifier_problem(redirect.path)
    if kind == "URLRewrite" and (rewrite := route_filter.url_rewrite) is not None:
        return _hostname_filter_problem(rewrite.hostname) or _path_modifier_problem(rewrite.path)
    if kind == "RequestMirror" and (mirror := route_filter.request_mirror) is not None:
        port = mirror.backend_ref.port
        if port is not None and (problem := port_problem(port, f"mirror backendRef {mirror.backend_ref.name} port")):
            return problem
        return _mirror_share_problem(mirror)
    if kind == "CORS" and (cors := route_filter.cors) is not None:
        return cors_problem(cors) or _origins_regex_problem(cors.allow_origins)
    return None


def _origins_regex_problem(origins: tuple[str, ...]) -> str | None:
    """A wildcard origin is a regular expression for Envoy, under the same limits as a route's."""
    for origin in origins:
        for value, regex in origin_matchers(origin):
            if regex and (problem := regex_problem(value)):
                return f"CORS allowOrigins entry {origin!r}: {problem}"
    return None


def _mirror_share_problem(mirror: RequestMirror) -> str | None:
    """The share of requests mirrored: a percent of 0..100 or a fraction of at most 1, not both (the CRD's
    rules; a share outside them has no meaning to give it)."""
    name = mirror.backend_ref.name
    if mirror.percent is not None and mirror.fraction is not None:
        return f"mirror to {name} sets both percent and fraction; set one of them"
    if mirror.percent is not None and not 0 <= mirror.percent <= 100:
        return f"mirror to {name} has percent {mirror.percent}; use 0 to 100"
    fraction = mirror.fraction
    if fraction is not None:
        if fraction.denominator < 1:
            return f"mirror to {name} has fraction denominator {fraction.denominator}; use 1 or more"
        if not 0 <= fraction.numerator <= fraction.denominator:
            return (f"mirror to {name} has fraction {fraction.numerator}/{fraction.denominator}; the numerator "
                    f"must be 0 to the denominator")
    return None


def matcher_problem(matcher: HeaderMatch | QueryParamMatch, what: str) -> str | None:
    if problem := header_name_problem(matcher.name):
        return f"{what} name: {problem}"
    if matcher.type == "RegularExpression":
        return regex_problem(matcher.value)
    # Only a value of more than a quarter of the limit in characters can exceed it in UTF-8 bytes.
    if not matcher.value:
        return f"{what} for {matcher.name!r} has an empty value; set a value"
    if len(matcher.value) * 4 > MAX_HEADER_VALUE_BYTES and len(matcher.value.encode()) > MAX_HEADER_VALUE_BYTES:
        return f"match value for {matcher.name!r} is longer than {MAX_HEADER_VALUE_BYTES} bytes"
    return header_value_problem(matcher.name, matcher.value)


def rule_problem(rule: RouteRule) -> str | None:
    """The first reason this rule cannot be programmed, or None."""
    if rule.filters and (problem := _filters_problem(rule)):
        return problem
    refs = rule.backend_refs
    if refs and (problem := backend_refs_problem(refs)):
        return problem
    for match in rule.matches:
        path = match.path
        if problem := path_problem(path.type, path.value):
            return problem
        if path.type == "RegularExpression" and (problem := regex_problem(path.value)):
            return problem
        if match.method is not None and match.method not in METHODS:
            return f"method {match.method!r} is not supported; use one of {', '.join(sorted(METHODS))}"
        if not match.headers and not match.query_params:
            continue
        if len(match.headers) > MAX_MATCHERS or len(match.query_params) > MAX_MATCHERS:
            return f"a match may have at most {MAX_MATCHERS} header matches and {MAX_MATCHERS} query matches"
        for header in match.headers:
            if problem := matcher_problem(header, "header match"):
                return problem
        for query in match.query_params:
            if problem := matcher_problem(query, "query match"):
                return problem
    return None


def rule_filters_problem(filters: tuple[RouteFilter, ...], supported: tuple[str, ...],
                         once_per_rule: frozenset[str]) -> str | None:
    """A rule's filters one by one, for any route kind: each of a ``supported`` type, each one that can be
    programmed, and a type in ``once_per_rule`` at most once."""
    seen: set[str] = set()
    for route_filter in filters:
        kind = route_filter.type
        if kind not in supported:
            return f"filter type {kind} is not supported; use {', '.join(supported)}"
        if problem := filter_problem(route_filter):
            return problem
        if kind in seen and kind in once_per_rule:
            return f"the rule has more than one {kind} filter; use at most one"
        seen.add(kind)
    return None


def _filters_problem(rule: RouteRule) -> str | None:
    """Each filter, and the CRD's rules for a rule's filters together: a type that may appear once appears
    once; RequestRedirect goes with neither URLRewrite nor backendRefs; ReplacePrefixMatch needs exactly one
    PathPrefix match (the prefix it replaces)."""
    if problem := rule_filters_problem(rule.filters, SUPPORTED_FILTERS, _ONCE_PER_RULE):
        return problem
    seen = {route_filter.type for route_filter in rule.filters}
    prefix_replaced = any(
        config is not None and config.path is not None and config.path.type == "ReplacePrefixMatch"
        for config in (route_filter.request_redirect or route_filter.url_rewrite for route_filter in rule.filters))
    if "RequestRedirect" in seen and "URLRewrite" in seen:
        return "RequestRedirect and URLRewrite cannot be used in the same rule; use one of them"
    if "RequestRedirect" in seen and rule.backend_refs:
        return "a rule with a RequestRedirect filter cannot have backendRefs; remove them, or the redirect"
    if prefix_replaced and (len(rule.matches) != 1 or rule.matches[0].path.type != "PathPrefix"):
        return ("a path modifier of type ReplacePrefixMatch needs exactly one match, of type PathPrefix; "
                "split the rule, or use ReplaceFullPath")
    return None


def backend_refs_problem(refs: tuple[BackendRef, ...]) -> str | None:
    """At most 16 refs, each weight in 0..1,000,000 (so their sum fits Envoy's uint32), ports in 1..65535,
    and filters that can be programmed."""
    if len(refs) > MAX_BACKEND_REFS:
        return f"the rule has {len(refs)} backendRefs; use at most {MAX_BACKEND_REFS}"
    for ref in refs:
        if not 0 <= ref.weight <= MAX_WEIGHT:
            return weights_problem([ref.weight])
        port = ref.port
        if port is not None and not MIN_PORT <= port <= MAX_PORT:
            return port_problem(port, f"backendRef {ref.name} port")
        if ref.filters and (problem := _backend_filters_problem(ref)):
            return problem
    return None


def _backend_filters_problem(ref: BackendRef) -> str | None:
    """A backendRef's filters, each checked as the same filter on a rule is, and at most one of each type
    (the CRD's rule). A type mcgw cannot apply to one backend is a problem, never ignored."""
    seen: set[str] = set()
    for route_filter in ref.filters:
        kind = route_filter.type
        if kind not in BACKEND_FILTERS:
            elsewhere = "; or move it to the rule's filters" if kind in SUPPORTED_FILTERS else ""
            return (f"backendRef {ref.name}: filter type {kind} is not supported on a backendRef; use "
                    f"{' or '.join(BACKEND_FILTERS)}{elsewhere}")
        if problem := filter_problem(route_filter):
            return f"backendRef {ref.name}: {problem}"
        if kind in seen:
            return f"backendRef {ref.name} has more than one {kind} filter; use at most one"
        seen.add(kind)
    return None


def check_rules(route: HTTPRoute) -> RuleCheck:
    return rule_check(route, [rule_problem(rule) for rule in route.spec.rules])


def named_backends(route: HTTPRoute | GRPCRoute) -> frozenset[tuple[str, str]]:
    """Every (namespace, name) a route names as a backend: backendRefs and mirrors, dropped rules included
    (GRPCRoute's rules have the same backendRefs and filters)."""
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
