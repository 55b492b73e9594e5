"""The controller as a pod, installed with Helm: ``helm install`` of charts/mcgw into west (the hub) of the
three-cluster test bed, with east, west and central as its members.

What the test sets up, as an operator would before installing:
- in east and central, ServiceAccount mcgw in mcgw-system with exactly the chart's RBAC (``helm template
  --show-only templates/rbac.yaml``), and a kubeconfig holding a token of it, as Secret mcgw-member-<name> in
  west's mcgw-system (``members[].existingSecret``);
- for west itself, a kubeconfig that uses the pod's own projected ServiceAccount token (``tokenFile``), so the
  chart's ServiceAccount and RBAC in west are all mcgw has there;
- the xDS Service as a LoadBalancer with an address asked for from west's pool (``service.loadBalancerIP``),
  which ``provisioning.xdsAddress`` names: provisioned Envoys in any member dial it (docs/testbed.md).

Then the pod runner runs the controller pod (image ``mcgw`` mapped to this checkout's ``mcgw``, read-only
root filesystem, /tmp an emptyDir); kube-apiserver enforces the RBAC on every request it makes.

- The pod becomes Ready; every member is available to it and it holds each member's Lease.
- It provisions east's Gateway; the Envoy pod dials its xDS address; traffic flows to east's backends, and
  when they are killed every request is still answered, by west (east's failoverOrder), none failed.
- A verb taken from the ClusterRole in central, then a restart: the new pod keeps running (no restart, no
  crash loop), and its log and /api/status name the verb and the resource it lacks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from mcgw.support.timestamps import rfc3339
from tests.chart import CHART, NAMESPACE, RELEASE, objects, run_helm, template
from tests.e2e.provisioned import PodEnvoy, get_json, remove_provisioned_elsewhere, run_config, until
from tests.e2e.test_failover_e2e import (
    Bed,
    _answers,
    _describe_failures,
    _eventually,
    _explain,
    _export,
    _gateway_and_route,
    _gateway_pods,
    _programmed_address,
    _served_only_by,
    _settled,
    _withdraw,
)
from tests.e2e.testbed import ClusterSet, EchoBackend
from tests.e2e.testbed.cluster import MemberCluster
from tests.e2e.testbed.faults import BackendKill
from tests.e2e.testbed.load import OpenLoopLoad, between, failures, served_by, settled_at
from tests.e2e.testbed.loadbalancer import sample_addresses

HUB = "west"
ORDER = ["east", "west", "central"]
SHOP, INFRA = "shop-ctrlpod", "infra-ctrlpod"
ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
RBAC = "rbac.authorization.k8s.io/v1"
XDS_PORT, ADMIN_PORT = 18000, 19000
RATE = 200.0


@dataclass
class Installed:
    clusterset: ClusterSet
    lease: str
    install_seconds: float
    ready_seconds: float
    backends: dict[str, list[EchoBackend]]

    @property
    def hub(self) -> MemberCluster:
        return self.clusterset.clusters[HUB]

    def pods(self) -> list[dict[str, Any]]:
        listed = self.hub.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector="
                                         "app.kubernetes.io%2Finstance%3D" + RELEASE)
        return [p for p in listed["items"] if not p["metadata"].get("deletionTimestamp")]

    def ready_pod(self) -> dict[str, Any] | None:
        ready = [p for p in self.pods() if _ready(p)]
        return ready[0] if len(ready) == 1 and len(self.pods()) == 1 else None

    def status(self, pod: dict[str, Any]) -> dict[str, Any] | None:
        return get_json(f"http://{pod['status']['podIP']}:{ADMIN_PORT}/api/status")


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _apply(cluster: MemberCluster, obj: dict[str, Any]) -> None:
    """Create ``obj`` (the kinds this test brings into a member), or replace it if it is there."""
    kind, meta = obj["kind"], obj["metadata"]
    namespace = meta.get("namespace", "")
    collection = {
        "Namespace": "/api/v1/namespaces",
        "ServiceAccount": f"/api/v1/namespaces/{namespace}/serviceaccounts",
        "Secret": f"/api/v1/namespaces/{namespace}/secrets",
        "ClusterRole": f"/apis/{RBAC}/clusterroles",
        "ClusterRoleBinding": f"/apis/{RBAC}/clusterrolebindings",
        "Role": f"/apis/{RBAC}/namespaces/{namespace}/roles",
        "RoleBinding": f"/apis/{RBAC}/namespaces/{namespace}/rolebindings",
    }[kind]
    try:
        cluster.request("POST", collection, obj)
    except urllib.error.HTTPError as error:
        if error.code != 409:
            raise
        if kind != "Namespace":
            cluster.request("PUT", f"{collection}/{meta['name']}", obj)


def _delete(cluster: MemberCluster, obj: dict[str, Any]) -> None:
    kind, meta = obj["kind"], obj["metadata"]
    namespace = meta.get("namespace", "")
    path = {
        "ServiceAccount": f"/api/v1/namespaces/{namespace}/serviceaccounts",
        "ClusterRole": f"/apis/{RBAC}/clusterroles",
        "ClusterRoleBinding": f"/apis/{RBAC}/clusterrolebindings",
        "Role": f"/apis/{RBAC}/namespaces/{namespace}/roles",
        "RoleBinding": f"/apis/{RBAC}/namespaces/{namespace}/rolebindings",
    }[kind]
    with contextlib.suppress(urllib.error.HTTPError):
        cluster.request("DELETE", f"{path}/{meta['name']}")


def _kubeconfig(name: str, server: str, cluster: dict[str, str], user: dict[str, str]) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": server, **cluster}}],
        "users": [{"name": "mcgw", "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": "mcgw"}}]})


def _member_kubeconfig(clusterset: ClusterSet, name: str) -> str:
    """How the controller pod reaches member ``name``: at the API server's own address (the pod runner relays
    every member's API server into its pods), as ServiceAccount mcgw of mcgw-system there."""
    member = clusterset.clusters[name]
    if name == HUB:  # the pod's own projected token: the chart's ServiceAccount
        return _kubeconfig(name, member.api_url, {"certificate-authority": f"{ACCOUNT}/ca.crt"},
                           {"tokenFile": f"{ACCOUNT}/token"})
    token = member.request("POST", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/mcgw/token", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 7200}})["status"]["token"]
    ca = base64.b64encode(member.pki.ca_cert.read_bytes()).decode()
    return _kubeconfig(name, member.api_url, {"certificate-authority-data": ca}, {"token": token})


def _values(clusterset: ClusterSet, lease: str, xds_ip: str) -> dict[str, Any]:
    return {
        "replicaCount": 1,
        "logFormat": "text",
        "members": [{"name": name, "region": f"region-{name}", "existingSecret": f"mcgw-member-{name}",
                     **({"failoverOrder": ["west", "central"]} if name == "east" else {})} for name in ORDER],
        "service": {"type": "LoadBalancer", "loadBalancerIP": xds_ip},
        "provisioning": {"xdsAddress": f"{xds_ip}:{XDS_PORT}"},
        "leaderElection": {"leaseName": lease, "leaseDuration": 6, "renewDeadline": 4, "retryPeriod": 1},
        "reconcile": {"debounce": 0.05, "debounceCap": 0.3},
        "drainGrace": 1,
    }


def _rbac_objects() -> list[dict[str, Any]]:
    """The chart's RBAC as it renders it for its own ServiceAccount (mcgw in mcgw-system)."""
    return objects(template({"members": [{"name": "any", "existingSecret": "unused"}]},
                            "--show-only", "templates/rbac.yaml"))


def _helm(*args: str) -> str:
    return run_helm(list(args))


async def _install(clusterset: ClusterSet, directory: Path, values: dict[str, Any]) -> float:
    hub = clusterset.clusters[HUB]
    path = directory / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    started = time.monotonic()
    await asyncio.to_thread(_helm, "install", RELEASE, str(CHART), "--namespace", NAMESPACE,
                            "--kubeconfig", str(hub.kubeconfig), "--values", str(path),
                            "--wait", "--timeout", "180s")
    return time.monotonic() - started


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def installed(clusterset: ClusterSet, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Installed]:
    directory = tmp_path_factory.mktemp("controller-pod")
    since = rfc3339()
    rbac = _rbac_objects()
    account = {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": "mcgw", "namespace": NAMESPACE}}
    for name, member in clusterset.clusters.items():
        await asyncio.to_thread(_apply, member, {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": NAMESPACE}})
        if name != HUB:  # the hub gets both from the chart
            for obj in [account, *rbac]:
                await asyncio.to_thread(_apply, member, obj)
    hub = clusterset.clusters[HUB]
    for name in ORDER:
        kubeconfig = await asyncio.to_thread(_member_kubeconfig, clusterset, name)
        await asyncio.to_thread(_apply, hub, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"mcgw-member-{name}", "namespace": NAMESPACE},
            "type": "Opaque", "stringData": {"kubeconfig": kubeconfig}})
    (xds_ip,), _ = sample_addresses(clusterset.network, HUB)
    lease = f"mcgw-ctrlpod-{secrets.token_hex(3)}"
    backends = {name: [clusterset.start_echo(name, namespace=SHOP, pod=f"cart-{name}-{i}-ctrlpod") for i in range(2)]
                for name in ORDER}
    try:
        try:
            install_seconds = await _install(clusterset, directory, _values(clusterset, lease, xds_ip))
            pod = await until(lambda: asyncio.to_thread(_single_ready_pod, hub), 60, "the controller pod to be Ready")
        except BaseException:
            print(await asyncio.to_thread(_diagnosis, hub), flush=True)
            raise
        ready_seconds = _seconds_between(pod["metadata"]["creationTimestamp"], _ready_since(pod))
        print(f"\n[controller-pod] helm install --wait returned after {install_seconds:.1f}s; pod "
              f"{pod['metadata']['name']} Ready {ready_seconds:.0f}s after it was created", flush=True)
        for name in ORDER:
            await asyncio.to_thread(_export, clusterset.clusters[name], backends[name], SHOP)
        yield Installed(clusterset, lease, install_seconds, ready_seconds, backends)
    finally:
        with contextlib.suppress(Exception, pytest.fail.Exception):
            await _withdraw(clusterset, SHOP, INFRA)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(_helm, "uninstall", RELEASE, "--namespace", NAMESPACE,
                                    "--kubeconfig", str(hub.kubeconfig), "--wait", "--timeout", "60s")
        # mcgw-system itself stays: other tests of the session use it, and a terminating one would refuse them.
        for name, member in clusterset.clusters.items():
            for obj in ([account, *rbac] if name != HUB else []):
                await asyncio.to_thread(_delete, member, obj)
        for name in ORDER:
            with contextlib.suppress(urllib.error.HTTPError):
                hub.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/secrets/mcgw-member-{name}")
        # The controller acted on every member: what it provisioned for another test's Gateway goes.
        await remove_provisioned_elsewhere(run_config(directory, clusterset, ORDER), since,
                                           {SHOP, INFRA}.__contains__)


def _diagnosis(hub: MemberCluster) -> str:
    """The controller pods' status and logs, for a failed install."""
    lines = []
    for pod in hub.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods")["items"]:
        lines.append(f"pod {pod['metadata']['name']}: {yaml.safe_dump(pod.get('status') or {})}")
        with contextlib.suppress(urllib.error.HTTPError):
            lines.append(_pod_log(hub, pod["metadata"]["name"])[-4000:])
    return "\n".join(lines)


def _gateway_diagnosis(installed: Installed) -> str:
    """East's Gateway status, its Envoy pods' status and logs, and the controller's log, for a failed test."""
    east = installed.clusterset.clusters["east"]
    gateway = east.request("GET", f"/apis/gateway.networking.k8s.io/v1/namespaces/{INFRA}/gateways/public")
    lines = [f"gateway status: {yaml.safe_dump(gateway.get('status') or {})}"]
    for pod in _gateway_pods(east, INFRA):
        name = pod["metadata"]["name"]
        lines.append(f"envoy pod {name}: {yaml.safe_dump(pod.get('status') or {})}")
        with contextlib.suppress(urllib.error.HTTPError):
            lines.append(_pod_log(east, name, INFRA)[-3000:])
    for pod in installed.pods():
        lines.append(_pod_log(installed.hub, pod["metadata"]["name"])[-6000:])
    return "\n".join(lines)


def _single_ready_pod(hub: MemberCluster) -> dict[str, Any] | None:
    listed = hub.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector="
                                f"app.kubernetes.io%2Finstance%3D{RELEASE}")["items"]
    live = [p for p in listed if not p["metadata"].get("deletionTimestamp")]
    return live[0] if len(live) == 1 and _ready(live[0]) else None


def _ready_since(pod: dict[str, Any]) -> str:
    return str(next(c["lastTransitionTime"] for c in pod["status"]["conditions"] if c["type"] == "Ready"))


def _seconds_between(first: str, second: str) -> float:
    def parse(stamp: str) -> float:
        return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))

    return parse(second) - parse(first)


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


