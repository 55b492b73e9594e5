"""The reference for :mod:`mcgw.translate.routes`: each Envoy ``Route`` built with protobuf constructors.

mcgw encodes routes straight to bytes for speed; this builds the same routes the slow, obvious way,
as the plain data a protobuf constructor takes, and the tests check that both give the same bytes.
"""

from __future__ import annotations

import math
import string
from fractions import Fraction
from typing import Any

from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2

from mcgw import ir
from mcgw.translate.listeners import pack
from mcgw.translate.routes import duration_fields

_REDIRECT_CODES = {301: "MOVED_PERMANENTLY", 302: "FOUND", 303: "SEE_OTHER", 307: "TEMPORARY_REDIRECT",
                   308: "PERMANENT_REDIRECT"}
_SET = "OVERWRITE_IF_EXISTS_OR_ADD"
_ADD = "APPEND_IF_EXISTS_OR_ADD"
_ANY_PATH = {"regex": "^.*$"}
_DIRECT_500 = {"status": 500}


def duration(value: str) -> dict[str, int]:
    """A Gateway API duration (``1h2m3s400ms``) as the fields of a ``google.protobuf.Duration`` (the parsing
    is the translator's own: what is checked here is the encoding)."""
    seconds, nanos = duration_fields(value)
    return {"seconds": seconds, "nanos": nanos}


def _string_match(value: str, regex: bool) -> dict[str, Any]:
    return {"safe_regex": {"regex": value}} if regex else {"exact": value}


def _match(match: ir.MatchIR) -> dict[str, Any]:
    path_type = match.path_type
    if path_type == "PathPrefix":
        trimmed = match.path.rstrip("/")
        # Gateway API prefixes match whole path segments: /foo matches /foo and /foo/bar, not /foobar.
        out: dict[str, Any] = {"path_separated_prefix": trimmed} if trimmed else {"prefix": "/"}
    elif path_type == "Exact":
        out = {"path": match.path}
    else:
        out = {"safe_regex": {"regex": match.path}}
    if match.headers or match.method:
        headers = [{"name": h.name, "string_match": _string_match(h.value, h.regex)} for h in match.headers]
        if match.method:
            headers.append({"name": ":method", "string_match": {"exact": match.method}})
        out["headers"] = headers
    if match.query_params:
        out["query_parameters"] = [{"name": q.name, "string_match": _string_match(q.value, q.regex)}
                                   for q in match.query_params]
    return out


def _literal(value: str) -> str:
    """Envoy reads ``%`` in added header values as a formatter command; Gateway API values are literal."""
    return value.replace("%", "%%")


def _header_ops(ops: ir.HeaderOpsIR, out: dict[str, Any], prefix: str) -> None:
    added = [{"header": {"key": k, "value": _literal(v)}, "append_action": _SET} for k, v in ops.set]
    added += [{"header": {"key": k, "value": _literal(v)}, "append_action": _ADD} for k, v in ops.add]
    if added:
        out[f"{prefix}_headers_to_add"] = added
    if ops.remove:
        out[f"{prefix}_headers_to_remove"] = list(ops.remove)


def _prefix_rewrite(match: ir.MatchIR, replacement: str, out: dict[str, Any]) -> None:
    """Gateway API replaces whole segments, ignoring trailing slashes: a replacement that keeps a segment
    is Envoy's prefix_rewrite (after the root prefix, with the separator); one that is the root removes
    the prefix and the slashes after it, down to one."""
    if match.path_type != "PathPrefix":
        if replacement:
            out["prefix_rewrite"] = replacement
        return
    prefix, kept = match.path.rstrip("/"), replacement.rstrip("/")
    if kept:
        out["prefix_rewrite"] = kept if prefix else kept + "/"
    elif prefix:
        escaped = "".join("\\" + c if c in string.punctuation and c not in "/_%" else c for c in prefix)
        out["regex_rewrite"] = {"pattern": {"regex": f"^{escaped}/*"}, "substitution": "/"}


