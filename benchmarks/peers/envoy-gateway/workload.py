"""Write the translation benchmark's workload as Kubernetes YAML for the Envoy Gateway peer.

The HTTPRoutes and EndpointSlices are those of ``benchmarks.translate_scale`` (``_route(i)``, and
``_slice`` of cluster 0: endpoints 198.18.0.1-3), with the same Services, Gateway and namespaces; the
GatewayClass names Envoy Gateway's controller. Run from the repository root::

    .venv/bin/python benchmarks/peers/envoy-gateway/workload.py --routes 1000 -o /tmp/eg-1000.yaml

Fields that Envoy Gateway's translator rejects would be removed here and listed in ``DROPPED`` (passed
to the harness with ``-dropped``); none are at present.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import yaml

from benchmarks.translate_scale import NAMESPACES, _route, _slice

CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"
# Workload fields left out for this peer (removed in ``peer_route``); Envoy Gateway v1.9.1 takes them all,
# the experimental ``retry`` of a rule included.
DROPPED: list[str] = []


def peer_route(i: int) -> dict[str, Any]:
    """``_route(i)``, less whatever ``DROPPED`` names (nothing at present)."""
    return copy.deepcopy(_route(i))


def documents(routes: int) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "eg"},
         "spec": {"controllerName": CONTROLLER}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "infra"}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "public", "namespace": "infra"},
         "spec": {"gatewayClassName": "eg", "listeners": [
             {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
    ]
    for ns in range(NAMESPACES):
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"team-{ns}"}})
        for s in range(50):
            docs.append({"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": f"svc-{s}", "namespace": f"team-{ns}"},
                         "spec": {"ports": [{"name": "http", "port": 80}]}})
            docs.append(_slice(ns, s, 0))
    docs += [peer_route(i) for i in range(routes)]
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    args.output.write_text(yaml.safe_dump_all(documents(args.routes), sort_keys=False))
    print(",".join(DROPPED))  # for the harness's -dropped


if __name__ == "__main__":
    main()