def _lease_holder(cluster: MemberCluster, lease: str) -> str:
    try:
        found = cluster.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{lease}")
    except urllib.error.HTTPError:
        return ""
    return str((found.get("spec") or {}).get("holderIdentity") or "")


async def test_the_installed_controller_pod_is_ready_and_leads_every_member(installed: Installed) -> None:
    pod = installed.ready_pod()
    assert pod is not None
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    (container,) = pod["status"]["containerStatuses"]
    assert (container["restartCount"], "running" in container["state"]) == (0, True)
    assert container["image"].startswith("mcgw:")
    assert await asyncio.to_thread(_http_status, f"http://{ip}:{ADMIN_PORT}/readyz") == 200

    def all_available() -> dict[str, Any] | None:
        status = installed.status(pod)
        clusters = (status or {}).get("clusters", {})
        ok = sorted(clusters) == sorted(ORDER) and all(c["available"] and c["synced"] for c in clusters.values())
        return status if ok and all((status or {}).get("leader", {}).get(n) for n in ORDER) else None

    status = await until(lambda: asyncio.to_thread(all_available), 60,
                         "every member available to the pod, and every Lease held")
    assert status["xdsSecurity"]["mode"] == "mtls"
    # Each member's Lease is held by the pod (mcgw's identity starts with its hostname, the pod's name).
    for member in ORDER:
        holder = await asyncio.to_thread(_lease_holder, installed.clusterset.clusters[member], installed.lease)
        assert holder.startswith(f"{name}_"), (member, holder)


