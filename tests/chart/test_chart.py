"""charts/mcgw, rendered and linted by the real helm: what it installs, the run config it gives mcgw,
the values it refuses, and the manifests generated from it."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcgw.app.config import RunConfig, load_run_config
from tests.chart import CHART, GENERATED, NAMESPACE, PLAIN_VALUES, REPO, HelmError, objects, run_helm, template

KUBECONFIG = yaml.safe_dump({
    "apiVersion": "v1", "kind": "Config", "current-context": "east",
    "clusters": [{"name": "east", "cluster": {"server": "https://east.example:6443"}}],
    "users": [{"name": "mcgw", "user": {"token": "not-a-real-token"}}],
    "contexts": [{"name": "east", "context": {"cluster": "east", "user": "mcgw"}}]})
INLINE = {"members": [
    {"name": "east", "region": "us-east-1", "zone": "us-east-1a", "failoverOrder": ["west"], "kubeconfig": KUBECONFIG},
    {"name": "west", "region": "us-west-2", "failoverOrder": ["east"], "kubeconfig": KUBECONFIG, "context": "east"},
]}
EXISTING = {"members": [
    {"name": "east", "existingSecret": "east-kubeconfig"},
    {"name": "west", "existingSecret": "west-kubeconfig", "existingSecretKey": "config"},
]}


def _by_kind(rendered: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for obj in objects(rendered):
        found.setdefault(obj["kind"], []).append(obj)
    return found


def _pod_filesystem(rendered: str, root: Path) -> Path:
    """Lay out what the controller container sees under /etc/mcgw (ConfigMap and Secret volumes, as the
    kubelet mounts them) below ``root``, with the config's absolute paths moved there too; return the config."""
    found = _by_kind(rendered)
    deployment, = found["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container, = pod["containers"]
    config_map, = found["ConfigMap"]
    secrets = {s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
               for s in found.get("Secret", [])}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_path: Path | None = None
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        target = root / mount["mountPath"].lstrip("/")
        if "configMap" in volume:
            assert volume["configMap"]["name"] == config_map["metadata"]["name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            text = config_map["data"][mount["subPath"]].replace("/etc/mcgw/", f"{root}/etc/mcgw/")
            target.write_text(text)
            config_path = target
        elif "secret" in volume:
            name = volume["secret"]["secretName"]
            # A Secret the user brings holds whatever key the values name; stand in for it.
            data = secrets.get(name) or {item["key"]: f"contents of {name}" for item in volume["secret"]["items"]}
            target.mkdir(parents=True, exist_ok=True)
            for item in volume["secret"]["items"]:
                (target / item["path"]).write_text(data[item["key"]])
    assert config_path is not None, "no volume mounts the run config"
    return config_path


def _load(values: dict[str, Any], tmp_path: Path) -> RunConfig:
    rendered = template(values)
    config = _pod_filesystem(rendered, tmp_path)
    args = _by_kind(rendered)["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--config=/{config.relative_to(tmp_path)}" in args
    return load_run_config(config)


@pytest.mark.parametrize("values", [None, PLAIN_VALUES, REPO / "examples" / "helm" / "inline-values.yaml"],
                         ids=["defaults", "plain-manifests", "inline-example"])
@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_lint_is_clean(values: Path | None, strict: bool) -> None:
    # helm lint lets a template's `fail` pass (the defaults have no members); rendering does not, see below.
    args = ["lint", str(CHART), *(["--strict"] if strict else []), *(["--values", str(values)] if values else [])]
    out = run_helm(args)
    assert "1 chart(s) linted, 0 chart(s) failed" in out, out
    assert "[WARNING]" not in out, out
    assert "[ERROR]" not in out, out


def test_run_config_with_inline_kubeconfigs_loads(tmp_path: Path) -> None:
    config = _load(INLINE, tmp_path)
    assert [(c.name, c.region, c.zone, c.failover_order, c.context) for c in config.clusters] == [
        ("east", "us-east-1", "us-east-1a", ("west",), None), ("west", "us-west-2", "", ("east",), "east")]
    assert config.clusters[0].kubeconfig.read_text() == KUBECONFIG
    assert config.provisioning_xds() == (f"mcgw.{NAMESPACE}.svc.cluster.local", 18000)
    assert config.server_hosts()[0] == f"mcgw.{NAMESPACE}.svc.cluster.local"
    assert (config.xds.listen, config.xds.mode, config.admin.listen) == ("0.0.0.0:18000", "ca", "0.0.0.0:19000")
    assert config.leader_election.enabled


def test_run_config_with_existing_secrets_loads(tmp_path: Path) -> None:
    config = _load(EXISTING, tmp_path)
    assert [c.kubeconfig.read_text() for c in config.clusters] == [
        "contents of east-kubeconfig", "contents of west-kubeconfig"]
    assert "Secret" not in _by_kind(template(EXISTING)), "no Secret is rendered for members that bring their own"


def test_xds_and_admin_values_reach_the_run_config(tmp_path: Path) -> None:
    config = _load({**EXISTING, "xds": {"port": 18443, "ca": {"cluster": "west", "create": False},
                                        "maxConnectionAge": 600, "serverNames": ["xds.example.com"]},
                    "provisioning": {"xdsAddress": "xds.example.com:443", "addressPools": ["192.0.2.0/24"]},
                    "admin": {"listenAddress": "::", "port": 19100}}, tmp_path)
    assert (config.xds.port, config.ca_cluster(), config.xds.ca.create) == (18443, "west", False)
    assert config.xds.connection_age == 600
    assert config.provisioning_xds() == ("xds.example.com", 443)
    assert [str(p) for p in config.provisioning.address_pools] == ["192.0.2.0/24"]
    assert config.admin.listen == "[::]:19100"


def test_own_xds_certificate_without_provisioning_loads(tmp_path: Path) -> None:
    config = _load({**EXISTING, "provisioning": {"enabled": False}, "xds": {"tls": {"existingSecret": "xds-cert"}}},
                   tmp_path)
    assert config.xds.mode == "tls"
    assert config.xds.tls is not None
    assert config.xds.tls.cert.read_text() == "contents of xds-cert"


def test_the_controller_deployment() -> None:
    found = _by_kind(template(INLINE))
    deployment, = found["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container, = pod["containers"]
    assert deployment["spec"]["replicas"] == 2
    assert container["image"] == "mcgw:0.1.0"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"xds": 18000, "admin": 19000}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["serviceAccountName"] == found["ServiceAccount"][0]["metadata"]["name"]
    service, = found["Service"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "xds", "port": 18000, "targetPort": "xds", "protocol": "TCP"}]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    pdb, = found["PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/etc/mcgw/members/east", "/etc/mcgw/members/west"} <= mounts


def test_scheduling_and_service_values_are_applied() -> None:
    found = _by_kind(template({**EXISTING, "replicaCount": 3,
                               "service": {"type": "LoadBalancer", "loadBalancerIP": "198.18.15.60"},
                               "nodeSelector": {"pool": "system"},
                               "tolerations": [{"key": "system", "operator": "Exists"}],
                               "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "2Gi"}},
                               "image": {"repository": "registry.example/mcgw", "tag": "dev", "pullPolicy": "Always"}}))
    pod = found["Deployment"][0]["spec"]["template"]["spec"]
    assert (found["Deployment"][0]["spec"]["replicas"], found["Service"][0]["spec"]["type"]) == (3, "LoadBalancer")
    assert found["Service"][0]["spec"]["loadBalancerIP"] == "198.18.15.60"
    assert "loadBalancerIP" not in _by_kind(template(EXISTING))["Service"][0]["spec"]
    assert pod["nodeSelector"] == {"pool": "system"}
    assert pod["tolerations"] == [{"key": "system", "operator": "Exists"}]
    # helm merges maps with the defaults: the memory request stays.
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "1", "memory": "256Mi"},
                                                 "limits": {"memory": "2Gi"}}
    assert (pod["containers"][0]["image"], pod["containers"][0]["imagePullPolicy"]) == ("registry.example/mcgw:dev",
                                                                                          "Always")


