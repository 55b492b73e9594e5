"""GRPCRoute → route IR: every match of every kept rule, on ``:path``, with its precedence key.

Precedence within a virtual host (GRPCRoute, Gateway API v1): the most characters of a matching service,
then of a matching method, then the most header matches; ties go to the oldest route, then
namespace/name, then rule and match order. Envoy picks the most specific virtual host (hostname) itself.

Backends speak HTTP/2 (:meth:`mcgw.ir.backends.Backends.as_grpc`). Retries across priorities and hosts of
a ServiceImport backend also retry a gRPC ``UNAVAILABLE``, which a gRPC server answers with HTTP 200.
"""

from __future__ import annotations

from typing import cast

from mcgw import ir
from mcgw.ir import httproute
from mcgw.ir.backends import Backends
from mcgw.ir.httproute import PrecedenceKey, RankedRoute, backend_headers, failover_retry, header_ops, rule_mirrors
from mcgw.objects.model import GRPCRoute, GRPCRouteMatch
from mcgw.semantics.gateway.evaluate import RouteResult
from mcgw.semantics.gateway.grpcroute import method_path

_new = tuple.__new__
_MATCH_ALL = (GRPCRouteMatch(),)  # a rule without matches matches every request
GRPC_RETRY_ON = "unavailable"
# No route timeout: Envoy's default (15 s) would cut every stream that lives longer; a gRPC client bounds
# its calls with its own deadline.
NO_TIMEOUT = "0s"


def _grpc_retry(retry: ir.RetryIR | None) -> ir.RetryIR | None:
    if retry is None or GRPC_RETRY_ON in retry.retry_on:
        return retry
    return retry._replace(retry_on=(*retry.retry_on, GRPC_RETRY_ON))


def _backends(result: RouteResult, index: int, backends: Backends) -> tuple[ir.BackendIR, ...]:
    resolved = result.backends[index]
    if not resolved:
        return ()
    route = result.route
    meta = route.metadata
    return tuple([backends.as_grpc(b) for b in backends.of_rule(resolved, (route.kind, meta.namespace, meta.name),
                                                                 index)])


def _mirrors(result: RouteResult, index: int,
             backends: Backends) -> tuple[tuple[ir.BackendIR, ...], tuple[tuple[int, int], ...]]:
    if not result.mirrors:
        return (), ()
    mirrors, shares = rule_mirrors(result, index, backends)
    return tuple([backends.as_grpc(b) for b in mirrors]), shares


def refresh_backends(result: RouteResult, entries: tuple[RankedRoute, ...],
                     backends: Backends) -> tuple[RankedRoute, ...]:
    """``entries`` (from :func:`route_entries` for ``result``) with their HTTP/2 backends built again."""
    return httproute.refresh_backends(result, entries, backends, backends_of=_backends, mirrors_of=_mirrors,
                                      retry_of=lambda backend_irs: _grpc_retry(failover_retry(backend_irs)))


def route_entries(result: RouteResult, backends: Backends) -> tuple[RankedRoute, ...]:
    """Every match of every kept rule of one GRPCRoute, as route IR with its precedence key."""
    route = cast(GRPCRoute, result.route)  # this builder's kind (ir.routekinds)
    meta = route.metadata
    ns, name, created = meta.namespace, meta.name, meta.creation_timestamp
    rules = route.spec.rules
    entries: list[RankedRoute] = []
    for index in result.kept_rules:
        rule = rules[index]
        backend_irs = _backends(result, index, backends)
        per_backend = backend_headers(rule.backend_refs) if backend_irs else ()
        retry = _grpc_retry(failover_retry(backend_irs))
        mirrors, shares = _mirrors(result, index, backends)
        request_headers = response_headers = ir.NO_HEADER_OPS
        for route_filter in rule.filters:
            if route_filter.type == "RequestHeaderModifier":
                request_headers = header_ops(route_filter.request_header_modifier)
            elif route_filter.type == "ResponseHeaderModifier":
                response_headers = header_ops(route_filter.response_header_modifier)
        for m, match in enumerate(rule.matches or _MATCH_ALL):
            path_type, path = method_path(match.method)
            headers = match.headers
            match_ir = _new(ir.MatchIR, (
                path_type, path,
                tuple([_new(ir.StringMatchIR, (h.name, h.value, h.type == "RegularExpression")) for h in headers])
                if headers else (),
                (), None,
            ))
            route_ir = ir.RouteIR(f"grpcroute/{ns}/{name}/rule/{index}/match/{m}", match_ir, backend_irs,
                                  request_headers, response_headers, mirrors=mirrors, timeout=NO_TIMEOUT,
                                  failover_retry=retry,
                                  mirror_fractions=shares, backend_headers=per_backend)
            method = match.method
            service_length = len(method.service or "") if method is not None else 0
            method_length = len(method.method or "") if method is not None else 0
            key = _new(PrecedenceKey, (0, -service_length, -method_length, -len(headers), 0, created, ns, name,
                                       index, m, "GRPCRoute"))
            entries.append((key, route_ir))
    return tuple(entries)
