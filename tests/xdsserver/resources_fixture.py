"""Small Envoy resources for xdsserver tests."""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from xdsserver import message_from_dict

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def eds_cluster(name: str, connect_timeout: str = "1s") -> Message:
    return message_from_dict({
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster", "name": name, "type": "EDS",
        "connect_timeout": connect_timeout,
        "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}},
    })


def endpoints(name: str, port: int = 8080) -> Message:
    return message_from_dict({
        "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", "cluster_name": name,
        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}}}}]}],
    })


def listener(name: str, route: str, port: int = 10000) -> Message:
    return message_from_dict({
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener", "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
            "@type": HCM, "stat_prefix": "t",
            "rds": {"route_config_name": route, "config_source": {"ads": {}, "resource_api_version": "V3"}},
            "http_filters": [{"name": "router", "typed_config": {"@type": ROUTER}}],
        }}]}],
    })


def route(name: str, cluster: str, header: str = "v1") -> Message:
    body: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "name": name,
        "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{
            "match": {"prefix": "/"}, "route": {"cluster": cluster},
            "response_headers_to_add": [{"header": {"key": "x-version", "value": header}}],
        }]}],
    }
    return message_from_dict(body)


def gateway_resources(clusters: tuple[str, ...] = ("c1",), port: int = 8080, header: str = "v1",
                      ports: dict[str, int] | None = None, route_to: str | None = None,
                      listeners: tuple[str, ...] = ("l1",), listen_port: int = 10000,
                      extra: tuple[Message, ...] = (), connect_timeout: str = "1s") -> list[Message]:
    """Listeners ``l<i>`` each with route ``r<i>`` to ``route_to`` (default: the first cluster), plus the
    EDS clusters with their endpoints (``ports`` overrides the port per cluster)."""
    target = route_to or clusters[0]
    resources: list[Message] = []
    for name in clusters:
        resources += [eds_cluster(name, connect_timeout), endpoints(name, (ports or {}).get(name, port))]
    for index, listener_name in enumerate(listeners):
        route_name = f"r{listener_name[1:]}"
        resources += [listener(listener_name, route_name, listen_port + index), route(route_name, target, header)]
    return resources + list(extra)
