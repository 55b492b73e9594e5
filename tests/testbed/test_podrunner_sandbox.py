"""Pod addresses, sandbox names, the Node object and which pods the runner binds."""

from __future__ import annotations

import pytest

from tests.e2e.testbed.network import host_veth_name, pod_netns_name
from tests.e2e.testbed.podrunner.netns import AddressPool
from tests.e2e.testbed.podrunner.node import NodeFacts, conditions, lease_object, node_object, node_status
from tests.e2e.testbed.podrunner.pod import grace_seconds, hosts_file, should_restart
from tests.e2e.testbed.podrunner.runner import wants_binding


def test_address_pool_round_robin_preferred_and_exhaustion() -> None:
    pool = AddressPool("198.18.1.128", "198.18.1.130")
    assert [pool.allocate() for _ in range(3)] == ["198.18.1.128", "198.18.1.129", "198.18.1.130"]
    with pytest.raises(RuntimeError):
        pool.allocate()
    pool.release("198.18.1.129")
    pool.release("198.18.1.128")
    assert pool.allocate() == "198.18.1.128"  # the next free one after the last handed out
    assert pool.allocate("198.18.1.129") == "198.18.1.129"
    pool.release("198.18.1.130")
    assert pool.allocate("10.0.0.1") == "198.18.1.130"  # a preferred address outside the pool is ignored
    assert not pool.contains("198.18.1.131")


def test_names_fit_their_limits() -> None:
    assert host_veth_name("198.18.0.0") == "mgv00000"
    assert host_veth_name("198.19.255.255") == "mgv1ffff"
    assert max(len(host_veth_name(a)) for a in ("198.18.17.130", "198.19.200.1")) <= 15
    with pytest.raises(ValueError, match="outside"):
        host_veth_name("10.0.0.1")
    name = pod_netns_name(4321, "east", "shop", "web-" + "x" * 100, "0123456789abcdef")
    assert name.startswith("mcgw-t4321-east-shop-web-")
    assert name.endswith("-01234567")


FACTS = NodeFacts("east-node", "east", "198.18.0.1", 10250, "198.18.1.0/24", {"cpu": "2", "pods": "110"}, "v1.37.2")


def test_node_object_and_status() -> None:
    node = node_object(FACTS)
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "east-node"
    assert node["spec"]["podCIDR"] == "198.18.1.0/24"
    status = node_status(FACTS, True, "2026-01-01T00:00:00Z")
    assert status["addresses"] == [{"type": "InternalIP", "address": "198.18.0.1"}]  # no Hostname to resolve
    assert status["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    assert status["allocatable"] == {"cpu": "2", "pods": "110"}
    assert status["nodeInfo"]["kubeletVersion"] == "v1.37.2"
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")


def test_node_conditions_keep_transition_times() -> None:
    first = {c["type"]: c for c in conditions(True, "2026-01-01T00:00:00Z")}
    later = {c["type"]: c for c in conditions(True, "2026-01-01T00:05:00Z", first)}
    assert later["Ready"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert later["Ready"]["lastHeartbeatTime"] == "2026-01-01T00:05:00Z"
    stopped = {c["type"]: c for c in conditions(False, "2026-01-01T00:06:00Z", later)}
    assert stopped["Ready"]["status"] == "Unknown"
    assert stopped["Ready"]["lastTransitionTime"] == "2026-01-01T00:06:00Z"


def test_lease() -> None:
    lease = lease_object(FACTS, "node-uid", 0.5)
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["metadata"]["ownerReferences"][0]["uid"] == "node-uid"
    assert lease["spec"]["renewTime"] == "1970-01-01T00:00:00.500000Z"


def test_which_pods_are_bound() -> None:
    def pod(**spec: object) -> dict[str, object]:
        return {"metadata": {"name": "p", "uid": "u"}, "spec": spec, "status": {"phase": "Pending"}}

    assert wants_binding(pod())
    assert wants_binding(pod(schedulerName="default-scheduler"))
    assert not wants_binding(pod(schedulerName="my-scheduler"))
    assert not wants_binding(pod(nodeName="east-node"))
    assert not wants_binding({"metadata": {"deletionTimestamp": "x"}, "spec": {}})
    assert not wants_binding({"metadata": {}, "spec": {}, "status": {"phase": "Failed"}})


def test_pod_helpers() -> None:
    assert grace_seconds({"spec": {}}) == 30
    assert grace_seconds({"spec": {"terminationGracePeriodSeconds": 5}}) == 5
    assert grace_seconds({"metadata": {"deletionGracePeriodSeconds": 0},
                          "spec": {"terminationGracePeriodSeconds": 5}}) == 0
    assert should_restart("Always", 0)
    assert should_restart("OnFailure", 1)
    assert not should_restart("OnFailure", 0)
    assert not should_restart("Never", 1)
    assert "198.18.1.130\tweb-1" in hosts_file("198.18.1.130", "web-1")
