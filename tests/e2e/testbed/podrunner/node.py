"""The runner's Node: registered as a kubelet registers it, kept Ready by a Lease and status heartbeats.

Only ``InternalIP`` is published (no ``Hostname`` address): the API server dials the first address type
it prefers that a Node has, and a hostname nothing resolves would break ``pods/log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .kubeapi import STRATEGIC_PATCH, ApiError, KubeApi
from .state import rfc3339, rfc3339_micro

Json = dict[str, Any]
LEASE_SECONDS = 40
LEASE_RENEW_SECONDS = 10
STATUS_SECONDS = 60


@dataclass(frozen=True)
class NodeFacts:
    name: str
    cluster: str
    host_ip: str
    kubelet_port: int
    pod_cidr: str
    capacity: Mapping[str, str]
    version: str


def default_capacity() -> dict[str, str]:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{memory // 1024}Ki", "pods": "110",
            "ephemeral-storage": "100Gi", "hugepages-2Mi": "0", "hugepages-1Gi": "0"}


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def node_labels(facts: NodeFacts) -> dict[str, str]:
    return {"kubernetes.io/hostname": facts.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": _arch(),
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": _arch(),
            "mcgw.io/testbed-cluster": facts.cluster}


def conditions(ready: bool, now: str, previous: Mapping[str, Json] | None = None) -> list[Json]:
    previous = previous or {}

    def condition(kind: str, status: str, reason: str, message: str) -> Json:
        old = previous.get(kind, {})
        changed = old.get("status") != status or not old.get("lastTransitionTime")
        return {"type": kind, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": now,
                "lastTransitionTime": now if changed else old["lastTransitionTime"]}

    return [
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        condition("Ready", "True", "KubeletReady", "kubelet is posting ready status") if ready else
        condition("Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."),
    ]


def node_status(facts: NodeFacts, ready: bool, now: str, previous: Mapping[str, Json] | None = None) -> Json:
    boot_id = ""
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id") as source:
        boot_id = source.read().strip()
    return {
        "capacity": dict(facts.capacity),
        "allocatable": dict(facts.capacity),
        "conditions": conditions(ready, now, previous),
        "addresses": [{"type": "InternalIP", "address": facts.host_ip}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": facts.kubelet_port}},
        "nodeInfo": {
            "machineID": facts.name, "systemUUID": facts.name, "bootID": boot_id,
            "kernelVersion": platform.release(), "osImage": "mcgw test bed", "operatingSystem": "linux",
            "architecture": _arch(), "containerRuntimeVersion": "mcgw-testbed://1",
            "kubeletVersion": facts.version, "kubeProxyVersion": "",
        },
    }


def node_object(facts: NodeFacts) -> Json:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": facts.name, "labels": node_labels(facts)},
            "spec": {"podCIDR": facts.pod_cidr, "podCIDRs": [facts.pod_cidr]}}


def lease_object(facts: NodeFacts, node_uid: str, now: float) -> Json:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": facts.name, "namespace": "kube-node-lease",
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": facts.name,
                                              "uid": node_uid}]},
            "spec": {"holderIdentity": facts.name, "leaseDurationSeconds": LEASE_SECONDS,
                     "renewTime": rfc3339_micro(now)}}


class NodeAgent:
    """Registers the Node and keeps it honest: Ready while the runner runs, Unknown once it stops."""

    def __init__(self, api: KubeApi, facts: NodeFacts) -> None:
        self.api = api
        self.facts = facts
        self.uid = ""
        self._previous: dict[str, Json] = {}

    async def register(self) -> None:
        path = f"/api/v1/nodes/{self.facts.name}"
        node = await self.api.get_or_none(path)
        if node is None:
            try:
                node = await self.api.post("/api/v1/nodes", node_object(self.facts))
            except ApiError as error:
                if error.status != 409:
                    raise
                node = await self.api.get(path)
        else:
            node = await self.api.patch(path, {"metadata": {"labels": node_labels(self.facts)}}, STRATEGIC_PATCH)
        self.uid = node["metadata"]["uid"]
        self._previous = {c["type"]: c for c in (node.get("status") or {}).get("conditions", []) or []}
        await self.post_status(True)
        await self.renew_lease()

    async def post_status(self, ready: bool) -> None:
        status = node_status(self.facts, ready, rfc3339(time.time()), self._previous)
        node = await self.api.patch(f"/api/v1/nodes/{self.facts.name}/status", {"status": status})
        self._previous = {c["type"]: c for c in (node.get("status") or {}).get("conditions", []) or []}

    async def renew_lease(self) -> None:
        lease = lease_object(self.facts, self.uid, time.time())
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.facts.name}"
        try:
            await self.api.patch(path, {"spec": lease["spec"]})
        except ApiError as error:
            if error.status != 404:
                raise
            await self.api.post("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease)

    async def heartbeat(self) -> None:
        """Renew the Lease every 10 s and post the Ready status every minute, until cancelled."""
        last_status = time.monotonic()
        while True:
            await asyncio.sleep(LEASE_RENEW_SECONDS)
            try:
                await self.renew_lease()
                if time.monotonic() - last_status >= STATUS_SECONDS:
                    await self.post_status(True)
                    last_status = time.monotonic()
            except ApiError as error:
                if error.status == 404:  # the Node was deleted: register it again, as a kubelet does
                    with contextlib.suppress(Exception):
                        await self.register()
                else:
                    print(f"podrunner: node heartbeat failed: {error}", flush=True)
            except Exception as error:  # the API server may be restarting: try again next round
                print(f"podrunner: node heartbeat failed: {error}", flush=True)
