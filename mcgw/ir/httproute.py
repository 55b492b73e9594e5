"""HTTPRoute → route IR: every match of every kept rule, with its precedence key.

Precedence within a virtual host (Gateway API v1): an Exact path first, then regular expressions,
then the longest prefix; then a method match, then more header matches, then more query matches;
ties go to the oldest route, then namespace/name, then rule and match order. Envoy picks the most
specific virtual host (exact hostname before wildcards) itself.

:func:`route_entries` is one route's IR (it depends on that route's result and on the endpoints of
the Services it names); :func:`refresh_backends` rebuilds only its backends; :func:`virtual_host`
sorts a virtual host's routes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import NamedTuple, cast

from mcgw import ir
from mcgw.ir.backends import Backends
from mcgw.objects.model import CORS, BackendRef, HeaderModifier, HTTPRoute, PathModifier, RequestMirror
from mcgw.semantics.gateway.cors import origin_matchers
from mcgw.semantics.gateway.evaluate import RouteResult

_by_key = itemgetter(0)
_new = tuple.__new__
_PATH_RANK = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}


class PrecedenceKey(NamedTuple):
    """Where a route match sorts within its virtual host (lower first); unique per match."""

    path_kind: int  # Exact, then RegularExpression, then PathPrefix
    path_length: int  # negated: the longer path first
    method: int  # 0 with a method match
    headers: int  # negated count of header matches
    query_params: int  # negated count of query matches
    created: str  # the older route first
    namespace: str
    name: str
    rule: int
    match: int
    kind: str = "HTTPRoute"  # an HTTPRoute and a GRPCRoute of one name sort apart


RankedRoute = tuple[PrecedenceKey, ir.RouteIR]


def header_ops(modifier: HeaderModifier | None) -> ir.HeaderOpsIR:
    if modifier is None or not (modifier.set or modifier.add or modifier.remove):
        return ir.NO_HEADER_OPS
    return _new(ir.HeaderOpsIR, (tuple([(h.name, h.value) for h in modifier.set]),
                                 tuple([(h.name, h.value) for h in modifier.add]), modifier.remove))


def backend_headers(refs: tuple[BackendRef, ...]) -> tuple[ir.BackendHeadersIR, ...]:
    """Each backendRef's header filters, in the order of the rule's backends (the semantics keep only rules
    whose backendRefs have nothing but header modifiers, at most one of each); none when no ref has any."""
    if not any(ref.filters for ref in refs):
        return ()
    out = []
    for ref in refs:
        request = response = ir.NO_HEADER_OPS
        for route_filter in ref.filters:
            if route_filter.type == "RequestHeaderModifier":
                request = header_ops(route_filter.request_header_modifier)
            elif route_filter.type == "ResponseHeaderModifier":
                response = header_ops(route_filter.response_header_modifier)
        out.append(ir.NO_BACKEND_HEADERS if request is response is ir.NO_HEADER_OPS
                   else _new(ir.BackendHeadersIR, (request, response)))
    return tuple(out) if any(h is not ir.NO_BACKEND_HEADERS for h in out) else ()


def _cors(cors: CORS | None) -> ir.CorsIR | None:
    """The semantics keep only rules whose origins the CRD accepts, so each has its matchers."""
    if cors is None:
        return None
    origins = tuple([_new(ir.OriginMatchIR, matcher) for origin in cors.allow_origins
                     for matcher in origin_matchers(origin)])
    return _new(ir.CorsIR, (origins, cors.allow_methods, cors.allow_headers, cors.expose_headers, cors.max_age,
                            bool(cors.allow_credentials)))


def _path(modifier: PathModifier | None) -> ir.PathRewriteIR | None:
    """The semantics keep only rules whose modifier sets the value of its type (and only that one)."""
    if modifier is None:
        return None
    if modifier.type == "ReplaceFullPath":
        return _new(ir.PathRewriteIR, (modifier.replace_full_path, None))
    return _new(ir.PathRewriteIR, (None, modifier.replace_prefix_match))


def rule_backends(result: RouteResult, index: int, backends: Backends) -> tuple[ir.BackendIR, ...]:
    resolved_refs = result.backends[index]
    if not resolved_refs:
        return ()
    route = result.route
    meta = route.metadata
    return backends.of_rule(resolved_refs, (route.kind, meta.namespace, meta.name), index)


_NO_MIRRORS: tuple[tuple[ir.BackendIR, ...], tuple[tuple[int, int], ...]] = ((), ())


def _share(mirror: RequestMirror | None) -> tuple[int, int]:
    """The share of requests a mirror gets: its percent, its fraction (denominator 100 by default), or all."""
    if mirror is None or (mirror.percent is None and mirror.fraction is None):
        return 1, 1
    if mirror.percent is not None:
        return mirror.percent, 100
    assert mirror.fraction is not None
    return mirror.fraction.numerator, mirror.fraction.denominator


def rule_mirrors(result: RouteResult, index: int,
                  backends: Backends) -> tuple[tuple[ir.BackendIR, ...], tuple[tuple[int, int], ...]]:
    """The rule's mirrors that resolved, and their shares (none when each gets every request): one that
    names a Service in another namespace without a ReferenceGrant, or a backend that does not exist or
    lacks the port, is never configured."""
    mirrors = result.mirrors
    if not mirrors or not mirrors[index]:
        return _NO_MIRRORS
    route = result.route
    key = (route.kind, route.metadata.namespace, route.metadata.name)
    # The resolved mirrors are the rule's RequestMirror filters, in order (semantics' resolve_mirrors).
    filters = [f.request_mirror for f in getattr(route.spec.rules[index], "filters", ())
               if f.type == "RequestMirror" and f.request_mirror is not None]
    kept = [(m, _share(f)) for m, f in zip(mirrors[index], filters, strict=True) if m.problem is None]
    shares = tuple([share for _, share in kept])
    return (tuple([backends.get(m.ref.kind, m.namespace, m.ref.name, m.ref.port, 1, key) for m, _ in kept]),
            shares if any(n != d for n, d in shares) else ())


def failover_retry(backend_irs: tuple[ir.BackendIR, ...]) -> ir.RetryIR | None:
    """Retries across priorities and hosts: those of the first ServiceImport backend that has them."""
    for backend in backend_irs:
        if backend.failover is not None and backend.failover.retry:
            return backend.failover.retry
    return None


RuleBackends = Callable[[RouteResult, int, Backends], tuple[ir.BackendIR, ...]]
RuleMirrors = Callable[[RouteResult, int, Backends], tuple[tuple[ir.BackendIR, ...], tuple[tuple[int, int], ...]]]


def refresh_backends(result: RouteResult, entries: tuple[RankedRoute, ...], backends: Backends, *,
                     backends_of: RuleBackends | None = None, mirrors_of: RuleMirrors | None = None,
                     retry_of: Callable[[tuple[ir.BackendIR, ...]], ir.RetryIR | None] = failover_retry,
                     ) -> tuple[RankedRoute, ...]:
    """``entries`` (from :func:`route_entries` for ``result``) with their backends built again, for when
    only endpoints changed: far cheaper than building the route again, and the rest stays the same objects.
    A route kind with backends of its own (GRPCRoute) gives how it builds them and their retry policy."""
    backends_of = backends_of or rule_backends
    mirrors_of = mirrors_of or rule_mirrors
    refreshed: list[RankedRoute] = []
    rule_index = -1
    backend_irs: tuple[ir.BackendIR, ...] = ()
    mirrors: tuple[ir.BackendIR, ...] = ()
    shares: tuple[tuple[int, int], ...] = ()
    for key, route_ir in entries:
        if key.rule != rule_index:
            rule_index = key.rule
            backend_irs = backends_of(result, rule_index, backends)
            mirrors, shares = mirrors_of(result, rule_index, backends)
        refreshed.append((key, route_ir._replace(backends=backend_irs, mirrors=mirrors, mirror_fractions=shares,
                                                 failover_retry=retry_of(backend_irs))))
    return tuple(refreshed)


def route_entries(result: RouteResult, backends: Backends) -> tuple[RankedRoute, ...]:
    """Every match of every kept rule of one route, as route IR with its precedence key.

    The hottest loop of a full translation (one iteration per match): named tuples are built with
    ``tuple.__new__``, which skips their Python-level constructor and costs a quarter of it."""
    route = cast(HTTPRoute, result.route)  # this builder's kind (ir.routekinds)
    meta = route.metadata
    ns, name, created = meta.namespace, meta.name, meta.creation_timestamp
    rules = route.spec.rules
    resolved = result.backends
    route_key = (route.kind, ns, name)
    of_rule = backends.of_rule
    entries: list[RankedRoute] = []
    for index in result.kept_rules:
        rule = rules[index]
        backend_irs = of_rule(resolved[index], route_key, index) if resolved[index] else ()
        per_backend = backend_headers(rule.backend_refs) if backend_irs else ()
        retry_across = failover_retry(backend_irs)
        request_headers = response_headers = ir.NO_HEADER_OPS
        redirect = rewrite_path = None
        rewrite_hostname = None
        cors = None
        mirrors, shares = rule_mirrors(result, index, backends) if result.mirrors else _NO_MIRRORS
        # The last filter of each type wins; mirrors (every resolved one applies) come from the route's result.
        for route_filter in rule.filters:
            kind = route_filter.type
            if kind == "RequestHeaderModifier":
                request_headers = header_ops(route_filter.request_header_modifier)
            elif kind == "ResponseHeaderModifier":
                response_headers = header_ops(route_filter.response_header_modifier)
            elif kind == "RequestRedirect":
                r = route_filter.request_redirect
                redirect = _new(ir.RedirectIR, (r.scheme, r.hostname, r.port, _path(r.path), r.status_code)) \
                    if r else None
            elif kind == "URLRewrite":
                rewrite = route_filter.url_rewrite
                rewrite_hostname = rewrite.hostname if rewrite else None
                rewrite_path = _path(rewrite.path) if rewrite else None
            elif kind == "CORS":
                cors = _cors(route_filter.cors)
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
                retry_attempts, retry_backoff, retry_across, shares, per_backend, cors,
            ))
            key = _new(PrecedenceKey, (_PATH_RANK[path_type], -len(path_value), 0 if method else 1, -len(headers),
                                       -len(query), created, ns, name, index, m, "HTTPRoute"))
            entries.append((key, route_ir))
    return tuple(entries)


def virtual_host(port_name: str, hostname: str, entries: Iterable[RankedRoute]) -> ir.VirtualHostIR:
    """A virtual host with its routes in precedence order."""
    ranked = sorted(entries, key=_by_key)
    return ir.VirtualHostIR(f"{port_name}/{hostname}", hostname, tuple([r[1] for r in ranked]))