async def test_it_provisions_a_gateway_whose_traffic_fails_over_without_a_failed_request(
        installed: Installed) -> None:
    clusterset = installed.clusterset
    east = clusterset.clusters["east"]
    await asyncio.to_thread(_gateway_and_route, east, 80, SHOP, INFRA, True)
    try:
        address = await until(lambda: asyncio.to_thread(_programmed_address, east, INFRA), 120,
                              "east's Gateway to be Programmed at its load balancer's address")
    except AssertionError:
        print(await asyncio.to_thread(_gateway_diagnosis, installed), flush=True)
        raise
    (envoy_pod,) = await asyncio.to_thread(_gateway_pods, east, INFRA)
    # The Envoy's xDS server is the controller pod, dialled at the xDS Service's load balancer address.
    pod = installed.ready_pod()
    assert pod is not None
    status = installed.status(pod) or {}
    assert [n["cluster"] for n in status["nodes"] if n["group"]["gateway"] == f"{INFRA}/public"] == ["east"]
    url = f"http://{address}:80/cart"
    await _served_only_by(url, "east")
    bed = Bed(clusterset, installed.backends, PodEnvoy.of(clusterset, "east", envoy_pod), url, "controller-pod")
    fault = BackendKill(clusterset, installed.backends["east"])
    load = OpenLoopLoad(url, RATE)
    await asyncio.to_thread(load.start)
    restored = False
    try:
        await asyncio.sleep(1.5)
        fault_at = load.mark("fault")
        await asyncio.to_thread(fault.inject)
        await _eventually(_settled(load, fault_at, "west"), 30, "every answer from west after east's backends died",
                          _explain(bed, load))
        await asyncio.sleep(1)
        restore_at = load.mark("restore")
        await asyncio.to_thread(fault.restore)
        restored = True
        back_at = load.mark("restored")
        await _eventually(_settled(load, back_at, "east"), 30, "every answer from east after the restore",
                          _explain(bed, load))
    finally:
        if not restored:
            await asyncio.to_thread(fault.restore)
        samples = await asyncio.to_thread(load.stop)
    faulted = between(samples, fault_at, restore_at)
    shifted = settled_at(faulted, fault_at, {"west"})
    print(f"\n[controller-pod] kill east's backends: {len(samples)} requests, {len(failures(samples))} failed; every "
          f"answer from west {shifted - fault_at if shifted else float('nan'):.2f}s after the fault; served during "
          f"the fault {served_by(faulted)}", flush=True)
    assert failures(samples) == [], _describe_failures(samples)
    assert all(s.cluster == "east" for s in samples if s.completed < fault_at)
    assert shifted is not None
    assert _answers(samples, "central") == []