_WELL_KNOWN = {"http": 80, "https": 443}


def _redirect(redirect: ir.RedirectIR, match: ir.MatchIR, port: int, protocol: str) -> dict[str, Any]:
    out: dict[str, Any] = {"response_code": _REDIRECT_CODES.get(redirect.status_code, "FOUND")}
    if redirect.scheme:
        out["scheme_redirect"] = redirect.scheme
    if redirect.hostname:
        out["host_redirect"] = redirect.hostname
    # The spec's port: the redirect's, else the well-known one of its scheme, else the listener's. Left
    # out where it is the Location scheme's default and Envoy's Location would carry no other port.
    if redirect.port:
        target = redirect.port
    elif redirect.scheme:
        target = _WELL_KNOWN.get(redirect.scheme, port)
    else:
        target = port
    location_scheme = redirect.scheme or ("https" if protocol == "HTTPS" else "http")
    if target != _WELL_KNOWN.get(location_scheme) or (redirect.scheme and not redirect.hostname):
        out["port_redirect"] = target
    if redirect.path and redirect.path.full_path is not None:
        out["path_redirect"] = redirect.path.full_path
    elif redirect.path and redirect.path.prefix is not None:
        _prefix_rewrite(match, redirect.path.prefix, out)
    return out


def _weighted_cluster(backend: ir.BackendIR, headers: ir.BackendHeadersIR) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": backend.name, "weight": {"value": backend.weight}}
    _header_ops(headers.request, entry, "request")
    _header_ops(headers.response, entry, "response")
    return entry


def _action(route: ir.RouteIR, weighted: list[tuple[ir.BackendIR, ir.BackendHeadersIR]],
            valid: int) -> dict[str, Any]:
    action: dict[str, Any] = {}
    # A backend's own header filters live on its weighted-cluster entry, so then even one backend is weighted.
    if len(weighted) == 1 and weighted[0][1] == ir.NO_BACKEND_HEADERS:
        action["cluster"] = weighted[0][0].name
    else:
        action["weighted_clusters"] = {"clusters": [_weighted_cluster(b, h) for b, h in weighted]}
    if valid < len(weighted):
        # Invalid backends have no Envoy cluster, so their weighted share finds none: answer 500 for it.
        action["cluster_not_found_response_code"] = "INTERNAL_SERVER_ERROR"
    if route.rewrite_hostname:
        action["host_rewrite_literal"] = route.rewrite_hostname
    rewrite = route.rewrite_path
    if rewrite is not None and rewrite.full_path is not None:
        action["regex_rewrite"] = {"pattern": _ANY_PATH, "substitution": rewrite.full_path}
    elif rewrite is not None and rewrite.prefix is not None:
        _prefix_rewrite(route.match, rewrite.prefix, action)
    if route.timeout:
        action["timeout"] = duration(route.timeout)
    retry: dict[str, Any] = {}
    if route.backend_timeout:
        retry["per_try_timeout"] = duration(route.backend_timeout)
    if route.retry_codes or route.retry_attempts is not None:
        retry["retry_on"] = "retriable-status-codes" if route.retry_codes else "5xx"
        retry["retriable_status_codes"] = list(route.retry_codes)
        retry["num_retries"] = {"value": route.retry_attempts if route.retry_attempts is not None else 1}
        if route.retry_backoff:
            retry["retry_back_off"] = {"base_interval": duration(route.retry_backoff)}
    if route.failover_retry is not None:
        _failover_retry(route.failover_retry, retry)
    if retry:
        action["retry_policy"] = retry
    if route.mirrors:
        shares = route.mirror_fractions or [(1, 1)] * len(route.mirrors)
        action["request_mirror_policies"] = [_mirror_policy(m.name, *share)
                                             for m, share in zip(route.mirrors, shares, strict=True)]
    return action


