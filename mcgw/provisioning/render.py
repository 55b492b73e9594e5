"""The objects that run one Gateway's Envoys in its member cluster: a pure function of the Gateway.

Every object lives in the Gateway's namespace, carries our managed-by and gateway-name labels plus the
Gateway's ``spec.infrastructure`` labels and annotations, and is owned by the Gateway (controller owner
reference), so deleting the Gateway lets the garbage collector remove them even if mcgw is not running.

What does and does not restart Envoy: the pod template depends on the settings and on the bootstrap
(its hash is a template annotation, since Envoy reads the bootstrap only at start), never on the
listeners. Listener changes reach Envoy over LDS and change only the Service's ports.

Readiness: the kubelet asks ``GET /ready`` on a static listener of the bootstrap (``READY_PORT`` on the
pod IP), which forwards that one path to Envoy's admin interface on loopback. Admin ``/ready`` answers
200 only in the LIVE state, which Envoy reaches once its initial CDS and LDS have arrived; the bootstrap
sets ``initial_fetch_timeout: 0s`` so that Envoy waits for them rather than going LIVE empty after 15 s.
So "ready" means "has mcgw's configuration", and the admin interface itself (which can stop the process
and dump secrets) stays off the network. A TCP probe on a listener port would tie the pod template to
the listeners (a rollout on every listener change) and fail for a Gateway whose listeners are all invalid.

xDS credentials: with ``Target.xds.tls`` an ``XdsClientSds``, the Envoys dial mcgw over mTLS with the
client certificate in the Secret ``mcgw-<gateway>-xds`` (rendered by :func:`render_credentials` from what
mcgw's CA issued), mounted at ``XDS_CREDENTIALS_DIR``; the bootstrap reads it through SDS files kept in
the ConfigMap, so a rotated Secret reaches Envoy without a restart (and without a rollout: the pod
template names the Secret, never its content).

Termination: a preStop sleep of ``drain_seconds`` keeps Envoy serving while its endpoint is withdrawn
from the Service and load balancers, then SIGTERM; the grace period covers both.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mcgw.objects.model import GATEWAY_GROUP, Gateway
from mcgw.provisioning.bootstrap import (
    CA_FILE,
    CERTIFICATE_FILE,
    KEY_FILE,
    NodeIdentity,
    XdsClientSds,
    XdsTarget,
    render_bootstrap_text,
    sds_documents,
)
from mcgw.provisioning.ca import Credentials
from mcgw.provisioning.names import (
    BOOTSTRAP_HASH_ANNOTATION,
    DESIRED_HASH_ANNOTATION,
    credentials_name,
    object_name,
    owned_labels,
    selector_labels,
)
from mcgw.provisioning.settings import ProxySettings
from mcgw.semantics.gateway.addresses import AddressPlan, IPNetwork, plan_addresses
from mcgw.semantics.gateway.parameters import RESERVED_BOOTSTRAP_FIELDS

# libyaml's safe dumper when PyYAML has it (about ten times faster; the same text for the bootstrap).
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
ADMIN_PORT = 19901  # on loopback inside the pod
READY_PORT = 19902  # the readiness listener, on the pod IP
RESERVED_PORTS = frozenset({ADMIN_PORT, READY_PORT})  # so no Gateway listener can have them
ENVOY_UID = 101  # the envoy user of the envoyproxy/envoy image
BOOTSTRAP_KEY = "bootstrap.yaml"
CONFIG_DIR = "/etc/envoy"
XDS_CREDENTIALS_DIR = "/etc/mcgw-xds"
TLS_SECRET_TYPE = "kubernetes.io/tls"


def provisioned_tls(xds_host: str) -> XdsClientSds:
    """How provisioned Envoys authenticate to the xDS server at ``xds_host`` (see the module docstring)."""
    return XdsClientSds(xds_host, Path(XDS_CREDENTIALS_DIR), Path(CONFIG_DIR))


@dataclass(frozen=True)
class Target:
    """Where the generated Envoys run, whom they dial, and what they start from."""

    cluster: str
    xds: XdsTarget
    bootstrap_template: str  # the text of deploy/envoy/bootstrap.yaml
    address_pools: tuple[IPNetwork, ...] = ()


def _ready_listener(address: str, port: int) -> dict[str, Any]:
    return {
        "name": "mcgw-ready",
        "address": {"socket_address": {"address": address, "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                         "HttpConnectionManager",
                "stat_prefix": "mcgw_ready",
                "route_config": {"name": "mcgw-ready", "virtual_hosts": [{
                    "name": "ready", "domains": ["*"],
                    "routes": [
                        {"match": {"path": "/ready", "headers": [{"name": ":method",
                                                                  "string_match": {"exact": "GET"}}]},
                         "route": {"cluster": "mcgw-admin", "timeout": "1s"}},
                        {"match": {"prefix": "/"}, "direct_response": {"status": 404}},
                    ]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
            },
        }]}],
    }


def _admin_cluster(admin_port: int) -> dict[str, Any]:
    return {
        "name": "mcgw-admin", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "mcgw-admin", "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}}}]}]},
    }


def provisioned_bootstrap(target: Target, namespace: str, gateway: str, settings: ProxySettings, *,
                          admin_port: int = ADMIN_PORT, ready_address: str = "0.0.0.0",
                          ready_port: int = READY_PORT) -> dict[str, Any]:
    """The bootstrap of a provisioned Envoy: the template's, plus the readiness listener, Envoy waiting for
    its first configuration, and the extra top-level fields of the settings."""
    bootstrap = render_bootstrap_text(target.bootstrap_template, NodeIdentity(target.cluster, namespace, gateway),
                                      admin_port, target.xds,
                                      {"listeners": [_ready_listener(ready_address, ready_port)],
                                       "clusters": [_admin_cluster(admin_port)]})
    for key in ("cds_config", "lds_config"):
        bootstrap["dynamic_resources"][key]["initial_fetch_timeout"] = "0s"
    for key, value in settings.bootstrap.items():
        if key not in RESERVED_BOOTSTRAP_FIELDS:
            bootstrap[key] = value
    return bootstrap


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def _metadata(gateway: Gateway, name: str, annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    infrastructure = gateway.spec.infrastructure
    labels = {**(infrastructure.labels if infrastructure else {}), **owned_labels(gateway.metadata.name)}
    merged = {**(infrastructure.annotations if infrastructure else {}), **(annotations or {})}
    metadata: dict[str, Any] = {"name": name, "namespace": gateway.metadata.namespace, "labels": labels}
    if merged:
        metadata["annotations"] = merged
    if gateway.metadata.uid:  # a Gateway from the API server; `mcgw gateway-manifests` may have none
        metadata["ownerReferences"] = [{"apiVersion": f"{GATEWAY_GROUP}/v1", "kind": "Gateway",
                                        "name": gateway.metadata.name, "uid": gateway.metadata.uid,
                                        "controller": True, "blockOwnerDeletion": True}]
    return metadata


def _object(api_version: str, kind: str, metadata: dict[str, Any], **body: Any) -> dict[str, Any]:
    """An object whose metadata carries the hash of what it asks for, so an applier can tell from the
    object stored whether it is as desired without comparing fields the API server defaults."""
    obj = {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}
    metadata.setdefault("annotations", {})[DESIRED_HASH_ANNOTATION] = _hash(obj)
    return obj


def service_ports(gateway: Gateway) -> list[dict[str, Any]]:
    """One Service port per listener port and transport (listeners may share a port); Envoy listens on the
    listener's own port, so it is also the target port."""
    seen: set[tuple[int, str]] = set()
    for listener in gateway.spec.listeners:
        if 1 <= listener.port <= 65535:
            seen.add((listener.port, "UDP" if listener.protocol == "UDP" else "TCP"))
    return [{"name": f"{protocol.lower()}-{port}", "port": port, "targetPort": port, "protocol": protocol}
            for port, protocol in sorted(seen)]