def _pod_log(cluster: MemberCluster, pod: str, namespace: str = NAMESPACE) -> str:
    request = urllib.request.Request(f"{cluster.api_url}/api/v1/namespaces/{namespace}/pods/{pod}/log")
    with urllib.request.urlopen(request, context=cluster.ssl_context(), timeout=30) as response:
        return str(response.read().decode(errors="replace"))


async def test_a_missing_permission_is_named_and_the_pod_keeps_running(installed: Installed) -> None:
    central = installed.clusterset.clusters["central"]
    role = central.request("GET", f"/apis/{RBAC}/clusterroles/mcgw")
    reads = next(r for r in role["rules"] if r["resources"] == ["endpointslices"] and "watch" in r["verbs"])
    reads["verbs"] = [v for v in reads["verbs"] if v != "watch"]
    central.request("PUT", f"/apis/{RBAC}/clusterroles/mcgw", role)
    try:
        await _restarted_without_watch(installed)
    finally:
        reads["verbs"].append("watch")
        current = central.request("GET", f"/apis/{RBAC}/clusterroles/mcgw")
        central.request("PUT", f"/apis/{RBAC}/clusterroles/mcgw", {**role, "metadata": current["metadata"]})

    def recovered() -> bool:
        pod = installed.ready_pod()
        status = installed.status(pod) if pod else None
        return bool(status and status["clusters"]["central"]["available"])

    # Given back, the permission is used at the next attempt: central is available again, no restart.
    await until(lambda: asyncio.to_thread(recovered), 60, "central to be available once the verb is back")


