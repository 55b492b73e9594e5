"""Provisioning: the Kubernetes objects that run a Gateway's Envoys in its member cluster.

Pure functions of the Gateway, its resolved parameters and where the Envoys dial mcgw; the applier in
``mcgw.providers.kubernetes.provisioner`` writes them, and ``mcgw gateway-manifests`` prints them.
"""

from mcgw.provisioning.names import (
    DESIRED_HASH_ANNOTATION,
    GATEWAY_NAME_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    credentials_name,
    gateway_label_value,
    object_name,
    owned_labels,
)
from mcgw.provisioning.render import (
    READY_PORT,
    RESERVED_PORTS,
    XDS_CREDENTIALS_DIR,
    Target,
    provisioned_bootstrap,
    provisioned_tls,
    render_credentials,
    render_gateway,
    service_ports,
)
from mcgw.provisioning.settings import DEFAULT_IMAGE, Autoscaling, DisruptionBudget, ProxySettings, settings_from
from mcgw.semantics.gateway.addresses import AddressPlan, IPNetwork, plan_addresses

__all__ = ["DEFAULT_IMAGE", "DESIRED_HASH_ANNOTATION", "GATEWAY_NAME_LABEL", "MANAGED_BY", "MANAGED_BY_LABEL",
           "READY_PORT", "RESERVED_PORTS", "XDS_CREDENTIALS_DIR", "AddressPlan", "Autoscaling", "DisruptionBudget",
           "IPNetwork", "ProxySettings", "Target", "credentials_name", "gateway_label_value", "object_name",
           "owned_labels", "plan_addresses", "provisioned_bootstrap", "provisioned_tls", "render_credentials",
           "render_gateway", "service_ports", "settings_from"]
