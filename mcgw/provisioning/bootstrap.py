"""The gateway Envoy bootstrap, rendered from the text of ``deploy/envoy/bootstrap.yaml``.

Pure: the caller reads the template (``mcgw.dataplane.bootstrap`` does, for standalone mode, the demo
and the test bed; provisioning reads it once at start), so one template is the source of truth for
node identity, ADS settings and xDS keepalive wherever an Envoy runs.
"""

from __future__ import annotations

import ipaddress
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

XDS_CLUSTER_NAME = "mcgw-xds"
# libyaml's safe loader when PyYAML has it: provisioning renders a bootstrap per Gateway.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

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
class XdsClientTls:
    """How Envoy verifies the xDS server (``ca``, ``server_name``) and proves who it is (``cert``, ``key``).

    For mTLS the client certificate carries the URI SAN ``spiffe://mcgw/<cluster>/<namespace>/<gateway>``.
    """

    ca: Path
    server_name: str
    cert: Path | None = None
    key: Path | None = None


CERTIFICATE_FILE, KEY_FILE, CA_FILE = "tls.crt", "tls.key", "ca.crt"
SDS_CERTIFICATE_FILE, SDS_CA_FILE = "xds-certificate-sds.yaml", "xds-ca-sds.yaml"
_SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


@dataclass(frozen=True)
class XdsClientSds:
    """mTLS to the xDS server with credentials Envoy reloads without a restart.

    ``directory`` holds ``tls.crt``, ``tls.key`` and ``ca.crt`` (a Secret volume: the kubelet replaces its
    files by swapping the ``..data`` link). The xDS cluster's TLS context reads them through SDS from the
    two files in ``sds_directory`` (:func:`sds_documents`), each with a ``watched_directory`` on
    ``directory``, so Envoy rereads the pair when the link moves and new connections use the new
    certificate. ``server_name`` is the host Envoy dials: an IP is matched as an IP SAN (and sent as no
    SNI), a name as a DNS SAN and the SNI.
    """

    server_name: str
    directory: Path
    sds_directory: Path


@dataclass(frozen=True)
class XdsTarget:
    """Where Envoy finds the mcgw xDS server."""

    host: str
    port: int
    api_type: AdsApiType = "DELTA_GRPC"
    tls: XdsClientTls | XdsClientSds | None = None
    load_reports: bool = True  # send LRS reports to the same server (it must serve LoadReportingService)


def _sds_source(tls: XdsClientSds, file_name: str) -> dict[str, Any]:
    return {"path_config_source": {"path": str(tls.sds_directory / file_name),
                                   "watched_directory": {"path": str(tls.sds_directory)}},
            "resource_api_version": "V3"}


def sds_documents(tls: XdsClientSds) -> dict[str, dict[str, Any]]:
    """The SDS files the xDS cluster's TLS context reads (file name → content), to be put in
    ``tls.sds_directory``: the client certificate and the CA that verifies the server."""
    watched = {"path": str(tls.directory)}
    return {
        SDS_CERTIFICATE_FILE: {"resources": [{
            "@type": _SECRET_TYPE, "name": "mcgw-xds-client",
            "tls_certificate": {"certificate_chain": {"filename": str(tls.directory / CERTIFICATE_FILE)},
                                "private_key": {"filename": str(tls.directory / KEY_FILE)},
                                "watched_directory": watched}}]},
        SDS_CA_FILE: {"resources": [{
            "@type": _SECRET_TYPE, "name": "mcgw-xds-ca",
            "validation_context": {"trusted_ca": {"filename": str(tls.directory / CA_FILE)},
                                   "watched_directory": watched}}]},
    }


def _sds_transport_socket(tls: XdsClientSds) -> dict[str, Any]:
    ip = _is_ip(tls.server_name)
    context: dict[str, Any] = {
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "tls_certificate_sds_secret_configs": [
                {"name": "mcgw-xds-client", "sds_config": _sds_source(tls, SDS_CERTIFICATE_FILE)}],
            "combined_validation_context": {
                "default_validation_context": {"match_typed_subject_alt_names": [
                    {"san_type": "IP_ADDRESS" if ip else "DNS", "matcher": {"exact": tls.server_name}}]},
                "validation_context_sds_secret_config": {"name": "mcgw-xds-ca",
                                                         "sds_config": _sds_source(tls, SDS_CA_FILE)},
            },
        },
    }
    if not ip:
        context = {"sni": tls.server_name, **context}
    return {"name": "envoy.transport_sockets.tls",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                                      "UpstreamTlsContext", **context}}


def _transport_socket(tls: XdsClientTls) -> dict[str, Any]:
    common: dict[str, Any] = {
        "alpn_protocols": ["h2"],
        "validation_context": {
            "trusted_ca": {"filename": str(tls.ca)},
            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": tls.server_name}}],
        },
    }
    if tls.cert is not None and tls.key is not None:
        common["tls_certificates"] = [
            {"certificate_chain": {"filename": str(tls.cert)}, "private_key": {"filename": str(tls.key)}}
        ]
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": tls.server_name,
            "common_tls_context": common,
        },
    }


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def render_bootstrap_text(
    template: str,
    node: NodeIdentity,
    admin_port: int,
    xds: XdsTarget | None,
    static_resources: dict[str, Any] | None = None,
    admin_address: str = "127.0.0.1",
) -> dict[str, Any]:
    """The bootstrap as a dict, from the template's text. With ``xds=None`` Envoy runs only
    ``static_resources`` (no ADS)."""
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
    rendered = string.Template(template).substitute(values)
    bootstrap: dict[str, Any] = yaml.load(rendered, Loader=_LOADER)
    if xds is not None and xds.tls is not None:
        for cluster in bootstrap["static_resources"]["clusters"]:
            if cluster["name"] == XDS_CLUSTER_NAME:
                cluster["transport_socket"] = (_sds_transport_socket(xds.tls) if isinstance(xds.tls, XdsClientSds)
                                               else _transport_socket(xds.tls))
    if xds is None or not xds.load_reports:
        bootstrap.pop("cluster_manager", None)
    if xds is None:
        bootstrap.pop("dynamic_resources", None)
        clusters = bootstrap["static_resources"]["clusters"]
        bootstrap["static_resources"]["clusters"] = [c for c in clusters if c["name"] != XDS_CLUSTER_NAME]
    for key, resources in (static_resources or {}).items():
        bootstrap["static_resources"].setdefault(key, []).extend(resources)
    return bootstrap
