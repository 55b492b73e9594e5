"""Gateway parameters: a GatewayClass's ``parametersRef`` gives defaults, a Gateway's
``spec.infrastructure.parametersRef`` overrides them; both name an mcgw.io EnvoyProxy.

Merging: every field the Gateway's EnvoyProxy sets replaces its class's, except ``service`` and
``accessLog``, whose fields merge one by one; ``replicas`` and ``autoscaling`` are one choice, so the
Gateway setting either replaces the class's other one as well. A reference that names another kind, an object that does
not exist, or one whose content mcgw cannot use is ``InvalidParameters`` on the class or the Gateway,
with a message that says what to change. Pure: objects in, the merged spec or the problem out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcgw.objects.model import (
    POLICY_GROUP,
    EnvoyAccessLog,
    EnvoyProxy,
    EnvoyProxySpec,
    EnvoyServiceSettings,
    Gateway,
    GatewayClass,
)

PARAMETERS_KIND = "EnvoyProxy"
# Envoy's Bootstrap fields that mcgw renders itself: extra bootstrap settings cannot replace them.
RESERVED_BOOTSTRAP_FIELDS = frozenset({"node", "admin", "dynamic_resources", "static_resources"})
# The other top-level fields of envoy.config.bootstrap.v3.Bootstrap (a test compares them with the proto).
BOOTSTRAP_FIELDS = frozenset({
    "application_log_config", "bootstrap_extensions", "certificate_provider_instances", "cluster_manager",
    "config_sources", "default_config_source", "default_regex_engine", "default_socket_interface",
    "deferred_stat_options", "dns_resolution_config", "enable_dispatcher_stats", "fatal_actions", "flags_path",
    "grpc_async_client_manager_config", "hds_config", "header_prefix", "inline_headers", "layered_runtime",
    "listener_manager", "memory_allocator_manager", "node_context_params", "overload_manager",
    "perf_tracing_file_path", "stats_config", "stats_eviction_interval", "stats_flush_interval",
    "stats_flush_on_admin", "stats_server_version_override", "stats_sinks", "tracing", "typed_dns_resolver_config",
    "use_tcp_for_dns_lookups", "watchdog", "watchdogs", "xds_config_tracker_extension", "xds_delegate_extension",
})

Proxies = Mapping[tuple[str, str], EnvoyProxy]  # (namespace, name) -> EnvoyProxy
DEFAULT_SERVICE_TYPE = "LoadBalancer"
# Envoy samples access logs in parts per million: a percentage finer than this cannot be told apart.
ACCESS_LOG_SAMPLING_STEP = 0.0001


def service_type(spec: EnvoyProxySpec | None) -> str:
    """The type of a Gateway's generated Service, as its parameters say."""
    return (spec.service.type if spec and spec.service and spec.service.type else None) or DEFAULT_SERVICE_TYPE


def spec_problem(spec: EnvoyProxySpec) -> str | None:
    """What in an EnvoyProxy's spec mcgw cannot use (beyond what its schema already refuses), or None."""
    for key in sorted(spec.bootstrap or {}):
        if key in RESERVED_BOOTSTRAP_FIELDS:
            return f"spec.bootstrap.{key} is rendered by mcgw and cannot be replaced: remove it"
        if key not in BOOTSTRAP_FIELDS:
            return (f"spec.bootstrap.{key} is not a field of Envoy's Bootstrap (use the snake_case field names of "
                    "envoy.config.bootstrap.v3.Bootstrap)")
    if spec.replicas is not None and spec.autoscaling is not None:
        return "spec.replicas and spec.autoscaling are both set: set one of them"
    scaling = spec.autoscaling
    if scaling is not None and scaling.min_replicas is not None and scaling.min_replicas > scaling.max_replicas:
        return (f"spec.autoscaling.minReplicas ({scaling.min_replicas}) is above maxReplicas "
                f"({scaling.max_replicas})")
    budget = spec.pod_disruption_budget
    if budget is not None and (budget.min_available is None) == (budget.max_unavailable is None):
        return "spec.podDisruptionBudget needs exactly one of minAvailable and maxUnavailable"
    sampling = spec.access_log.sampling if spec.access_log is not None else None
    if sampling is not None and abs(sampling * 10_000 - round(sampling * 10_000)) > 1e-6:
        nearest = max(round(sampling, 4), ACCESS_LOG_SAMPLING_STEP)
        return (f"spec.accessLog.sampling ({sampling:g}) is finer than Envoy samples: give the percentage in "
                f"steps of {ACCESS_LOG_SAMPLING_STEP:g} (for example {nearest:g})")
    return None


