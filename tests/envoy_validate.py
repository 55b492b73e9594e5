"""Ask real Envoy (``envoy --mode validate``) whether it accepts a set of xDS resources.

Dynamic resources are folded into a static bootstrap: each EDS cluster gets its
ClusterLoadAssignment inline, each listener its RouteConfiguration inline, and SDS Secrets become static
secrets that the listeners' and clusters' TLS contexts name (certificates, client-certificate CA bundles and
the Gateway's client certificate), so every field of every resource goes through Envoy's own validation
(certificates and keys included).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from mcgw.dataplane.process import envoy_binary


def _as_dict(message: Message) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json_format.MessageToJson(message, preserving_proto_field_name=True))
    return result


def static_bootstrap(resources: list[Message]) -> dict[str, Any]:
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for message in resources:
        data = _as_dict(message)
        name = data.get("name") or data.get("cluster_name")
        by_kind.setdefault(message.DESCRIPTOR.name, {})[str(name)] = data
    clusters = []
    for name, cluster in by_kind.get("Cluster", {}).items():
        cluster = dict(cluster)
        if cluster.get("type") == "EDS":
            cluster.pop("eds_cluster_config", None)
            cluster["type"] = "STATIC"
            cluster["load_assignment"] = by_kind.get("ClusterLoadAssignment", {}).get(name, {"cluster_name": name})
        context = cluster.get("transport_socket", {}).get("typed_config", {}).get("common_tls_context", {})
        for config in context.get("tls_certificate_sds_secret_configs", []):
            assert config["name"] in by_kind.get("Secret", {}), f"cluster names missing secret {config['name']}"
            config.pop("sds_config", None)
        clusters.append(cluster)
    listeners = []
    for listener in by_kind.get("Listener", {}).values():
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                typed = network_filter.get("typed_config", {})
                if "rds" in typed:
                    typed["route_config"] = by_kind["RouteConfiguration"][typed.pop("rds")["route_config_name"]]
            context = chain.get("transport_socket", {}).get("typed_config", {}).get("common_tls_context", {})
            configs = [*context.get("tls_certificate_sds_secret_configs", []),
                       *[found for found in (context.get("validation_context_sds_secret_config"),
                                             context.get("combined_validation_context", {})
                                             .get("validation_context_sds_secret_config")) if found]]
            for config in configs:
                assert config["name"] in by_kind.get("Secret", {}), f"listener names missing secret {config['name']}"
                config.pop("sds_config", None)  # no sds_config: a static secret of that name
        listeners.append(listener)
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {"listeners": listeners, "clusters": clusters,
                                 "secrets": list(by_kind.get("Secret", {}).values())}}


def validate_bootstrap(bootstrap: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Run ``envoy --mode validate`` on a bootstrap; returncode 0 means Envoy accepts it."""
    with tempfile.TemporaryDirectory(prefix="mcgw-validate-") as workdir:
        path = Path(workdir) / "bootstrap.json"
        path.write_text(json.dumps(bootstrap))
        return subprocess.run([str(envoy_binary()), "--mode", "validate", "--config-path", str(path),
                               "--use-dynamic-base-id", "--log-level", "error"],
                              capture_output=True, text=True, timeout=120, check=False)


def validate(resources: list[Message]) -> subprocess.CompletedProcess[str]:
    """Run ``envoy --mode validate`` on xDS resources folded into a static bootstrap."""
    return validate_bootstrap(static_bootstrap(resources))
