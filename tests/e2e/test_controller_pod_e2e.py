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

- Both replicas (the chart's default) become Ready and serve xDS; every member is available to each, and
  each member's Lease is held by exactly one of them. When the pod holding east's Lease is deleted, the
  other replica takes every Lease it held, and the Deployment's new pod joins.
- It provisions east's Gateway; the Envoy pod dials its xDS address; traffic flows to east's backends, and
  when they are killed every request is still answered, by west (east's failoverOrder), none failed.
- A verb taken from the ClusterRole in central, then a restart: the new pods keep running (no restart, no
  crash loop), and each one's log and /api/status name the verb and the resource it lacks.
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
from tests.e2e.failover_bed import (
    HTTP,
    Bed,
    assert_lossless_failover,
    export,
    gateway_and_route,
    gateway_pods,
    programmed_address,
    served_only_by,
    withdraw,
)
from tests.e2e.provisioned import PodEnvoy, get_json, remove_provisioned_elsewhere, run_config, until
from tests.e2e.testbed import ClusterSet, EchoBackend
from tests.e2e.testbed.cluster import MemberCluster
from tests.e2e.testbed.faults import BackendKill
from tests.e2e.testbed.loadbalancer import sample_addresses

HUB = "west"
ORDER = ["east", "west", "central"]
SHOP, INFRA = "shop-ctrlpod", "infra-ctrlpod"
ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
RBAC = "rbac.authorization.k8s.io/v1"
XDS_PORT, ADMIN_PORT = 18000, 19000
RATE = 200.0
REPLICAS = 2  # the chart's default: every replica serves xDS, each member's Lease holder writes there


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

    def ready_pods(self) -> list[dict[str, Any]] | None:
        """Every replica, when there are exactly the chart's number of them and each is Ready."""
        pods = self.pods()
        return pods if len(pods) == REPLICAS and all(_ready(p) for p in pods) else None

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
        "replicaCount": REPLICAS,
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
            pods = await until(lambda: asyncio.to_thread(_ready_pods, hub), 60, "both controller pods to be Ready")
        except BaseException:
            print(await asyncio.to_thread(_diagnosis, hub), flush=True)
            raise
        ready_seconds = max(_seconds_between(pod["metadata"]["creationTimestamp"], _ready_since(pod)) for pod in pods)
        print(f"\n[controller-pod] helm install --wait returned after {install_seconds:.1f}s; pods "
              f"{', '.join(p['metadata']['name'] for p in pods)} Ready at most {ready_seconds:.0f}s after they "
              "were created", flush=True)
        for name in ORDER:
            await asyncio.to_thread(export, HTTP, clusterset.clusters[name], backends[name], SHOP)
        yield Installed(clusterset, lease, install_seconds, ready_seconds, backends)
    finally:
        with contextlib.suppress(Exception, pytest.fail.Exception):
            await withdraw(clusterset, SHOP, INFRA)
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
    for pod in gateway_pods(east, INFRA):
        name = pod["metadata"]["name"]
        lines.append(f"envoy pod {name}: {yaml.safe_dump(pod.get('status') or {})}")
        with contextlib.suppress(urllib.error.HTTPError):
            lines.append(_pod_log(east, name, INFRA)[-3000:])
    for pod in installed.pods():
        lines.append(_pod_log(installed.hub, pod["metadata"]["name"])[-6000:])
    return "\n".join(lines)


def _ready_pods(hub: MemberCluster) -> list[dict[str, Any]] | None:
    listed = hub.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector="
                                f"app.kubernetes.io%2Finstance%3D{RELEASE}")["items"]
    live = [p for p in listed if not p["metadata"].get("deletionTimestamp")]
    return live if len(live) == REPLICAS and all(_ready(p) for p in live) else None


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


def _holders(installed: Installed) -> dict[str, str]:
    """Each member's Lease holder, as the pod name in mcgw's identity (``<hostname>_<suffix>``)."""
    return {member: _lease_holder(installed.clusterset.clusters[member], installed.lease).split("_")[0]
            for member in ORDER}


async def _every_member_led(installed: Installed) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Both replicas Ready, every member available to each, and every member's Lease held by one of them,
    which says so on its /api/status while the other does not."""

    def settled() -> tuple[list[dict[str, Any]], dict[str, str]] | None:
        pods = installed.ready_pods()
        if pods is None:
            return None
        statuses = {p["metadata"]["name"]: installed.status(p) or {} for p in pods}
        for status in statuses.values():
            clusters = status.get("clusters", {})
            if sorted(clusters) != sorted(ORDER) or not all(c["available"] and c["synced"] for c in clusters.values()):
                return None
        holders = _holders(installed)
        leads = {member: [n for n, st in statuses.items() if st.get("leader", {}).get(member)] for member in ORDER}
        if any(leads[member] != [holders[member]] for member in ORDER):
            return None
        return pods, holders

    return await until(lambda: asyncio.to_thread(settled), 90,
                       "both replicas available to every member, each member's Lease held by exactly one")


async def test_two_installed_replicas_serve_and_each_member_has_one_leader(installed: Installed) -> None:
    pods, holders = await _every_member_led(installed)
    for pod in pods:
        (container,) = pod["status"]["containerStatuses"]
        assert (container["restartCount"], "running" in container["state"]) == (0, True)
        assert container["image"].startswith("mcgw:")
        # Every replica serves xDS and is ready for it, leader or not.
        assert await asyncio.to_thread(_http_status, f"http://{pod['status']['podIP']}:{ADMIN_PORT}/readyz") == 200
        assert (installed.status(pod) or {})["xdsSecurity"]["mode"] == "mtls"
    assert set(holders.values()) <= {p["metadata"]["name"] for p in pods}
    print(f"\n[controller-pod] Lease holders: {holders}", flush=True)


async def test_when_a_leader_pod_goes_the_other_replica_takes_its_leases(installed: Installed) -> None:
    _, holders = await _every_member_led(installed)
    leader = holders["east"]
    gone = time.monotonic()
    installed.hub.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{leader}")

    def taken_over() -> dict[str, str] | None:
        now = _holders(installed)
        return now if all(holder and holder != leader for holder in now.values()) else None

    now = await until(lambda: asyncio.to_thread(taken_over), 60, f"every Lease held by a pod other than {leader}")
    took = time.monotonic() - gone
    # The Deployment replaces the pod; the set settles again with one leader per member.
    await _every_member_led(installed)
    print(f"\n[controller-pod] deleted {leader} (east's Lease holder): every Lease held by another replica "
          f"after {took:.1f}s ({now})", flush=True)


async def test_it_provisions_a_gateway_whose_traffic_fails_over_without_a_failed_request(
        installed: Installed) -> None:
    clusterset = installed.clusterset
    east = clusterset.clusters["east"]
    await asyncio.to_thread(gateway_and_route, HTTP, east, 80, SHOP, INFRA, True)
    try:
        address = await until(lambda: asyncio.to_thread(programmed_address, east, INFRA), 120,
                              "east's Gateway to be Programmed at its load balancer's address")
    except AssertionError:
        print(await asyncio.to_thread(_gateway_diagnosis, installed), flush=True)
        raise
    (envoy_pod,) = await asyncio.to_thread(gateway_pods, east, INFRA)
    # The Envoy's xDS server is one of the controller pods, dialled at the xDS Service's load balancer address.
    pods = installed.ready_pods()
    assert pods is not None
    nodes = [n["cluster"] for pod in pods for n in (installed.status(pod) or {})["nodes"]
             if n["group"]["gateway"] == f"{INFRA}/public"]
    assert nodes == ["east"]
    url = f"http://{address}:80/cart"
    await served_only_by(url, "east")
    bed = Bed(clusterset, installed.backends, PodEnvoy.of(clusterset, "east", envoy_pod), url, "controller-pod")
    await assert_lossless_failover(bed, BackendKill(clusterset, installed.backends["east"]),
                                   "[controller-pod] kill east's backends")


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
        pods = installed.ready_pods() or []
        statuses = [installed.status(pod) for pod in pods]
        return bool(pods) and all(st and st["clusters"]["central"]["available"] for st in statuses)

    # Given back, the permission is used at the next attempt: central is available again, no restart.
    await until(lambda: asyncio.to_thread(recovered), 60, "central to be available once the verb is back")


async def _central_reason(installed: Installed, pod: dict[str, Any], wanted: str) -> dict[str, Any]:
    """Central's entry in ``pod``'s /api/status once its reason contains ``wanted``."""

    def reported() -> dict[str, Any] | None:
        central_status = (installed.status(pod) or {}).get("clusters", {}).get("central", {})
        return central_status if wanted in central_status.get("reason", "") else None

    found: dict[str, Any] = await until(lambda: asyncio.to_thread(reported), 60,
                                        f"{pod['metadata']['name']}: central's reason to name the permission")
    return found


async def _restarted_without_watch(installed: Installed) -> None:
    """Restart the controller while central's role lacks watch on endpointslices; what the new pod says."""
    hub = installed.hub
    before = installed.ready_pods()
    assert before is not None
    old = {p["metadata"]["uid"] for p in before}
    # A restart (an established watch is not re-authorised): the new pods list with the narrower role.
    hub.request("PATCH", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{RELEASE}", {"spec": {"template": {
        "metadata": {"annotations": {"mcgw.test/restarted-at": rfc3339()}}}}},
        content_type="application/strategic-merge-patch+json")

    def replaced() -> list[dict[str, Any]] | None:
        pods = installed.ready_pods()
        return pods if pods is not None and not old & {p["metadata"]["uid"] for p in pods} else None

    pods = await until(lambda: asyncio.to_thread(replaced), 180, "both new controller pods to be Ready")
    wanted = 'cannot watch resource "endpointslices" in API group "discovery.k8s.io"'

    for pod in pods:  # every replica reads every member, leader or not: each says what it lacks
        central_status = await _central_reason(installed, pod, wanted)
        assert central_status["available"] is False
        status = installed.status(pod) or {}
        assert all(status["clusters"][name]["available"] for name in ("east", "west"))
        failing = [i for i in status["informers"]["central"] if wanted in i["last_error"]]
        assert [i["kind"] for i in failing] == ["EndpointSlice"], failing
        log = await asyncio.to_thread(_pod_log, hub, pod["metadata"]["name"])
        assert wanted in log
    # Reported, not crashed: the same containers run on, still Ready, never restarted.
    await asyncio.sleep(5)
    uids = {p["metadata"]["uid"] for p in pods}
    now = [p for p in installed.pods() if p["metadata"]["uid"] in uids]
    assert len(now) == REPLICAS
    for pod in now:
        (container,) = pod["status"]["containerStatuses"]
        assert (container["restartCount"], "running" in container["state"], _ready(pod)) == (0, True, True)
    print(f"\n[controller-pod] central without watch on endpointslices: {central_status['reason']}", flush=True)
