"""Render the gateway Envoy bootstrap from ``deploy/envoy/bootstrap.yaml``.

The template is the one operators deploy; rendering it here (for standalone mode, the demo and the
test bed) keeps one source of truth for node identity, ADS settings and xDS keepalive.
"""

from __future__ import annotations

import ipaddress
import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

_DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "envoy" / "bootstrap.yaml"
XDS_CLUSTER_NAME = "mcgw-xds"

AdsApiType = Literal["DELTA_GRPC", "GRPC"]


@dataclass(frozen=True)
class NodeIdentity:
    """Who an Envoy is: the gateway it serves in which member cluster.

    ``node.cluster`` is the member cluster ID and ``node.id`` is ``<namespace>/<gateway>/<instance>``;
    the xDS server derives the node group (cluster, namespace/gateway) from the two.
    """

    cluster: str
    namespace: str
    gateway: str
    instance: str = "0"

    @property
    def node_id(self) -> str:
        return f"{self.namespace}/{self.gateway}/{self.instance}"

    def __post_init__(self) -> None:
        for field_name in ("cluster", "namespace", "gateway", "instance"):
            value = getattr(self, field_name)
            if not value or "/" in value:
                raise ValueError(f"node identity {field_name} must be non-empty and contain no '/': {value!r}")


@dataclass(frozen=True)
class XdsTarget:
    """Where Envoy finds the mcgw xDS server."""

    host: str
    port: int
    api_type: AdsApiType = "DELTA_GRPC"


def template_path() -> Path:
    return Path(os.environ.get("MCGW_BOOTSTRAP_TEMPLATE", _DEFAULT_TEMPLATE))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def render_bootstrap(
    node: NodeIdentity,
    admin_port: int,
    xds: XdsTarget | None,
    static_resources: dict[str, Any] | None = None,
    admin_address: str = "127.0.0.1",
) -> dict[str, Any]:
    """The bootstrap as a dict. With ``xds=None`` Envoy runs only ``static_resources`` (no ADS)."""
    values = {
        "NODE_ID": node.node_id,
        "NODE_CLUSTER": node.cluster,
        "ADMIN_ADDRESS": admin_address,
        "ADMIN_PORT": str(admin_port),
        "ADS_API_TYPE": xds.api_type if xds else "DELTA_GRPC",
        "XDS_HOST": xds.host if xds else "127.0.0.1",
        "XDS_PORT": str(xds.port if xds else 1),
        "XDS_DISCOVERY_TYPE": "STATIC" if (xds is None or _is_ip(xds.host)) else "STRICT_DNS",
    }
    rendered = string.Template(template_path().read_text()).substitute(values)
    bootstrap: dict[str, Any] = yaml.safe_load(rendered)
    if xds is None:
        bootstrap.pop("dynamic_resources", None)
        clusters = bootstrap["static_resources"]["clusters"]
        bootstrap["static_resources"]["clusters"] = [c for c in clusters if c["name"] != XDS_CLUSTER_NAME]
    for key, resources in (static_resources or {}).items():
        bootstrap["static_resources"].setdefault(key, []).extend(resources)
    return bootstrap