def _mirror_policy(cluster: str, numerator: int, denominator: int) -> dict[str, Any]:
    """Every request, or a share of them over Envoy's smallest denominator that holds it exactly (else
    the nearest millionth)."""
    if numerator == denominator:
        return {"cluster": cluster}
    for base, name in ((100, "HUNDRED"), (10_000, "TEN_THOUSAND"), (1_000_000, "MILLION")):
        if (numerator * base) % denominator == 0:
            share = {"numerator": numerator * base // denominator, "denominator": name}
            break
    else:
        nearest = math.floor(Fraction(numerator * 1_000_000, denominator) + Fraction(1, 2))
        share = {"numerator": nearest, "denominator": "MILLION"}
    return {"cluster": cluster, "runtime_fraction": {"default_value": share}}


_PREVIOUS_PRIORITIES = {
    "name": "envoy.retry_priorities.previous_priorities",
    "typed_config": pack(previous_priorities_config_pb2.PreviousPrioritiesConfig(update_frequency=1))}
_PREVIOUS_HOSTS = [{"name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": pack(previous_hosts_pb2.PreviousHostsPredicate())}]


def _failover_retry(failover: ir.RetryIR, retry: dict[str, Any]) -> None:
    """Retries that move on: to another host, and to the next priority once one has been tried, within a
    per-try timeout so that a blackholed host costs one try. Merged with the rule's own Gateway API retry."""
    tokens = list(failover.retry_on)
    if retry.get("retry_on"):
        tokens += [t for t in retry["retry_on"].split(",") if t not in tokens]
    retry["retry_on"] = ",".join(tokens)
    retry["num_retries"] = {"value": max(failover.attempts, retry.get("num_retries", {}).get("value", 0))}
    retry.setdefault("per_try_timeout", {"seconds": failover.per_try_timeout_ms // 1000,
                                         "nanos": failover.per_try_timeout_ms % 1000 * 1_000_000})
    retry["retry_priority"] = _PREVIOUS_PRIORITIES
    retry["retry_host_predicate"] = _PREVIOUS_HOSTS
    retry["host_selection_retry_max_attempts"] = 3


def _cors_policy(cors: ir.CorsIR) -> cors_pb2.CorsPolicy:
    policy = cors_pb2.CorsPolicy(
        allow_origin_string_match=[_string_match(o.value, o.regex) for o in cors.origins],
        allow_methods=", ".join(cors.allow_methods), allow_headers=", ".join(cors.allow_headers),
        expose_headers=", ".join(cors.expose_headers), forward_not_matching_preflights={"value": False})
    if cors.max_age is not None:
        policy.max_age = str(cors.max_age)
    if cors.allow_credentials:
        policy.allow_credentials.value = True
    return policy


def route_dict(route: ir.RouteIR, port: int, protocol: str) -> dict[str, Any]:
    """One Envoy ``Route`` as constructor data, for a listener on ``port`` speaking ``protocol``."""
    out: dict[str, Any] = {"name": route.name, "match": _match(route.match)}
    if route.cors is not None:
        out["typed_per_filter_config"] = {"envoy.filters.http.cors": pack(_cors_policy(route.cors))}
    if route.request_headers is not ir.NO_HEADER_OPS:
        _header_ops(route.request_headers, out, "request")
    if route.response_headers is not ir.NO_HEADER_OPS:
        _header_ops(route.response_headers, out, "response")
    if route.redirect is not None:
        out["redirect"] = _redirect(route.redirect, route.match, port, protocol)
        return out
    headers = route.backend_headers or [ir.NO_BACKEND_HEADERS] * len(route.backends)
    weighted = [(b, h) for b, h in zip(route.backends, headers, strict=True) if b.weight > 0]
    valid = sum(1 for b, _ in weighted if b.valid)
    if not valid:
        # No backend at all, or only invalid ones: the spec's answer is 500.
        out["direct_response"] = _DIRECT_500
    else:
        out["route"] = _action(route, weighted, valid)
    return out


def route_message(route: ir.RouteIR, port: int = 80, protocol: str = "HTTP") -> route_components_pb2.Route:
    return route_components_pb2.Route(**route_dict(route, port, protocol))


