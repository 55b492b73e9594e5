"""Configuration files, validated with pydantic; every error names the file and the field path.

- ``clusterset.yaml`` (``mcgw translate``, ``mcgw standalone``): the member clusters and their properties.
- the run config (``mcgw run --config FILE``): the same cluster entries plus how to reach each API
  server, and the xDS, admin, reconcile and leader-election settings. See ``examples/run-config.yaml``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    Field,
    IPvAnyNetwork,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mcgw.objects.clusterset import (
    ClusterProperties,
    ClusterSetProperties,
    ConfigError,
    ConfigModel,
    check_cluster_names,
    validation_problems,
)
from mcgw.providers.files.manifests import load_clusterset, read_config_yaml
from xdsserver import TlsConfig

__all__ = ["ClusterProperties", "ClusterSetProperties", "ConfigError", "ProvisioningSettings", "RunConfig",
           "load_clusterset", "load_run_config", "split_listen"]


# -- the run config ---------------------------------------------------------------------------------

_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


def split_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` (IPv6 as ``"[::1]:port"``) → ``(host, port)``; ValueError saying what is wrong."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not host:port (for example 127.0.0.1:18000)")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: the port must be a number from 0 to 65535")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{value!r}: {host} is not an IPv6 address") from None
        return host[1:-1], int(port)
    if ":" in host:
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, for example [::1]:{port}")
    if not _HOSTNAME.match(host):
        raise ValueError(f"{value!r}: {host!r} is not an IP address or host name")
    return host, int(port)


def _listen(value: str) -> str:
    split_listen(value)
    return value


ListenAddress = Annotated[str, AfterValidator(_listen)]


def _file(value: Path, info: ValidationInfo) -> Path:
    """Resolve a relative path against the config file's directory; check it exists when loading a file."""
    context = info.context if isinstance(info.context, dict) else {}
    path = value.expanduser()
    if not path.is_absolute() and context.get("base_dir") is not None:
        path = Path(context["base_dir"]) / path
    if context.get("check_files") and not path.is_file():
        raise ValueError(f"no such file: {path}")
    return path


ConfigFile = Annotated[Path, AfterValidator(_file)]


class MemberCluster(ClusterProperties):
    """A ``clusterset.yaml`` entry plus how to reach the cluster's API server."""

    kubeconfig: ConfigFile
    context: str | None = None  # a context of that kubeconfig; its current-context when not given

    def properties(self) -> ClusterProperties:
        return ClusterProperties(name=self.name, region=self.region, zone=self.zone,
                                 failover_order=self.failover_order, labels=self.labels)


class XdsTls(ConfigModel):
    """Your own certificate for the xDS port (only without provisioning): every Envoy must present a client
    certificate from ``clientCa`` whose SPIFFE URI names its node group."""

    cert: ConfigFile
    key: ConfigFile
    client_ca: ConfigFile | None = None

    def tls_config(self) -> TlsConfig:
        return TlsConfig(self.cert, self.key, self.client_ca)