async def _restarted_without_watch(installed: Installed) -> None:
    """Restart the controller while central's role lacks watch on endpointslices; what the new pod says."""
    hub = installed.hub
    before = installed.ready_pod()
    assert before is not None
    # A restart (an established watch is not re-authorised): the new pod lists with the narrower role.
    hub.request("PATCH", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{RELEASE}", {"spec": {"template": {
        "metadata": {"annotations": {"mcgw.test/restarted-at": rfc3339()}}}}},
        content_type="application/strategic-merge-patch+json")

    def replaced() -> dict[str, Any] | None:
        pod = installed.ready_pod()
        return pod if pod is not None and pod["metadata"]["uid"] != before["metadata"]["uid"] else None

    pod = await until(lambda: asyncio.to_thread(replaced), 120, "the new controller pod to be Ready")
    wanted = 'cannot watch resource "endpointslices" in API group "discovery.k8s.io"'

    def reported() -> dict[str, Any] | None:
        status = installed.status(pod) or {}
        central_status = status.get("clusters", {}).get("central", {})
        return central_status if wanted in central_status.get("reason", "") else None

    central_status = await until(lambda: asyncio.to_thread(reported), 60, "central's reason to name the permission")
    assert central_status["available"] is False
    status = installed.status(pod) or {}
    assert all(status["clusters"][name]["available"] for name in ("east", "west"))
    failing = [i for i in status["informers"]["central"] if wanted in i["last_error"]]
    assert [i["kind"] for i in failing] == ["EndpointSlice"], failing
    log = await asyncio.to_thread(_pod_log, hub, pod["metadata"]["name"])
    assert wanted in log
    # Reported, not crashed: the same container runs on, still Ready, never restarted.
    await asyncio.sleep(5)
    (now,) = [p for p in installed.pods() if p["metadata"]["uid"] == pod["metadata"]["uid"]]
    (container,) = now["status"]["containerStatuses"]
    assert (container["restartCount"], "running" in container["state"], _ready(now)) == (0, True, True)
    print(f"\n[controller-pod] central without watch on endpointslices: {central_status['reason']}", flush=True)
