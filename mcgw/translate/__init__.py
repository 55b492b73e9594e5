"""IR → Envoy resources. Pure, and the only place that knows Envoy's API.

Route tables are built with protobuf constructors (fields as Python values, durations and wrappers as
their message fields); the few other resources go through Envoy-style JSON, which reads more easily.

Per Gateway port: one Listener and one RouteConfiguration (named ``<ns>/<gateway>/<port>``), a virtual
host per hostname (the Host header's port is ignored), and one EDS cluster with its
ClusterLoadAssignment per backendRef and per mirror.
"""

from __future__ import annotations

import re
from typing import Any

from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

from mcgw import ir
from xdsserver import message_from_dict

_ADS = {"ads": {}, "resource_api_version": "V3"}
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_TLS_INSPECTOR = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")


def duration(value: str) -> dict[str, int]:
    """A Gateway API duration (``1h2m3s400ms``) as the fields of a ``google.protobuf.Duration``."""
    match = _DURATION.match(value)
    if not match or not value:
        raise ValueError(f"invalid duration {value!r}")
    hours, minutes, seconds, millis = (int(part or 0) for part in match.groups())
    total_ms = ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis
    return {"seconds": total_ms // 1000, "nanos": (total_ms % 1000) * 1_000_000}


def _string_match(value: str, regex: bool) -> dict[str, Any]:
    return {"safe_regex": {"regex": value}} if regex else {"exact": value}


def _match(match: ir.MatchIR) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if match.path_type == "Exact":
        out["path"] = match.path
    elif match.path_type == "RegularExpression":
        out["safe_regex"] = {"regex": match.path}
    else:
        trimmed = match.path.rstrip("/")
        # Gateway API prefixes match whole path segments: /foo matches /foo and /foo/bar, not /foobar.
        out.update({"path_separated_prefix": trimmed} if trimmed else {"prefix": "/"})
    headers = [{"name": h.name, "string_match": _string_match(h.value, h.regex)} for h in match.headers]
    if match.method:
        headers.append({"name": ":method", "string_match": {"exact": match.method}})
    if headers:
        out["headers"] = headers
    if match.query_params:
        out["query_parameters"] = [{"name": q.name, "string_match": _string_match(q.value, q.regex)}
                                   for q in match.query_params]
    return out


def _literal(value: str) -> str:
    """Envoy reads ``%`` in added header values as a formatter command; Gateway API values are literal."""
    return value.replace("%", "%%")


def _header_ops(ops: ir.HeaderOpsIR, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    added = [{"header": {"key": k, "value": _literal(v)}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
             for k, v in ops.set]
    added += [{"header": {"key": k, "value": _literal(v)}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}
              for k, v in ops.add]
    if added:
        out[f"{prefix}_headers_to_add"] = added
    if ops.remove:
        out[f"{prefix}_headers_to_remove"] = list(ops.remove)
    return out


def _redirect(redirect: ir.RedirectIR) -> dict[str, Any]:
    codes = {301: "MOVED_PERMANENTLY", 302: "FOUND", 303: "SEE_OTHER", 307: "TEMPORARY_REDIRECT",
             308: "PERMANENT_REDIRECT"}
    out: dict[str, Any] = {"response_code": codes.get(redirect.status_code, "FOUND")}
    if redirect.scheme:
        out["scheme_redirect"] = redirect.scheme
    if redirect.hostname:
        out["host_redirect"] = redirect.hostname
    if redirect.port:
        out["port_redirect"] = redirect.port
    if redirect.path and redirect.path.full_path is not None:
        out["path_redirect"] = redirect.path.full_path
    elif redirect.path and redirect.path.prefix is not None:
        out["prefix_rewrite"] = redirect.path.prefix
    return out


def _route(route: ir.RouteIR) -> dict[str, Any]:
    out: dict[str, Any] = {"name": route.name, "match": _match(route.match)}
    out.update(_header_ops(route.request_headers, "request"))
    out.update(_header_ops(route.response_headers, "response"))
    if route.redirect is not None:
        out["redirect"] = _redirect(route.redirect)
        return out
    valid = [b for b in route.backends if b.valid and b.weight > 0]
    if not valid:
        # No backend at all, or only invalid ones: the spec's answer is 500.
        out["direct_response"] = {"status": 500}
        return out
    action: dict[str, Any] = {}
    weighted = [b for b in route.backends if b.weight > 0]
    if len(weighted) == 1:
        action["cluster"] = weighted[0].name
    else:
        action["weighted_clusters"] = {"clusters": [{"name": b.name, "weight": {"value": b.weight}}
                                                    for b in weighted]}
    if len(valid) < len(weighted):
        # Invalid backends have no Envoy cluster, so their weighted share finds none: answer 500 for it.
        action["cluster_not_found_response_code"] = "INTERNAL_SERVER_ERROR"
    if route.rewrite_hostname:
        action["host_rewrite_literal"] = route.rewrite_hostname
    if route.rewrite_path and route.rewrite_path.full_path is not None:
        action["regex_rewrite"] = {"pattern": {"regex": "^.*$"}, "substitution": route.rewrite_path.full_path}
    elif route.rewrite_path and route.rewrite_path.prefix is not None:
        action["prefix_rewrite"] = route.rewrite_path.prefix
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
    if retry:
        action["retry_policy"] = retry
    if route.mirrors:
        action["request_mirror_policies"] = [{"cluster": m.name} for m in route.mirrors]
    out["route"] = action
    return out


def _tls_chain(chain: ir.TlsChainIR, hcm: dict[str, Any]) -> dict[str, Any]:
    context = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "common_tls_context": {
            "alpn_protocols": ["h2", "http/1.1"],
            "tls_certificates": [{"certificate_chain": {"inline_string": crt}, "private_key": {"inline_string": key}}
                                 for crt, key in chain.certificates],
        },
    }
    out: dict[str, Any] = {"filters": [hcm],
                           "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": context}}
    if chain.server_names:
        out["filter_chain_match"] = {"server_names": list(chain.server_names)}
    return out


def _backend_resources(backend: ir.BackendIR) -> list[dict[str, Any]]:
    cluster = {
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": backend.name, "type": "EDS",
        "connect_timeout": "5s", "eds_cluster_config": {"eds_config": _ADS},
    }
    localities = [{
        "locality": {"region": loc.region, "zone": loc.zone, "sub_zone": loc.cluster},
        "priority": loc.priority,
        "lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": e.address, "port_value": e.port}}},
                          "health_status": e.health} for e in loc.endpoints],
    } for loc in backend.localities if loc.endpoints]
    endpoints = {"@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
                 "cluster_name": backend.name, "endpoints": localities}
    return [cluster, endpoints]


