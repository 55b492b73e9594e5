"""Manifests the translation tests build their scenes on: the ``mcgw`` GatewayClass and Gateway
``infra/public`` with one HTTP listener on port 80, and its namespace."""

from __future__ import annotations

from typing import Any

V1 = "gateway.networking.k8s.io/v1"


def public_gateway() -> list[dict[str, Any]]:
    """Fresh documents each call: tests extend and change them."""
    return [
        {"apiVersion": V1, "kind": "GatewayClass", "metadata": {"name": "mcgw"},
         "spec": {"controllerName": "mcgw.io/gateway-controller"}},
        {"apiVersion": V1, "kind": "Gateway", "metadata": {"name": "public", "namespace": "infra", "generation": 1},
         "spec": {"gatewayClassName": "mcgw", "addresses": [{"type": "IPAddress", "value": "198.18.0.10"}],
                  "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "infra"}},
    ]
