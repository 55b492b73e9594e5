"""Render the gateway Envoy bootstrap from ``envoy-bootstrap.yaml`` beside this module (or
``$MCGW_BOOTSTRAP_TEMPLATE``).

The rendering itself is pure and lives in :mod:`mcgw.provisioning.bootstrap`, which the provisioned
Envoys' ConfigMaps use too; this module reads the template for standalone mode, the demo and the test
bed, so every Envoy mcgw runs or provisions starts from the same file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mcgw.provisioning.bootstrap import (
    XDS_CLUSTER_NAME,
    AdsApiType,
    NodeIdentity,
    XdsClientTls,
    XdsTarget,
    render_bootstrap_text,
)

__all__ = ["XDS_CLUSTER_NAME", "AdsApiType", "NodeIdentity", "XdsClientTls", "XdsTarget", "read_template",
           "render_bootstrap", "template_path"]

# Package data (in the wheel, so in the image); deploy/envoy/bootstrap.yaml links to it.
_DEFAULT_TEMPLATE = Path(__file__).resolve().with_name("envoy-bootstrap.yaml")


def template_path() -> Path:
    return Path(os.environ.get("MCGW_BOOTSTRAP_TEMPLATE", _DEFAULT_TEMPLATE))


def read_template() -> str:
    return template_path().read_text()


def render_bootstrap(
    node: NodeIdentity,
    admin_port: int,
    xds: XdsTarget | None,
    static_resources: dict[str, Any] | None = None,
    admin_address: str = "127.0.0.1",
) -> dict[str, Any]:
    """The bootstrap as a dict. With ``xds=None`` Envoy runs only ``static_resources`` (no ADS)."""
    return render_bootstrap_text(read_template(), node, admin_port, xds, static_resources, admin_address)