def _container(target: Target, gateway: Gateway, settings: ProxySettings) -> dict[str, Any]:
    args = ["--config-path", f"{CONFIG_DIR}/{BOOTSTRAP_KEY}",
            "--service-node", f"{gateway.metadata.namespace}/{gateway.metadata.name}/$(POD_NAME)",
            "--service-cluster", target.cluster, "--log-level", settings.log_level,
            "--drain-time-s", str(settings.drain_seconds), "--drain-strategy", "immediate",
            "--disable-hot-restart",
            # Access log lines reach the pod's log within a second (Envoy's default is every 10 s or 64 KiB).
            "--file-flush-interval-msec", "1000"]
    if settings.concurrency is not None:
        args += ["--concurrency", str(settings.concurrency)]
    container: dict[str, Any] = {"name": "envoy", "image": settings.image}
    if settings.image_pull_policy:
        container["imagePullPolicy"] = settings.image_pull_policy
    container |= {
        "command": ["envoy"],
        "args": args,
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"name": "ready", "containerPort": READY_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": READY_PORT}, "periodSeconds": 2,
                           "timeoutSeconds": 1, "failureThreshold": 2},
        "lifecycle": {"preStop": {"sleep": {"seconds": settings.drain_seconds}}},
        "resources": {kind: dict(values) for kind, values in settings.resources.items()},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "bootstrap", "mountPath": CONFIG_DIR, "readOnly": True}],
    }
    if isinstance(target.xds.tls, XdsClientSds):
        container["volumeMounts"].append({"name": "xds-credentials", "mountPath": str(target.xds.tls.directory),
                                          "readOnly": True})
    return container


def _service_spec(gateway: Gateway, settings: ProxySettings, plan: AddressPlan) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": settings.service_type, "selector": selector_labels(gateway.metadata.name),
                            "ports": service_ports(gateway)}
    if settings.external_traffic_policy and settings.service_type in ("LoadBalancer", "NodePort"):
        spec["externalTrafficPolicy"] = settings.external_traffic_policy
    if plan.load_balancer_ip:
        spec["loadBalancerIP"] = plan.load_balancer_ip
    if plan.external_ips:
        spec["externalIPs"] = list(plan.external_ips)
    return spec