class _Listener(ConfigModel):
    listen: ListenAddress

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class XdsCa(ConfigModel):
    """Where mcgw keeps the CA that issues the xDS certificates: a Secret (``tls.crt``, ``tls.key``) in one
    member cluster (``cluster``, default the first listed), so every replica and restart uses the same CA.
    mcgw creates it when missing unless ``create`` is false (bring your own CA: the Secret must exist).
    mcgw reads it again every ``resync`` seconds, so a CA rotation (a new signer, or other CAs to trust in
    ``ca.crt``) takes effect without a restart."""

    cluster: str | None = None
    namespace: str = Field("kube-system", pattern=_NAME, max_length=63)
    name: str = Field("mcgw-xds-ca", pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$", max_length=253)
    create: bool = True
    resync: float = Field(30.0, ge=1)


class XdsSettings(_Listener):
    """The xDS port: mTLS with certificates from mcgw's CA (``ca``) unless ``insecure`` (plaintext, any
    client reads any node group) or ``tls`` (your own certificates, without provisioning).

    ``certificateLifetime`` (seconds) is how long the server's and each provisioned Envoy's certificate is
    valid; each is replaced after two thirds of it. ``serverNames`` are extra names (or IPs) the server
    certificate carries besides the address provisioned Envoys dial.

    ``maxConnectionAge`` (seconds) closes each xDS connection after that long (Envoy reconnects at once and
    keeps its configuration). TLS checks a certificate only at the handshake, so this bounds how long a
    stream outlives the certificate it was opened with; it defaults to a third of ``certificateLifetime``
    with mTLS and to never when ``insecure``. It also lets Envoys rebalance across replicas.

    ``loadReportInterval`` (seconds) is how often each gateway Envoy reports the load of its ServiceImport
    clusters (LRS), which tells which cluster serves the traffic (``/api/status`` ``traffic``, the dashboard)."""

    listen: ListenAddress = "0.0.0.0:18000"
    insecure: bool = False
    tls: XdsTls | None = None
    ca: XdsCa = Field(default_factory=XdsCa)
    trust_domain: str = Field("mcgw", pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$", max_length=255)
    certificate_lifetime: float = Field(86400.0, ge=15)
    server_names: tuple[str, ...] = ()
    max_connection_age: float | None = Field(None, ge=10)
    load_report_interval: float = Field(1.0, ge=0.1, le=60)

    @model_validator(mode="after")
    def _one_way_to_secure(self) -> XdsSettings:
        if self.insecure and self.tls is not None:
            raise ValueError("xds.insecure: true serves plaintext and xds.tls a certificate: choose one")
        if self.tls is not None and self.tls.client_ca is None:
            raise ValueError("xds.tls.clientCa is needed: without client certificates any client could read any "
                             "node group's configuration, private keys included; set clientCa, or remove xds.tls "
                             "and let mcgw's CA (xds.ca) issue the certificates")
        for name in self.server_names:
            if not _HOSTNAME.match(name):
                try:
                    ipaddress.ip_address(name)
                except ValueError:
                    raise ValueError(f"xds.serverNames: {name!r} is not a host name or IP address") from None
        return self

    @property
    def mode(self) -> str:
        """``insecure``, ``tls`` (your certificates) or ``ca`` (mcgw's CA, the default)."""
        return "insecure" if self.insecure else "tls" if self.tls is not None else "ca"

    @property
    def connection_age(self) -> float | None:
        """``maxConnectionAge``, or its default: a third of the certificate lifetime unless plaintext."""
        if self.max_connection_age is not None:
            return self.max_connection_age
        return None if self.insecure else self.certificate_lifetime / 3


class AdminSettings(_Listener):
    listen: ListenAddress = "127.0.0.1:19000"


class ReconcileSettings(ConfigModel):
    """Debounce (seconds): quiet time before reconciling, and the longest an event may wait."""

    debounce: float = Field(0.1, gt=0)
    debounce_cap: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _cap_not_below_debounce(self) -> ReconcileSettings:
        if self.debounce_cap < self.debounce:
            raise ValueError(f"debounceCap ({self.debounce_cap}) must be at least debounce ({self.debounce})")
        return self


class LeaderElectionSettings(ConfigModel):
    """One Lease per member cluster; only the holder writes status. Durations in seconds."""

    enabled: bool = True
    namespace: str = Field("kube-system", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    lease_name: str = Field("mcgw-controller", pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$", max_length=253)
    lease_duration: float = Field(15.0, gt=0)
    renew_deadline: float = Field(10.0, gt=0)
    retry_period: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _durations_ordered(self) -> LeaderElectionSettings:
        # A holder must give up (renewDeadline) before others may take over (leaseDuration), and retry
        # more than once within its deadline, or two leaders could write at the same time.
        if not self.lease_duration > self.renew_deadline > self.retry_period:
            raise ValueError(f"need leaseDuration > renewDeadline > retryPeriod, got {self.lease_duration} > "
                             f"{self.renew_deadline} > {self.retry_period}")
        return self


_WILDCARDS = ("0.0.0.0", "::")


class ProvisioningSettings(ConfigModel):
    """The Envoys of every Gateway of ours, run in the Gateway's member cluster (on by default).

    ``xdsAddress`` is where those Envoys dial mcgw's xDS server, from inside their cluster (the default is
    ``xds.listen`` when that is a concrete address); ``addressPools`` limits the static ``spec.addresses``
    mcgw asks load balancers for (empty: any). ``xdsReplicas`` is how many mcgw replicas serve xDS behind
    ``xdsAddress`` (the chart's replicaCount): with more than one, an Envoy may be connected to another
    replica than the one writing status, so a Gateway whose Envoys are ready and connected to none of this
    replica's xDS streams counts as programmed (their readiness says they have their configuration).
    """

    enabled: bool = True
    xds_address: ListenAddress | None = None
    address_pools: tuple[IPvAnyNetwork, ...] = ()
    xds_replicas: int = Field(default=1, ge=1)


class RunConfig(ConfigModel):
    """``mcgw run --config FILE``."""

    clusters: tuple[MemberCluster, ...] = Field(min_length=1)
    xds: XdsSettings = Field(default_factory=XdsSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    leader_election: LeaderElectionSettings = Field(default_factory=LeaderElectionSettings)
    provisioning: ProvisioningSettings = Field(default_factory=ProvisioningSettings)
    # Seconds a lost member cluster's exported endpoints stay in use (while Envoy's health checks judge
    # them) before they are withdrawn.
    lost_cluster_ttl: float = Field(300.0, ge=0)

    @field_validator("clusters")
    @classmethod
    def _names_are_unique_and_known(cls, clusters: tuple[MemberCluster, ...]) -> tuple[MemberCluster, ...]:
        check_cluster_names(clusters)
        return clusters

    @model_validator(mode="after")
    def _ca_cluster_is_a_member(self) -> RunConfig:
        names = [c.name for c in self.clusters]
        if self.xds.ca.cluster is not None and self.xds.ca.cluster not in names:
            raise ValueError(f"xds.ca.cluster {self.xds.ca.cluster!r} is not one of the clusters ({', '.join(names)})")
        return self

    @model_validator(mode="after")
    def _provisioned_envoys_can_dial(self) -> RunConfig:
        provisioning = self.provisioning
        if not provisioning.enabled:
            return self
        if self.xds.tls is not None:
            raise ValueError("xds.tls cannot be used with provisioning: provisioned Envoys get their client "
                             "certificates from mcgw's CA, which issues the server's too; remove xds.tls (bring "
                             "your own CA with xds.ca instead), or set provisioning.enabled: false")
        if provisioning.xds_address is None and (self.xds.host in _WILDCARDS or self.xds.port == 0):
            raise ValueError(f"provisioning.xdsAddress is needed: xds.listen is {self.xds.listen!r}, not an address "
                             "Envoy pods can dial; give the host:port they reach mcgw's xDS server at (or set "
                             "provisioning.enabled: false)")
        return self

    def ca_cluster(self) -> str:
        """The member cluster that holds the xDS CA's Secret."""
        return self.xds.ca.cluster or self.clusters[0].name

    def server_hosts(self) -> tuple[str, ...]:
        """What the xDS server certificate names: where provisioned Envoys dial, the listen host when it is
        concrete, and ``xds.serverNames``."""
        hosts: list[str] = []
        if self.provisioning.enabled:
            hosts.append(self.provisioning_xds()[0])
        if self.xds.host not in _WILDCARDS:
            hosts.append(self.xds.host)
        hosts += self.xds.server_names
        return tuple(dict.fromkeys(hosts)) or ("localhost",)

    def provisioning_xds(self) -> tuple[str, int]:
        """Where provisioned Envoys dial the xDS server."""
        return split_listen(self.provisioning.xds_address or self.xds.listen)

    def clusterset(self) -> ClusterSetProperties:
        """The ClusterSet properties alone, as ``clusterset.yaml`` would give them."""
        return ClusterSetProperties(clusters=tuple(c.properties() for c in self.clusters))


# -- loading ----------------------------------------------------------------------------------------

def load_run_config(path: Path, *, check_files: bool = True) -> RunConfig:
    """Read and validate a run config. Relative file paths are taken from the config file's directory;
    with ``check_files`` (the default) each named file must exist."""
    data = read_config_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with at least 'clusters', got "
                          f"{'an empty file' if data is None else type(data).__name__}")
    try:
        return RunConfig.model_validate(data, context={"base_dir": path.resolve().parent,
                                                       "check_files": check_files})
    except ValidationError as error:
        raise ConfigError(f"{path}: {validation_problems(error)}") from None