def test_without_rbac_no_role_is_rendered() -> None:
    kinds = set(_by_kind(template({**EXISTING, "rbac": {"create": False}})))
    assert kinds.isdisjoint({"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"})
    assert "Deployment" in kinds


def test_a_changed_run_config_rolls_the_pods() -> None:
    def checksums(values: dict[str, Any]) -> dict[str, str]:
        annotations = _by_kind(template(values))["Deployment"][0]["spec"]["template"]["metadata"]["annotations"]
        return {k: v for k, v in annotations.items() if k.startswith("checksum/")}

    assert checksums(INLINE) != checksums({**INLINE, "lostClusterTtl": 60})


@pytest.mark.parametrize(("values", "message"), [
    ({"members": []}, "members is empty: list at least one member cluster"),
    ({"members": [{"name": "east"}]}, 'member "east" has no kubeconfig source: set kubeconfig'),
    ({"members": [{"name": "east", "kubeconfig": KUBECONFIG, "existingSecret": "s"}]},
     'member "east" has both kubeconfig and existingSecret'),
    ({"members": [{"name": "east", "existingSecret": "a"}, {"name": "east", "existingSecret": "b"}]},
     '"east" is listed twice'),
    ({**EXISTING, "leaderElection": {"enabled": False}}, "replicaCount is 2 but leaderElection.enabled is false"),
    ({**EXISTING, "xds": {"tls": {"existingSecret": "cert"}}}, "xds.tls.existingSecret needs provisioning.enabled"),
    ({**EXISTING, "serviceAccount": {"create": False}}, "serviceAccount.name is needed when serviceAccount.create"),
    ({"members": [{"name": "East", "existingSecret": "a"}]}, "members/0/name"),
    ({"members": [{"name": "east", "kubeconfigSecret": "a"}]}, "kubeconfigSecret"),
])
def test_values_that_make_no_sense_fail_rendering(values: dict[str, Any], message: str) -> None:
    with pytest.raises(HelmError, match=re.escape(message)):
        template(values)


def test_the_chart_installs_the_repo_crds() -> None:
    rendered = [o for o in objects(template(PLAIN_VALUES, "--include-crds")) if o["kind"] == "CustomResourceDefinition"]
    source = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds" / "mcgw").glob("*.yaml"))]
    assert sorted(rendered, key=lambda o: o["metadata"]["name"]) == source
    assert (CHART / "crds").resolve() == (REPO / "crds" / "mcgw").resolve()


def test_app_version_is_mcgw_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert project
    assert chart["appVersion"] == project.group(1)


@pytest.mark.parametrize("generated", GENERATED, ids=lambda g: str(g.path.relative_to(REPO)))
def test_generated_manifests_match_the_chart(generated: Any) -> None:
    assert generated.path.read_text() == generated.render(), (
        f"{generated.path.relative_to(REPO)} is not what charts/mcgw renders: run `make manifests`")
