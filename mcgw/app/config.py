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
                                 failover_order=self.failover_order)


class XdsTls(ConfigModel):
    """The xDS port's certificate; with ``clientCa`` every Envoy must present a client certificate (mTLS)."""

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


class XdsSettings(_Listener):
    listen: ListenAddress = "0.0.0.0:18000"
    tls: XdsTls | None = None


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
    mcgw asks load balancers for (empty: any).
    """

    enabled: bool = True
    xds_address: ListenAddress | None = None
    address_pools: tuple[IPvAnyNetwork, ...] = ()


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
    def _provisioned_envoys_can_dial(self) -> RunConfig:
        provisioning = self.provisioning
        if not provisioning.enabled:
            return self
        if self.xds.tls is not None:
            raise ValueError("provisioning: provisioned Envoys get no xDS TLS credentials yet, and xds.tls is set: "
                             "set provisioning.enabled: false and run the Envoys yourself, or serve xDS without TLS")
        if provisioning.xds_address is None and (self.xds.host in _WILDCARDS or self.xds.port == 0):
            raise ValueError(f"provisioning.xdsAddress is needed: xds.listen is {self.xds.listen!r}, not an address "
                             "Envoy pods can dial; give the host:port they reach mcgw's xDS server at (or set "
                             "provisioning.enabled: false)")
        return self

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
