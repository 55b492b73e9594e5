"""``mcgw gateway-manifests``: what an operator applies to run a Gateway's Envoys in a member cluster.

The real API server accepts the ConfigMap, Deployment and Service; real Envoy accepts the bootstrap
with the per-pod node name the Deployment gives it, and the SDS files and xDS client certificate Secret
(issued from a CA given on the command line); and ``mcgw run`` takes the Gateway's address from
the Service (its ClusterIP, allocated by the API server) when the Gateway does not ask for one.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from kubernetes.aio import client, config

from mcgw.app.config import load_run_config
from mcgw.app.run import Controller
from mcgw.dataplane.process import envoy_binary
from mcgw.provisioning.ca import CertificateAuthority
from mcgw.support.netutil import free_port
from tests.e2e.testbed import ClusterSet

GW = "gateway.networking.k8s.io"
NAMESPACE = "infra-manifests"


def _render(*extra: str) -> list[dict[str, Any]]:
    result = subprocess.run([sys.executable, "-m", "mcgw", "gateway-manifests", "--cluster", "east", "--gateway",
                             f"{NAMESPACE}/edge", "--xds", "127.0.0.1:18000", "--port", "8080", *extra],
                            capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_the_bootstrap_in_the_config_map_is_accepted_by_envoy(tmp_path: Path) -> None:
    ca = CertificateAuthority.generate()
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "ca.key").write_bytes(ca.key_pem())
    _, secret, config_map, deployment, _ = _render("--ca-cert", str(tmp_path / "ca.crt"),
                                                   "--ca-key", str(tmp_path / "ca.key"))
    assert (secret["kind"], secret["metadata"]["name"]) == ("Secret", "mcgw-edge-xds")
    assert ca.key_pem().decode() not in json.dumps(secret)  # the CA's key is never printed

    # The pod's volumes, under tmp_path: Envoy reads the SDS files and the certificates they name.
    def in_pod(text: str) -> str:
        return text.replace("/etc/envoy", f"{tmp_path}/etc/envoy").replace("/etc/mcgw-xds", f"{tmp_path}/etc/mcgw-xds")

    for directory, files in (("etc/envoy", {k: v.encode() for k, v in config_map["data"].items()}),
                             ("etc/mcgw-xds", {k: base64.b64decode(v) for k, v in secret["data"].items()})):
        (tmp_path / directory).mkdir(parents=True)
        for name, content in files.items():
            (tmp_path / directory / name).write_bytes(in_pod(content.decode()).encode())
    bootstrap = tmp_path / "etc" / "envoy" / "bootstrap.yaml"
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    args = [a.replace("$(POD_NAME)", "mcgw-edge-7d9f-abcde") for a in args]
    args[args.index("--config-path") + 1] = str(bootstrap)
    checked = subprocess.run([str(envoy_binary()), "--mode", "validate", *args], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_applied_manifests_give_the_gateway_its_address(clusterset: ClusterSet, tmp_path: Path) -> None:
    east = clusterset.clusters["east"]
    api = await config.new_client_from_config(config_file=str(east.kubeconfig), context="east", persist_config=False)
    try:
        core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
        await core.create_namespace({"metadata": {"name": NAMESPACE}})
        service_account, config_map, deployment, service = _render()
        await core.create_namespaced_service_account(NAMESPACE, service_account)
        await core.create_namespaced_config_map(NAMESPACE, config_map)
        await apps.create_namespaced_deployment(NAMESPACE, deployment)
        created = await core.create_namespaced_service(NAMESPACE, service)
        cluster_ip = created.spec.cluster_ip
        assert cluster_ip
        try:
            await custom.create_cluster_custom_object(GW, "v1", "gatewayclasses", {
                "apiVersion": f"{GW}/v1", "kind": "GatewayClass", "metadata": {"name": "mcgw"},
                "spec": {"controllerName": "mcgw.io/gateway-controller"}})
        except client.ApiException as error:
            if error.status != 409:  # 409: another test created it
                raise
        await custom.create_namespaced_custom_object(GW, "v1", NAMESPACE, "gateways", {
            "apiVersion": f"{GW}/v1", "kind": "Gateway", "metadata": {"name": "edge"},
            "spec": {"gatewayClassName": "mcgw", "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}})
        path = tmp_path / "mcgw.yaml"
        path.write_text(yaml.safe_dump({
            "clusters": [{"name": "east", "kubeconfig": str(east.kubeconfig), "context": "east"}],
            "xds": {"listen": f"127.0.0.1:{free_port()}"}, "admin": {"listen": "127.0.0.1:0"},
            "leaderElection": {"enabled": False},
            "provisioning": {"enabled": False}}))  # the manifests are applied by hand here
        async with Controller(load_run_config(path)) as controller:
            await asyncio.wait_for(controller.reconciler.ready.wait(), 60)
            status: dict[str, Any] = {}
            for _ in range(100):
                document = await asyncio.to_thread(_get_json, f"http://127.0.0.1:{controller.admin_port}/api/status")
                status = document["clusters"]["east"]["objects"]["Gateway"][f"{NAMESPACE}/edge"]["status"] or {}
                if status.get("addresses"):
                    break
                await asyncio.sleep(0.1)
            assert status["addresses"] == [{"type": "IPAddress", "value": cluster_ip}]
            programmed = {c["type"]: c["status"] for c in status["conditions"]}
            assert programmed["Programmed"] == "True"
    finally:
        await api.close()


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())