def render_gateway(target: Target, gateway: Gateway, settings: ProxySettings) -> list[dict[str, Any]]:
    """ServiceAccount, ConfigMap (bootstrap), Deployment, Service, and optionally a HorizontalPodAutoscaler
    and a PodDisruptionBudget, in the order they can be applied."""
    namespace, gateway_name = gateway.metadata.namespace, gateway.metadata.name
    name = object_name(gateway_name)
    bootstrap_text = yaml.dump(provisioned_bootstrap(target, namespace, gateway_name, settings), Dumper=_DUMPER,
                               sort_keys=False)
    infrastructure = gateway.spec.infrastructure
    pod_labels = {**(infrastructure.labels if infrastructure else {}), **owned_labels(gateway_name)}
    pod_annotations = {**(infrastructure.annotations if infrastructure else {}),
                       BOOTSTRAP_HASH_ANNOTATION: _hash(bootstrap_text)}  # the SDS files follow from it
    pod_spec: dict[str, Any] = {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": settings.drain_seconds + 15,
        # fsGroup: the kubelet gives the volumes' files this group, so Envoy reads its 0440 key.
        "securityContext": {"runAsNonRoot": True, "runAsUser": ENVOY_UID, "runAsGroup": ENVOY_UID,
                            "fsGroup": ENVOY_UID, "seccompProfile": {"type": "RuntimeDefault"},
                            # Listener ports below 1024 without root or capabilities.
                            "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]},
    }
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in settings.tolerations]
    pod_spec["containers"] = [_container(target, gateway, settings)]
    pod_spec["volumes"] = [{"name": "bootstrap", "configMap": {"name": name}}]
    config_data = {BOOTSTRAP_KEY: bootstrap_text}
    if isinstance(target.xds.tls, XdsClientSds):
        pod_spec["volumes"].append({"name": "xds-credentials",
                                    "secret": {"secretName": credentials_name(gateway_name),
                                               "defaultMode": 0o440}})
        config_data |= {file_name: yaml.dump(document, Dumper=_DUMPER, sort_keys=False)
                        for file_name, document in sds_documents(target.xds.tls).items()}
    deployment_spec: dict[str, Any] = {}
    if settings.autoscaling is None:  # else the HorizontalPodAutoscaler owns the replica count
        deployment_spec["replicas"] = settings.replicas
    deployment_spec |= {
        "revisionHistoryLimit": 3,
        "selector": {"matchLabels": selector_labels(gateway_name)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {"metadata": {"labels": pod_labels, "annotations": pod_annotations}, "spec": pod_spec},
    }
    objects = [
        _object("v1", "ServiceAccount", _metadata(gateway, name), automountServiceAccountToken=False),
        _object("v1", "ConfigMap", _metadata(gateway, name), data=config_data),
        _object("apps/v1", "Deployment", _metadata(gateway, name), spec=deployment_spec),
    ]
    if service_ports(gateway):  # a Service needs at least one port
        plan = plan_addresses(gateway, settings.service_type, target.address_pools)
        objects.append(_object("v1", "Service", _metadata(gateway, name, settings.service_annotations),
                               spec=_service_spec(gateway, settings, plan)))
    if settings.autoscaling is not None:
        scaling = settings.autoscaling
        objects.append(_object("autoscaling/v2", "HorizontalPodAutoscaler", _metadata(gateway, name), spec={
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": scaling.min_replicas, "maxReplicas": scaling.max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": scaling.target_cpu_utilization}}}]}))
    if settings.disruption_budget is not None:
        budget = settings.disruption_budget
        spec: dict[str, Any] = {"selector": {"matchLabels": selector_labels(gateway_name)}}
        if budget.min_available is not None:
            spec["minAvailable"] = budget.min_available
        else:
            spec["maxUnavailable"] = budget.max_unavailable
        objects.append(_object("policy/v1", "PodDisruptionBudget", _metadata(gateway, name), spec=spec))
    return objects


def render_credentials(gateway: Gateway, credentials: Credentials) -> dict[str, Any]:
    """The Secret with the xDS client certificate of ``gateway``'s Envoys (type ``kubernetes.io/tls``,
    plus ``ca.crt``, the CA that verifies the server). Its desired hash covers the certificates, not the
    key: a hash of a key in an annotation is one thing less to reason about."""
    metadata = _metadata(gateway, credentials_name(gateway.metadata.name))
    certificates = {CERTIFICATE_FILE: credentials.cert.decode(), CA_FILE: credentials.ca.decode()}
    metadata.setdefault("annotations", {})[DESIRED_HASH_ANNOTATION] = _hash({"metadata": metadata, **certificates})
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": TLS_SECRET_TYPE,
            "data": {CERTIFICATE_FILE: base64.b64encode(credentials.cert).decode(),
                     KEY_FILE: base64.b64encode(credentials.key).decode(),
                     CA_FILE: base64.b64encode(credentials.ca).decode()}}
