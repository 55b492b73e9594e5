"""``mcgw gateway-manifests``: the objects provisioning would apply for one Gateway, for an operator to apply.

The objects come from :func:`mcgw.provisioning.render_gateway`, the same function ``mcgw run`` applies
from, so a hand-applied Gateway data plane is the provisioned one. The Gateway is described by the
command line (its listener ports) rather than read from a cluster, so the objects carry no owner
reference (that needs the Gateway's UID).

The Envoys dial mcgw over mTLS with the client certificate in Secret ``mcgw-<gateway>-xds``, as provisioned
Envoys do; given a CA (``credentials``, issued by the caller), that Secret is printed too, else the
operator provides it. Plaintext only when asked (``insecure``), for an xDS server run with
``xds.insecure: true``.
"""

from __future__ import annotations

from typing import Any

import yaml

from mcgw.dataplane.bootstrap import XdsTarget, read_template
from mcgw.objects.model import GATEWAY_GROUP, Gateway, parse_object
from mcgw.provisioning import DEFAULT_IMAGE, ProxySettings, Target, provisioned_tls, render_credentials, render_gateway
from mcgw.provisioning.ca import Credentials

__all__ = ["DEFAULT_IMAGE", "gateway_manifests", "to_yaml"]


def gateway_manifests(cluster: str, namespace: str, gateway: str, xds: XdsTarget, ports: list[int],
                      image: str = DEFAULT_IMAGE, replicas: int = 2,
                      service_type: str = "LoadBalancer", *, insecure: bool = False,
                      credentials: Credentials | None = None) -> list[dict[str, Any]]:
    """The objects for the Envoys of Gateway ``namespace/gateway`` in ``cluster``, one HTTP listener per port
    (``xds.tls`` is replaced: mTLS unless ``insecure``)."""
    parsed = parse_object({
        "apiVersion": f"{GATEWAY_GROUP}/v1", "kind": "Gateway", "metadata": {"name": gateway, "namespace": namespace},
        "spec": {"gatewayClassName": "mcgw",
                 "listeners": [{"name": f"http-{port}", "port": port, "protocol": "HTTP"} for port in ports]},
    }, "command line")
    assert isinstance(parsed, Gateway)
    settings = ProxySettings(image=image, replicas=replicas, service_type=service_type)
    xds = XdsTarget(xds.host, xds.port, xds.api_type, None if insecure else provisioned_tls(xds.host))
    objects = render_gateway(Target(cluster, xds, read_template()), parsed, settings)
    if credentials is not None and not insecure:
        objects.insert(1, render_credentials(parsed, credentials))
    return objects


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the bootstrap) as literal blocks, so the ConfigMap stays readable."""


def _literal(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _literal)


def to_yaml(documents: list[dict[str, Any]]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False)