def _lookup(what: str, group: str, kind: str, namespace: str, name: str,
            proxies: Proxies) -> tuple[EnvoyProxySpec | None, str | None]:
    if (group, kind) != (POLICY_GROUP, PARAMETERS_KIND):
        return None, (f"{what} names {group or 'core'}/{kind} {name}; mcgw takes its parameters from an "
                      f"{POLICY_GROUP} {PARAMETERS_KIND}: set group {POLICY_GROUP} and kind {PARAMETERS_KIND}")
    proxy = proxies.get((namespace, name))
    if proxy is None:
        return None, f"{what}: {PARAMETERS_KIND} {namespace}/{name} does not exist: create it, or fix the reference"
    if problem := spec_problem(proxy.spec):
        return None, f"{what}: {PARAMETERS_KIND} {namespace}/{name}: {problem}"
    return proxy.spec, None


def class_parameters(gateway_class: GatewayClass, proxies: Proxies) -> tuple[EnvoyProxySpec | None, str | None]:
    """The class's EnvoyProxy spec (None without parametersRef) and the reason it cannot be used, if any."""
    ref = gateway_class.spec.parameters_ref
    if ref is None:
        return None, None
    if not ref.namespace:
        return None, (f"spec.parametersRef ({ref.group or 'core'}/{ref.kind} {ref.name}) has no namespace; an "
                      f"{PARAMETERS_KIND} is namespaced: set spec.parametersRef.namespace")
    return _lookup("spec.parametersRef", ref.group, ref.kind, ref.namespace, ref.name, proxies)


def _set(obj: Any) -> dict[str, Any]:
    """The fields of a parsed object that are set (not None)."""
    return {name: value for name in obj.__dataclass_fields__ if (value := getattr(obj, name)) is not None}


def merge(base: EnvoyProxySpec | None, override: EnvoyProxySpec | None) -> EnvoyProxySpec | None:
    """``override``'s fields over ``base``'s (see the module docstring)."""
    if base is None or override is None:
        return override if base is None else base
    merged = {**_set(base), **_set(override)}
    if override.replicas is not None:
        merged.pop("autoscaling", None)
    if override.autoscaling is not None:
        merged.pop("replicas", None)
    if base.service is not None and override.service is not None:
        merged["service"] = EnvoyServiceSettings(**{**_set(base.service), **_set(override.service)})
    if base.access_log is not None and override.access_log is not None:
        merged["access_log"] = EnvoyAccessLog(**{**_set(base.access_log), **_set(override.access_log)})
    return EnvoyProxySpec(**merged)


def gateway_parameters(gateway: Gateway, class_spec: EnvoyProxySpec | None,
                       proxies: Proxies) -> tuple[EnvoyProxySpec | None, str | None]:
    """The Gateway's parameters, its own over its class's, and the reason its own cannot be used, if any."""
    infrastructure = gateway.spec.infrastructure
    ref = infrastructure.parameters_ref if infrastructure else None
    if ref is None:
        return class_spec, None
    own, problem = _lookup("spec.infrastructure.parametersRef", ref.group, ref.kind, gateway.metadata.namespace,
                           ref.name, proxies)
    if problem:
        return None, problem
    return merge(class_spec, own), None