def translate(gateway: ir.GatewayIR) -> list[Message]:
    """Every Envoy resource one Gateway's Envoys receive."""
    resources: list[dict[str, Any]] = []
    route_tables: list[Message] = []
    clusters: dict[str, ir.BackendIR] = {}
    for port in gateway.ports:
        virtual_hosts = []
        for vhost in port.virtual_hosts:
            domains = ["*"] if vhost.hostname == "*" else [vhost.hostname, f"{vhost.hostname}:*"]
            virtual_hosts.append({"name": vhost.name, "domains": domains,
                                  "routes": [_route(r) for r in vhost.routes]})
            for route in vhost.routes:
                for backend in (*route.backends, *route.mirrors):
                    if backend.valid and route.redirect is None:
                        clusters.setdefault(backend.name, backend)
        # Backends that do not resolve have no cluster on purpose (their share answers 500), so Envoy must
        # not refuse the table for naming them; explicit, since inline route configs default to checking.
        # Built with the message constructor, not JSON parsing: route tables are the bulk of the output.
        route_tables.append(route_pb2.RouteConfiguration(name=port.name, virtual_hosts=virtual_hosts,
                                                         validate_clusters={"value": False}))
        hcm = {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": _HCM, "stat_prefix": port.name.replace("/", "_"),
            "rds": {"route_config_name": port.name, "config_source": _ADS},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
        }}
        if port.protocol == "HTTPS":
            chains = [_tls_chain(chain, hcm) for chain in port.tls]
            listener_filters = [{"name": "envoy.filters.listener.tls_inspector",
                                 "typed_config": {"@type": _TLS_INSPECTOR}}]
        else:
            chains, listener_filters = [{"filters": [hcm]}], []
        listener: dict[str, Any] = {
            "@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": port.name,
            "address": {"socket_address": {"address": gateway.address, "port_value": port.port}},
            "filter_chains": chains,
        }
        if listener_filters:
            listener["listener_filters"] = listener_filters
        resources.append(listener)
    for backend in clusters.values():
        resources.extend(_backend_resources(backend))
    return [*route_tables, *(message_from_dict(resource) for resource in resources)]
