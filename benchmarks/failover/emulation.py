"""Envoy configuration the benchmark generates itself and serves from its own xDS server.

Two uses:
- the peer row, "flat": every ServiceImport endpoint at priority 0 with Envoy's defaults (no health
  checks, outlier detection or retries), as Envoy Gateway configures a ServiceImport backend. Its
  endpoints follow the EndpointSlices (the emulated kubelet's reports), as Envoy Gateway's would.
- ``--emulate``: every policy row from mcgw's failover settings (``mcgw.semantics.policy.failover``) without the
  controller, to check the harness or try a setting before the translation has it.

For a gRPC row the backends speak HTTP/2 (and, with settings, are checked with grpc.health.v1 and
retried on UNAVAILABLE), as mcgw translates a GRPCRoute's ServiceImport backend. For a TCP row the listener
proxies connections (``tcp_proxy``); with settings, the backends get TCP connect checks and a refused or timed
out connect is made again (``max_connect_attempts``), as mcgw translates a TCPRoute's.

The resources follow the combination measured in ``shared/reference/failover.md``, plus
``update_merge_window: 0s`` (Envoy's default merges host health changes for 1 s, which delays both a
health-checked shift and the failback by up to that much; this emulation found it, and mcgw's
translation sets it too). What mcgw itself sends is what the controller translates, not this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Registered for message_from_dict: the retry extensions the route uses.
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2  # noqa: F401
from envoy.extensions.retry.priority.previous_priorities.v3 import previous_priorities_config_pb2  # noqa: F401

from mcgw.dataplane.bootstrap import NodeIdentity
from mcgw.semantics.policy.failover import FailoverSettings
from mcgw.translate.clusters import overprovisioning_factor
from xdsserver import Snapshot, SnapshotCache, XdsServer, message_from_dict

_T = "type.googleapis.com/"
ADS = {"ads": {}, "resource_api_version": "V3"}


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g}s"


@dataclass
class Endpoint:
    address: str
    port: int
    ready: bool = True


@dataclass
class Source:
    """One source cluster's endpoints of the service."""

    cluster: str
    endpoints: list[Endpoint] = field(default_factory=list)


# A gRPC backend's cluster speaks HTTP/2 with prior knowledge.
_HTTP2 = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
    "@type": _T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "explicit_http_config": {"http2_protocol_options": {}}}}


def cluster_resource(name: str, settings: FailoverSettings | None, kind: str = "http") -> dict[str, Any]:
    """The Envoy Cluster; ``settings`` None is the flat peer (Envoy's defaults, Envoy Gateway's 10 s connect).
    ``kind`` "grpc": HTTP/2 to the backends, health-checked with grpc.health.v1; "tcp": TCP connect checks."""
    protocol = {"typed_extension_protocol_options": _HTTP2} if kind == "grpc" else {}
    checker: dict[str, dict[str, Any]] = {"grpc": {"grpc_health_check": {}}, "tcp": {"tcp_health_check": {}}}
    if settings is None:
        return {"@type": _T + "envoy.config.cluster.v3.Cluster", "name": name, "type": "EDS",
                "connect_timeout": "10s", "eds_cluster_config": {"eds_config": ADS}, **protocol}
    resource: dict[str, Any] = {
        "@type": _T + "envoy.config.cluster.v3.Cluster", "name": name, "type": "EDS", "connect_timeout": "0.25s",
        "eds_cluster_config": {"eds_config": ADS},
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}, "update_merge_window": "0s"},
        "circuit_breakers": {"thresholds": [{"max_retries": 1000}]}, **protocol,
    }
    if (hc := settings.health_check) is not None:
        resource["health_checks"] = [{
            "timeout": _seconds(hc.timeout_ms), "interval": _seconds(hc.interval_ms),
            "no_traffic_interval": _seconds(hc.no_traffic_interval_ms),
            "unhealthy_threshold": hc.unhealthy_threshold, "healthy_threshold": hc.healthy_threshold,
            **checker.get(kind, {"http_health_check": {"path": hc.path}}),
        }]
    if (od := settings.outlier) is not None:
        resource["outlier_detection"] = {
            "consecutive_5xx": od.consecutive_failures,
            "consecutive_gateway_failure": od.consecutive_failures, "enforcing_consecutive_gateway_failure": 100,
            "consecutive_local_origin_failure": od.consecutive_failures,
            "enforcing_consecutive_local_origin_failure": 100, "split_external_local_origin_errors": True,
            "interval": _seconds(od.interval_ms), "base_ejection_time": _seconds(od.base_ejection_time_ms),
            "max_ejection_percent": 100,
        }
    return resource


def route_action(name: str, settings: FailoverSettings | None, grpc: bool = False) -> dict[str, Any]:
    """``grpc``: retries also retry a gRPC UNAVAILABLE (HTTP 200 with ``grpc-status: 14``)."""
    action: dict[str, Any] = {"cluster": name}
    if settings is not None and (retry := settings.retry) is not None:
        retry_on = [*retry.retry_on, *(["unavailable"] if grpc else [])]
        action["retry_policy"] = {
            "retry_on": ",".join(retry_on), "num_retries": retry.attempts,
            "per_try_timeout": _seconds(retry.per_try_timeout_ms),
            "retry_priority": {"name": "envoy.retry_priorities.previous_priorities", "typed_config": {
                "@type": _T + "envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig",
                "update_frequency": 1}},
            "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {
                "@type": _T + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
            "host_selection_retry_max_attempts": 3,
        }
    return action


