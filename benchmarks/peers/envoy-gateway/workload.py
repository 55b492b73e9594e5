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

from benchmarks.translate_scale import NAMESPACES, workload_documents

CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"
# Workload fields left out for this peer (removed in ``peer_route``); Envoy Gateway v1.9.1 takes them all,
# the experimental ``retry`` of a rule included.
DROPPED: list[str] = []


def peer_route(route: dict[str, Any]) -> dict[str, Any]:
    """An HTTPRoute of the workload, less whatever ``DROPPED`` names (nothing at present)."""
    return copy.deepcopy(route)


def documents(routes: int, mixed: bool = False) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "eg"},
         "spec": {"controllerName": CONTROLLER}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "infra"}},
        *({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"team-{ns}"}} for ns in range(NAMESPACES)),
    ]
    for doc in workload_documents(routes, mixed, class_name="eg"):
        docs.append(peer_route(doc) if doc["kind"] == "HTTPRoute" else doc)
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--mixed", action="store_true", help="the mixed workload of translate_scale --mixed")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    args.output.write_text(yaml.safe_dump_all(documents(args.routes, args.mixed), sort_keys=False))
    print(",".join(DROPPED))  # for the harness's -dropped


if __name__ == "__main__":
    main()
