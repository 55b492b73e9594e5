"""``mcgw run --config FILE``: good configs load with defaults and resolved paths; bad ones are refused
with an error that names the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from mcgw.app.config import (
    ClusterProperties,
    ConfigError,
    LeaderElectionSettings,
    ReconcileSettings,
    RunConfig,
    load_clusterset,
    load_run_config,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "run-config.yaml"


def _write(tmp_path: Path, data: Any, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _kubeconfigs(tmp_path: Path, *names: str) -> None:
    (tmp_path / "kube").mkdir(exist_ok=True)
    for name in names:
        (tmp_path / "kube" / f"{name}.yaml").write_text("apiVersion: v1\nkind: Config\n")


def _error(path: Path, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as raised:
        load_run_config(path, **kwargs)
    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    return message


def test_minimal_config_gets_the_documented_defaults(tmp_path: Path) -> None:
    _kubeconfigs(tmp_path, "east")
    config = load_run_config(_write(tmp_path, {"clusters": [{"name": "east", "kubeconfig": "kube/east.yaml"}],
                                               "provisioning": {"xdsAddress": "10.1.2.3:18000"}}))
    (east,) = config.clusters
    assert east.kubeconfig == tmp_path / "kube" / "east.yaml"  # relative to the config file, not the cwd
    assert east.context is None
    assert (config.xds.listen, config.xds.host, config.xds.port, config.xds.tls) == ("0.0.0.0:18000", "0.0.0.0",
                                                                                     18000, None)
    assert (config.admin.host, config.admin.port) == ("127.0.0.1", 19000)
    assert (config.reconcile.debounce, config.reconcile.debounce_cap) == (0.1, 1.0)
    election = config.leader_election
    assert (election.enabled, election.namespace, election.lease_name) == (True, "kube-system", "mcgw-controller")
    assert (election.lease_duration, election.renew_deadline, election.retry_period) == (15, 10, 2)
    assert (config.provisioning.enabled, config.provisioning.address_pools) == (True, ())
    assert config.provisioning_xds() == ("10.1.2.3", 18000)
    # Secure by default: mTLS with mcgw's CA, kept in the first cluster.
    assert (config.xds.mode, config.xds.insecure, config.xds.trust_domain) == ("ca", False, "mcgw")
    assert (config.ca_cluster(), config.xds.ca.namespace, config.xds.ca.name, config.xds.ca.create) == (
        "east", "kube-system", "mcgw-xds-ca", True)
    assert config.xds.certificate_lifetime == 86400
    # Streams are recycled so none outlives its certificate by more than a third of its lifetime.
    assert config.xds.connection_age == 86400 / 3
    assert config.server_hosts() == ("10.1.2.3",)


def test_xds_security_settings_are_checked(tmp_path: Path) -> None:
    _kubeconfigs(tmp_path, "east", "west")
    clusters = [{"name": "east", "kubeconfig": "kube/east.yaml"}, {"name": "west", "kubeconfig": "kube/west.yaml"}]
    base = {"clusters": clusters, "provisioning": {"xdsAddress": "mcgw.example:18000"}}
    insecure = load_run_config(_write(tmp_path, {**base, "xds": {"insecure": True}}))
    assert insecure.xds.mode == "insecure"
    assert insecure.xds.connection_age is None
    config = load_run_config(_write(tmp_path, {**base, "xds": {
        "listen": "10.0.0.5:18000", "ca": {"cluster": "west", "namespace": "mcgw-system", "create": False},
        "certificateLifetime": 30, "maxConnectionAge": 10, "serverNames": ["xds.internal", "10.0.0.6"]}}))
    assert (config.ca_cluster(), config.xds.ca.namespace, config.xds.ca.create) == ("west", "mcgw-system", False)
    assert config.xds.connection_age == 10
    assert config.server_hosts() == ("mcgw.example", "10.0.0.5", "xds.internal", "10.0.0.6")
    assert "xds.ca.cluster 'north' is not one of the clusters (east, west)" in _error(
        _write(tmp_path, {**base, "xds": {"ca": {"cluster": "north"}}}))
    assert "xds.certificateLifetime: Input should be greater than or equal to 15" in _error(
        _write(tmp_path, {**base, "xds": {"certificateLifetime": 5}}))
    assert "xds.maxConnectionAge: Input should be greater than or equal to 10" in _error(
        _write(tmp_path, {**base, "xds": {"maxConnectionAge": 1}}))
    assert "xds.serverNames: 'not a name' is not a host name or IP address" in _error(
        _write(tmp_path, {**base, "xds": {"serverNames": ["not a name"]}}))
    off = {"clusters": clusters, "provisioning": {"enabled": False}}
    both = {"insecure": True, "tls": {"cert": "x.crt", "key": "x.key", "clientCa": "ca.crt"}}
    assert "xds.insecure: true serves plaintext and xds.tls a certificate: choose one" in _error(
        _write(tmp_path, {**off, "xds": both}), check_files=False)
    # An old config with TLS but no client CA would let anyone read any node group: refused, saying why.
    assert "xds.tls.clientCa is needed: without client certificates any client could read any node group" in _error(
        _write(tmp_path, {**off, "xds": {"tls": {"cert": "x.crt", "key": "x.key"}}}), check_files=False)


def test_provisioned_envoys_need_an_address_they_can_dial(tmp_path: Path) -> None:
    _kubeconfigs(tmp_path, "east")
    clusters = [{"name": "east", "kubeconfig": "kube/east.yaml"}]
    # The default listen address is a wildcard: nothing a pod could dial.
    assert "provisioning.xdsAddress is needed: xds.listen is '0.0.0.0:18000'" in _error(
        _write(tmp_path, {"clusters": clusters}))
    assert "provisioning.xdsAddress is needed: xds.listen is '10.1.2.3:0'" in _error(
        _write(tmp_path, {"clusters": clusters, "xds": {"listen": "10.1.2.3:0"}}))
    # A concrete listen address is what the Envoys dial, unless xdsAddress says otherwise.
    concrete = load_run_config(_write(tmp_path, {"clusters": clusters, "xds": {"listen": "10.1.2.3:18000"}}))
    assert concrete.provisioning_xds() == ("10.1.2.3", 18000)
    # Without provisioning the Envoys are the operator's, wherever they dial from.
    off = load_run_config(_write(tmp_path, {"clusters": clusters, "provisioning": {"enabled": False}}))
    assert off.provisioning.enabled is False
    # Provisioned Envoys get their credentials from mcgw's CA: your own server certificate does not go with them.
    tls = {"listen": "10.1.2.3:18000", "tls": {"cert": "x.crt", "key": "x.key", "clientCa": "ca.crt"}}
    assert "xds.tls cannot be used with provisioning: provisioned Envoys get their client certificates from " \
           "mcgw's CA" in _error(_write(tmp_path, {"clusters": clusters, "xds": tls}), check_files=False)
    assert "provisioning.addressPools.0: value is not a valid IPv4 or IPv6 network" in _error(
        _write(tmp_path, {"clusters": clusters, "provisioning": {"xdsAddress": "10.1.2.3:1", "addressPools": ["x"]}}))


def test_full_config_with_tls_and_cluster_properties(tmp_path: Path) -> None:
    _kubeconfigs(tmp_path, "east", "west")
    for name in ("xds.crt", "xds.key", "ca.crt"):
        (tmp_path / name).write_text("PEM")
    absolute = tmp_path / "kube" / "west.yaml"
    config = load_run_config(_write(tmp_path, {
        "clusters": [
            {"name": "east", "region": "r1", "zone": "r1-a", "failoverOrder": ["west"],
             "kubeconfig": "kube/east.yaml", "context": "admin@east"},
            {"name": "west", "kubeconfig": str(absolute)},
        ],
        "xds": {"listen": "[::]:0", "tls": {"cert": "xds.crt", "key": "xds.key", "clientCa": "ca.crt"}},
        "admin": {"listen": "localhost:9100"},
        "reconcile": {"debounce": 0.05, "debounceCap": 0.05},
        "leaderElection": {"enabled": False, "namespace": "mcgw-system", "leaseName": "mcgw.leader",
                           "leaseDuration": 30, "renewDeadline": 20, "retryPeriod": 4},
        "provisioning": {"enabled": False},
    }))
    assert config.clusters[0].context == "admin@east"
    assert config.clusters[1].kubeconfig == absolute
    assert (config.xds.host, config.xds.port) == ("::", 0)
    assert config.xds.tls is not None
    tls = config.xds.tls.tls_config()
    assert (tls.cert_chain, tls.private_key, tls.client_ca) == (tmp_path / "xds.crt", tmp_path / "xds.key",
                                                               tmp_path / "ca.crt")
    assert config.admin.port == 9100
    assert config.leader_election.enabled is False
    # The ClusterSet properties are the clusterset.yaml fields alone.
    assert config.clusterset().clusters == (
        ClusterProperties(name="east", region="r1", zone="r1-a", failover_order=("west",)),
        ClusterProperties(name="west"))


def test_missing_kubeconfig_field_names_the_cluster_index(tmp_path: Path) -> None:
    _kubeconfigs(tmp_path, "east")
    path = _write(tmp_path, {"clusters": [{"name": "east", "kubeconfig": "kube/east.yaml"}, {"name": "west"}]})
    assert "clusters.1.kubeconfig: Field required" in _error(path)


def test_kubeconfig_that_does_not_exist_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, {"clusters": [{"name": "east", "kubeconfig": "nowhere.yaml"}],
                             "provisioning": {"enabled": False}})
    assert f"clusters.0.kubeconfig: no such file: {tmp_path / 'nowhere.yaml'}" in _error(path)
    # Without the file check (validating a template), the path is still resolved.
    config = load_run_config(path, check_files=False)
    assert config.clusters[0].kubeconfig == tmp_path / "nowhere.yaml"


def test_missing_tls_key_file_is_named(tmp_path: Path) -> None:
    _kubeconfigs(tmp_path, "east")
    (tmp_path / "xds.crt").write_text("PEM")
    path = _write(tmp_path, {"clusters": [{"name": "east", "kubeconfig": "kube/east.yaml"}],
                             "xds": {"tls": {"cert": "xds.crt", "key": "xds.key", "clientCa": "xds.crt"}}})
    assert "xds.tls.key: no such file" in _error(path)


@pytest.mark.parametrize(("listen", "why"), [
    ("18000", "is not host:port"),
    ("localhost:http", "the port must be a number"),
    ("127.0.0.1:70000", "the port must be a number"),
    ("::1:18000", "write an IPv6 address in brackets"),
    ("bad_host:80", "is not an IP address or host name"),
])
def test_listen_address_must_be_host_port(tmp_path: Path, listen: str, why: str) -> None:
    _kubeconfigs(tmp_path, "east")
    path = _write(tmp_path, {"clusters": [{"name": "east", "kubeconfig": "kube/east.yaml"}],
                             "admin": {"listen": listen}})
    message = _error(path)
    assert "admin.listen: " in message
    assert why in message


@pytest.mark.parametrize(("change", "field", "why"), [
    ({"clusters": []}, "clusters", "at least 1"),
    ({"clusters": [{"name": "East", "kubeconfig": "kube/east.yaml"}]}, "clusters.0.name", "pattern"),
    ({"clusters": [{"name": "east", "kubeconfig": "kube/east.yaml", "kubeConfig": "x"}]}, "clusters.0.kubeConfig",
     "Extra inputs are not permitted"),
    ({"clusters": [{"name": "east", "kubeconfig": "kube/east.yaml"},
                   {"name": "east", "kubeconfig": "kube/east.yaml"}]}, "clusters", "must be unique: east"),
    ({"clusters": [{"name": "east", "kubeconfig": "kube/east.yaml", "failoverOrder": ["moon"]}]}, "clusters",
     "failoverOrder names unknown clusters moon"),
    ({"reconcile": {"debounce": 0}}, "reconcile.debounce", "greater than 0"),
    ({"reconcile": {"debounce": 2, "debounceCap": 1}}, "reconcile", "debounceCap (1.0) must be at least debounce"),
    ({"leaderElection": {"renewDeadline": 20}}, "leaderElection", "leaseDuration > renewDeadline > retryPeriod"),
    ({"leaderElection": {"leaseName": "Not A Name"}}, "leaderElection.leaseName", "pattern"),
    ({"xds": {"listen": "0.0.0.0:18000", "tsl": {}}}, "xds.tsl", "Extra inputs are not permitted"),
    ({"lostClusterTtl": -1}, "lostClusterTtl", "greater than or equal to 0"),
])
def test_bad_values_are_refused_naming_the_field(tmp_path: Path, change: dict[str, Any], field: str,
                                                 why: str) -> None:
    _kubeconfigs(tmp_path, "east")
    data = {"clusters": [{"name": "east", "kubeconfig": "kube/east.yaml"}], **change}
    message = _error(_write(tmp_path, data))
    assert f": {field}: " in message
    assert why in message


@pytest.mark.parametrize(("text", "why"), [
    ("", "an empty file"),
    ("- a\n- b\n", "got list"),
    ("clusters: [\n", "while parsing"),
])
def test_unreadable_files_are_refused(tmp_path: Path, text: str, why: str) -> None:
    assert why in _error(_write(tmp_path, text))


def test_missing_file_is_refused(tmp_path: Path) -> None:
    assert "No such file" in _error(tmp_path / "absent.yaml")


def test_example_is_valid_and_documents_every_field() -> None:
    config = load_run_config(EXAMPLE, check_files=False)
    assert [c.name for c in config.clusters] == ["east", "west"]
    assert config.clusters[0].kubeconfig == EXAMPLE.parent / "kubeconfigs" / "east.yaml"
    # The example shows the defaults, so it reads the same as a config that leaves them out.
    assert config.reconcile == ReconcileSettings()
    assert config.leader_election == LeaderElectionSettings()
    assert config.xds.listen == "0.0.0.0:18000"
    assert config.admin.listen == "127.0.0.1:19000"
    text = EXAMPLE.read_text()

    def keys(model: type[BaseModel]) -> set[str]:
        found = set()
        for name, info in model.model_fields.items():
            found.add(info.alias or name)
            for nested in (info.annotation, *getattr(info.annotation, "__args__", ())):
                if isinstance(nested, type) and issubclass(nested, BaseModel):
                    found |= keys(nested)
        return found

    for key in sorted(keys(RunConfig)):
        assert f"{key}:" in text, f"examples/run-config.yaml does not show {key}"


def test_clusterset_file_errors_still_name_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "clusters:\n  - {name: east, failoverOrder: [moon]}\n  - {name: west, zonee: a}\n",
                  "clusterset.yaml")
    with pytest.raises(ConfigError) as raised:
        load_clusterset(path)
    assert "clusters.1.zonee: Extra inputs are not permitted" in str(raised.value)