def load_assignment(name: str, levels: list[list[Source]], settings: FailoverSettings | None) -> dict[str, Any]:
    """One locality per source cluster; ``levels`` best first. Endpoints that are not ready are not sent
    (as mcgw does for an EndpointSlice endpoint with ready false), and empty levels are skipped so the
    priorities stay contiguous."""
    localities = []
    priority = 0
    for level in levels:
        entries = [{"locality": {"zone": source.cluster, "sub_zone": source.cluster}, "priority": priority,
                    "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                        "address": e.address, "port_value": e.port}}}, "health_status": "HEALTHY"}
                        for e in source.endpoints if e.ready]} for source in level]
        entries = [e for e in entries if e["lb_endpoints"]]
        if entries:
            localities += entries
            priority += 1
    resource: dict[str, Any] = {"@type": _T + "envoy.config.endpoint.v3.ClusterLoadAssignment",
                                "cluster_name": name, "endpoints": localities}
    if settings is not None:
        factor = overprovisioning_factor(settings)
        resource["policy"] = {"overprovisioning_factor": factor}
    return resource


def tcp_listener(name: str, listener: str, listen_port: int, settings: FailoverSettings | None) -> dict[str, Any]:
    """A listener proxying each connection to the cluster; with settings, a failed connect is tried again on
    another host (and priority) up to the retry attempts, as mcgw's TCPRoute translation does."""
    proxy: dict[str, Any] = {"@type": _T + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                             "stat_prefix": "bench", "cluster": name}
    if settings is not None and settings.retry is not None:
        proxy["max_connect_attempts"] = settings.retry.attempts + 1
    return {"@type": _T + "envoy.config.listener.v3.Listener", "name": listener,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": proxy}]}]}


def gateway_resources(listen_port: int, levels: list[list[Source]],
                      settings: FailoverSettings | None, kind: str = "http") -> list[dict[str, Any]]:
    name, listener = "bench/cart", f"bench/gw/{kind}"
    if kind == "tcp":
        return [cluster_resource(name, settings, kind), load_assignment(name, levels, settings),
                tcp_listener(name, listener, listen_port, settings)]
    grpc = kind == "grpc"
    return [
        cluster_resource(name, settings, kind),
        load_assignment(name, levels, settings),
        {"@type": _T + "envoy.config.listener.v3.Listener", "name": listener,
         "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
         "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
             "@type": _T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
             "stat_prefix": "bench", "rds": {"route_config_name": listener, "config_source": ADS},
             "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                 "@type": _T + "envoy.extensions.filters.http.router.v3.Router"}}]}}]}]},
        {"@type": _T + "envoy.config.route.v3.RouteConfiguration", "name": listener, "virtual_hosts": [{
            "name": listener, "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "route": route_action(name, settings, grpc)}]}]},
    ]


class EmulatedControlPlane:
    """An xDS server with the benchmark's own translation: EndpointSlice readiness in, EDS out at once.

    ``frozen`` emulates a lost API server: readiness reports are held back until it thaws.
    """

    def __init__(self, node: NodeIdentity, listen_port: int, sources: dict[str, Source], kind: str = "http") -> None:
        self.node = node
        self.listen_port = listen_port
        self.sources = sources
        self.kind = kind
        self.levels: list[list[Source]] = []
        self.settings: FailoverSettings | None = None
        self.cache = SnapshotCache()
        self.server = XdsServer(self.cache)
        self.frozen = False
        self._held: list[tuple[str, bool]] = []

    async def start(self) -> int:
        return await self.server.start("127.0.0.1:0")

    async def stop(self) -> None:
        await self.server.stop()

    def configure(self, order: list[str] | None, settings: FailoverSettings | None) -> None:
        """``order`` lists the clusters by priority, one level each; None puts all of them at priority 0."""
        self.levels = [list(self.sources.values())] if order is None else [[self.sources[c]] for c in order]
        self.settings = settings
        self.publish()

    def set_ready(self, cluster: str, ready: bool) -> None:
        """The kubelet's readiness report for every endpoint of ``cluster`` reached the API server."""
        if self.frozen:
            self._held.append((cluster, ready))
            return
        for endpoint in self.sources[cluster].endpoints:
            endpoint.ready = ready
        self.publish()

    def freeze(self) -> None:
        self.frozen = True

    def thaw(self) -> None:
        """Apply the latest held report per cluster, as a relist after the API server is back would."""
        self.frozen = False
        latest = dict(self._held)
        self._held = []
        for cluster, ready in latest.items():
            self.set_ready(cluster, ready)

    def publish(self) -> None:
        resources = gateway_resources(self.listen_port, self.levels, self.settings, self.kind)
        group = (self.node.cluster, f"{self.node.namespace}/{self.node.gateway}")
        self.cache.set_snapshot(group, Snapshot.from_messages(
            (message_from_dict(r) for r in resources), self.cache.get(group)))
